"""Cycle arithmetic: calendar months and years in the current time zone, clamped to month end."""

from datetime import UTC, datetime, timedelta

from dateutil.relativedelta import relativedelta
from django.utils import timezone
from django.utils.translation import gettext

from ..exceptions import InvalidArgument
from ..models import Cycle

_CALENDAR_STEPS = {
    Cycle.DAILY: relativedelta(days=1),
    Cycle.WEEKLY: relativedelta(weeks=1),
    Cycle.BI_WEEKLY: relativedelta(weeks=2),
    Cycle.MONTHLY: relativedelta(months=1),
    Cycle.TRIMESTER: relativedelta(months=3),
    Cycle.SEMESTER: relativedelta(months=6),
    Cycle.YEARLY: relativedelta(years=1),
}


def cycle_end(
    start: datetime, cycle: str, *, quantity: int = 1, custom_cycle: int | None = None
) -> datetime | None:
    """Return ``start`` + ``cycle`` × ``quantity``; ``None`` for a cycle that never expires.

    Days, weeks, months and years are counted on the wall clock of the current time zone (a
    day across a DST change is 23 or 25 hours; Jan 31 + 1 month is the last day of February).
    A custom cycle is an exact number of seconds.
    """
    if quantity < 1:
        raise InvalidArgument(gettext("quantity must be at least 1."), field="quantity")
    if cycle == Cycle.ONCE:
        return None
    if cycle == Cycle.CUSTOM:
        if not custom_cycle:
            raise InvalidArgument(
                gettext("A custom cycle needs custom_cycle seconds."), field="custom_cycle"
            )
        return start + timedelta(seconds=custom_cycle * quantity)
    try:
        step = _CALENDAR_STEPS[cycle]
    except KeyError:
        raise InvalidArgument(
            gettext("Unknown cycle %(cycle)r.") % {"cycle": cycle}, field="cycle"
        ) from None
    local = timezone.localtime(start)
    # One relativedelta for the whole duration: Jan 31 + 2 months is Mar 31, not Mar 28.
    # ZoneInfo resolves the new wall-clock time's own UTC offset; store it in UTC so that
    # comparisons never mix wall times of one zone across a DST change.
    return (local + step * quantity).astimezone(UTC)


#: The periods a spending limit may have: the calendar cycles.
LIMIT_PERIODS = tuple(_CALENDAR_STEPS)


def period_start(now: datetime, period: str) -> datetime:
    """The start of the calendar ``period`` containing ``now``, in the current time zone:
    today's midnight, this week's Monday, the first day of this month, quarter, half or year.
    Bi-weekly periods are pairs of weeks counted from Monday 1970-01-05."""
    if period not in _CALENDAR_STEPS:
        raise InvalidArgument(
            gettext("Unknown period %(period)r; one of %(periods)s.")
            % {"period": period, "periods": ", ".join(LIMIT_PERIODS)},
            field="period",
        )
    local = timezone.localtime(now)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == Cycle.DAILY:
        start = day
    elif period in (Cycle.WEEKLY, Cycle.BI_WEEKLY):
        start = day - timedelta(days=day.weekday())
        if period == Cycle.BI_WEEKLY:
            weeks = (start.date() - datetime(1970, 1, 5).date()).days // 7
            start -= timedelta(weeks=weeks % 2)
    else:
        months = {Cycle.MONTHLY: 1, Cycle.TRIMESTER: 3, Cycle.SEMESTER: 6, Cycle.YEARLY: 12}
        step = months[period]
        start = day.replace(day=1, month=(day.month - 1) // step * step + 1)
    # Rebuild the wall-clock time so its UTC offset is the one in force then (DST).
    naive = start.replace(tzinfo=None)
    return timezone.make_aware(naive, timezone.get_current_timezone()).astimezone(UTC)
