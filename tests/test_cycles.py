from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from user_credits.models import Cycle
from user_credits.services import cycle_end

START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "cycle, quantity, expected",
    [
        (Cycle.DAILY, 1, datetime(2026, 1, 16, 12, 0, tzinfo=UTC)),
        (Cycle.DAILY, 3, datetime(2026, 1, 18, 12, 0, tzinfo=UTC)),
        (Cycle.WEEKLY, 1, datetime(2026, 1, 22, 12, 0, tzinfo=UTC)),
        (Cycle.BI_WEEKLY, 1, datetime(2026, 1, 29, 12, 0, tzinfo=UTC)),
        (Cycle.BI_WEEKLY, 2, datetime(2026, 2, 12, 12, 0, tzinfo=UTC)),
        (Cycle.MONTHLY, 1, datetime(2026, 2, 15, 12, 0, tzinfo=UTC)),
        (Cycle.MONTHLY, 3, datetime(2026, 4, 15, 12, 0, tzinfo=UTC)),
        (Cycle.TRIMESTER, 1, datetime(2026, 4, 15, 12, 0, tzinfo=UTC)),
        (Cycle.SEMESTER, 1, datetime(2026, 7, 15, 12, 0, tzinfo=UTC)),
        (Cycle.SEMESTER, 2, datetime(2027, 1, 15, 12, 0, tzinfo=UTC)),
        (Cycle.YEARLY, 1, datetime(2027, 1, 15, 12, 0, tzinfo=UTC)),
        (Cycle.YEARLY, 2, datetime(2028, 1, 15, 12, 0, tzinfo=UTC)),
    ],
)
def test_calendar_cycles(cycle, quantity, expected):
    assert cycle_end(START, cycle, quantity=quantity) == expected


def test_once_never_expires():
    assert cycle_end(START, Cycle.ONCE, quantity=5) is None


def test_custom_cycle_is_exact_seconds():
    assert cycle_end(START, Cycle.CUSTOM, custom_cycle=90, quantity=2) == START + timedelta(
        seconds=180
    )
    with pytest.raises(ValueError):
        cycle_end(START, Cycle.CUSTOM)


@pytest.mark.parametrize(
    "start, quantity, expected_day",
    [
        (datetime(2026, 1, 31, 9, tzinfo=UTC), 1, (2026, 2, 28)),
        (datetime(2028, 1, 31, 9, tzinfo=UTC), 1, (2028, 2, 29)),  # leap year
        (datetime(2026, 1, 31, 9, tzinfo=UTC), 2, (2026, 3, 31)),  # not Feb 28 + 1 month
        (datetime(2026, 3, 31, 9, tzinfo=UTC), 1, (2026, 4, 30)),
        (datetime(2026, 8, 31, 9, tzinfo=UTC), 6, (2027, 2, 28)),
    ],
)
def test_month_end_is_clamped(start, quantity, expected_day):
    end = cycle_end(start, Cycle.MONTHLY, quantity=quantity)
    assert (end.year, end.month, end.day) == expected_day
    assert end.hour == 9


def test_leap_day_plus_a_year():
    end = cycle_end(datetime(2028, 2, 29, tzinfo=UTC), Cycle.YEARLY)
    assert (end.month, end.day) == (2, 28)


def test_unknown_cycle_and_bad_quantity():
    with pytest.raises(ValueError):
        cycle_end(START, "fortnightly")
    with pytest.raises(ValueError):
        cycle_end(START, Cycle.MONTHLY, quantity=0)


@override_settings(TIME_ZONE="Europe/Paris")
def test_day_across_dst_keeps_the_wall_clock():
    paris = ZoneInfo("Europe/Paris")
    # 2026-03-29 02:00 Paris clocks jump to 03:00: that calendar day lasts 23 hours.
    start = datetime(2026, 3, 28, 10, 0, tzinfo=paris)
    end = cycle_end(start, Cycle.DAILY)
    assert end.astimezone(paris).replace(tzinfo=None) == datetime(2026, 3, 29, 10, 0)
    assert end - start == timedelta(hours=23)


@override_settings(TIME_ZONE="America/New_York")
def test_month_end_is_computed_in_the_current_time_zone():
    # Jan 31 23:30 in New York is Feb 1 in UTC: the month step is taken from Jan 31.
    ny = ZoneInfo("America/New_York")
    start = datetime(2026, 1, 31, 23, 30, tzinfo=ny).astimezone(UTC)
    end = cycle_end(start, Cycle.MONTHLY).astimezone(ny)
    assert (end.month, end.day, end.hour, end.minute) == (2, 28, 23, 30)
