"""The PostgreSQL fast paths: ``consume`` and the expiry sweep's batches in one round trip.

The functions (``functions.py``) are (re)created after every ``migrate`` (``post_migrate``), so
they always match this code. ``USER_CREDITS["POSTGRES_FAST_PATH"] = False`` makes PostgreSQL
use the portable path, as the differential test does to compare both.
"""

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from ...conf import app_settings
from ...models import LedgerEntry
from .functions import (
    OBSOLETE_FUNCTIONS_SQL,
    ROW_FIELDS,
    chain_functions_sql,
    consume_function_sql,
    consume_many_function_sql,
    expire_batch_function_sql,
)


def install(using: str = "default", **kwargs: Any) -> None:
    """``post_migrate`` receiver: create or replace the functions on PostgreSQL."""
    from django.db import connections

    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(OBSOLETE_FUNCTIONS_SQL)
            cursor.execute(chain_functions_sql())
            cursor.execute(consume_function_sql(connection))
            cursor.execute(consume_many_function_sql(connection))
            cursor.execute(expire_batch_function_sql(connection))


def fast_path(connection: BaseDatabaseWrapper) -> bool:
    """Whether writes on ``connection`` go through the PL/pgSQL functions."""
    return connection.vendor == "postgresql" and app_settings.POSTGRES_FAST_PATH


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def entries_from_json(rows: list[dict], using: str) -> list[LedgerEntry]:
    """Ledger entries from ``to_jsonb`` rows, as if loaded by a query."""
    fields = LedgerEntry._meta.concrete_fields
    return [
        LedgerEntry.from_db(
            using, [f.attname for f in fields], [f.to_python(row[f.column]) for f in fields]
        )
        for row in rows
    ]


def entries_from_rows(
    rows: list[list], using: str, *, account_id: int, own: dict, now: datetime
) -> list[LedgerEntry]:
    """The entries one item wrote, from the function's compact rows (``ROW_FIELDS``); the
    other fields are the item's own (``own``: its ``idempotency_key``, ``metadata`` and
    ``member_id``, as Python values) and the time of the call."""
    attnames = [f.attname for f in LedgerEntry._meta.concrete_fields]
    entries = []
    for row in rows:
        values = dict(zip(ROW_FIELDS, row, strict=True))
        values.update(own, account_id=account_id, created_at=now)
        values["metadata"] = dict(values["metadata"])  # each entry its own, as if loaded
        entries.append(LedgerEntry.from_db(using, attnames, [values[n] for n in attnames]))
    return entries


def result_entries(
    result: dict,
    using: str,
    *,
    own: dict,
    now: datetime,
    earlier: Callable[[int], list[LedgerEntry]],
) -> list[LedgerEntry]:
    """The entries of an ``ok`` or ``replay`` result of ``user_credits_consume_many``:
    written now (``rows``), by an earlier item of the same call (``of``, its index:
    ``earlier(of)`` gives its entries), or by an earlier transaction (``entries``)."""
    if "rows" in result:
        return entries_from_rows(
            result["rows"], using, account_id=result["account"], own=own, now=now
        )
    if "of" in result:
        return list(earlier(result["of"]))
    return entries_from_json(result["entries"], using)


def expire_batch(
    connection: BaseDatabaseWrapper, *, now: datetime, holder_id: Any, batch_size: int
) -> list[dict] | None:
    """Expire one batch; ``None`` once nothing is due."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT user_credits_expire_batch(%s, %s, %s)", [now, holder_id, batch_size])
        return _json(cursor.fetchone()[0])


def item_json(
    *,
    holder_id: Any,
    group_id: int,
    count: int,
    key: str | None,
    metadata: dict,
    overdraft: bool,
    member_id: Any = None,
) -> dict:
    """One item of ``user_credits_consume_many``'s ``items``."""
    return {
        "holder": _jsonable(holder_id),
        "grp": group_id,
        "count": count,
        "key": key,
        "metadata": metadata,
        "overdraft": overdraft,
        "member": _jsonable(member_id),
    }


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, int) else str(value)


def consume(
    connection: BaseDatabaseWrapper,
    *,
    holder_id: Any,
    group_id: int,
    count: int,
    key: str | None,
    metadata: dict,
    now: datetime,
    overdraft: bool,
    member_id: Any = None,
    period_starts: dict | None = None,
) -> dict:
    """Call ``user_credits_consume``; its statuses are listed in ``functions``."""
    starts = None if period_starts is None else json.dumps(period_starts)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_credits_consume(%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s::jsonb)",
            [
                holder_id,
                group_id,
                count,
                key,
                json.dumps(metadata),
                now,
                overdraft,
                member_id,
                starts,
            ],
        )
        return _json(cursor.fetchone()[0])


def consume_many(
    connection: BaseDatabaseWrapper, items: list[dict], *, now: datetime, period_starts: dict
) -> dict:
    """Call ``user_credits_consume_many``: ``{"results": [...], "stopped"?: status}``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_credits_consume_many(%s::jsonb, %s, %s::jsonb)",
            [json.dumps(items), now, json.dumps(period_starts)],
        )
        return _json(cursor.fetchone()[0])
