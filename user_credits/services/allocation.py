"""Which lots pay for a spend: the burn order and the allocation of a count over lots.

Pure: no database access. The burn order is written once here; the ORM ordering
(``BURN_ORDER``), the Python sort key (``burn_key``) and the PostgreSQL fast path's
``ORDER BY`` (``burn_order_sql``) are all built from ``BURN_ORDER_FIELDS``.
"""

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

from django.db.models import Case, F, IntegerField, Value, When

from ..models import LotCategory

T = TypeVar("T")

#: Lots burn by priority (lower first), then soonest expiry (never-expiring last), then
#: promotional before paid, then oldest (lowest id). Each entry: (field, how it sorts).
BURN_ORDER_FIELDS = (
    ("priority", "asc"),
    ("expires", "asc_nulls_last"),
    ("category", ("first", LotCategory.PROMOTIONAL)),
    ("id", "asc"),
)


def _orm_term(field, how):
    if how == "asc":
        return F(field).asc()
    if how == "asc_nulls_last":
        return F(field).asc(nulls_last=True)
    _, first = how
    return Case(
        When(**{field: first}, then=Value(0)), default=Value(1), output_field=IntegerField()
    )


def _sql_term(field, how, quote):
    if how == "asc":
        return f"{field} ASC"
    if how == "asc_nulls_last":
        return f"{field} ASC NULLS LAST"
    _, first = how
    return f"CASE WHEN {field} = {quote(first)} THEN 0 ELSE 1 END"


#: ``queryset.order_by(*BURN_ORDER)`` sorts lots in burn order.
BURN_ORDER = tuple(_orm_term(field, how) for field, how in BURN_ORDER_FIELDS)


def burn_order_sql(quote: Callable[[str], str]) -> str:
    """The burn order as an SQL ``ORDER BY`` list; ``quote`` makes a string literal."""
    return ", ".join(_sql_term(field, how, quote) for field, how in BURN_ORDER_FIELDS)


def burn_key(lot) -> tuple:
    """Sort key of a lot (any object with the fields above) in burn order."""
    key = []
    for field, how in BURN_ORDER_FIELDS:
        value = getattr(lot, field)
        if how == "asc":
            key.append(value)
        elif how == "asc_nulls_last":
            key.extend((value is None, value or datetime.min))
        else:
            key.append(0 if value == how[1] else 1)
    return tuple(key)


def spendable(lot) -> int:
    """Tokens of a lot that are neither spent nor reserved by a hold."""
    return lot.remaining - lot.held


def allocate(
    items: Iterable[T], count: int, capacity: Callable[[T], int] = spendable
) -> tuple[list[tuple[T, int]], int]:
    """Take ``count`` from ``items`` in their order, at most ``capacity(item)`` from each.

    Returns ``([(item, taken), …], left)``: only items something was taken from, and what
    could not be taken (0 when the items covered the count).
    """
    takes = []
    left = count
    for item in items:
        if not left:
            break
        take = min(left, capacity(item))
        if take > 0:
            takes.append((item, take))
            left -= take
    return takes, left
