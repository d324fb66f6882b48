"""The ledger's hash chain: each entry's ``digest`` seals it and every entry before it.

``digest = sha256_hex(previous digest + "|" + content)``, where the content joins the fields of
``CHAINED_FIELDS`` with ``|`` (an empty string for a missing value, microseconds since the
epoch for a time). The first entry of an account chains from ``""``. The PostgreSQL functions
build their SQL from the same definitions (``services.sql.functions``), and migrations import
this module, so the rule is written once and never changes under stored digests.
"""

import hashlib
from datetime import UTC, datetime, timedelta

#: The fields an entry's digest covers, in order, with how each is written.
CHAINED_FIELDS = (
    ("account_id", "int"),
    ("seq", "int"),
    ("kind", "text"),
    ("amount", "int"),
    ("balance_after", "int"),
    ("lot_id", "int"),
    ("idempotency_key", "text"),
    ("created_at", "time"),
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GENESIS = ""


def _text(value, how) -> str:
    if value is None:
        return ""
    if how == "time":
        return str((value - EPOCH) // timedelta(microseconds=1))
    return str(value)


def content(entry) -> str:
    """The text an entry's digest covers (``entry``: any object with the fields above)."""
    return "|".join(_text(getattr(entry, name), how) for name, how in CHAINED_FIELDS)


def link(previous: str, entry) -> str:
    """The digest of ``entry`` after the entry whose digest is ``previous``."""
    return hashlib.sha256(f"{previous}|{content(entry)}".encode()).hexdigest()


def content_sql(column) -> str:
    """The same content as an SQL expression; ``column(name)`` gives a field's SQL."""
    parts = []
    for name, how in CHAINED_FIELDS:
        sql = column(name)
        if how == "time":
            sql = f"((extract(epoch FROM {sql}) * 1000000)::bigint)::text"
        elif how == "int":
            sql = f"{sql}::text"
        parts.append(f"coalesce({sql}, '')")
    return " || '|' || ".join(parts)
