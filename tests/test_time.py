"""Cycles and expiry around DST changes and month ends, in Paris and New York."""

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from user_credits import services
from user_credits.exceptions import InsufficientCredits
from user_credits.models import Cycle

from .factories import buy, make_group, make_offer

pytestmark = pytest.mark.django_db
PARIS, NEW_YORK = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")


@override_settings(TIME_ZONE="Europe/Paris")
def test_monthly_across_spring_forward_keeps_the_local_hour(holder, travel):
    group = make_group("g")
    offer = make_offer(group=group, token_count=5, cycle=Cycle.MONTHLY)
    start = datetime(2026, 3, 15, 10, 0, tzinfo=PARIS)  # CET, +01:00
    with travel(start):
        order = buy(holder, offer)
    assert order.expires.astimezone(PARIS) == datetime(2026, 4, 15, 10, 0, tzinfo=PARIS)  # CEST
    assert order.expires - order.starts == timedelta(days=31, hours=-1)
    with travel(order.expires - timedelta(seconds=1)):
        assert services.get_balance(holder, group) == 5
    with travel(order.expires):
        assert services.get_balance(holder, group) == 0
        with pytest.raises(InsufficientCredits):
            services.consume(holder, group, 1)


@override_settings(TIME_ZONE="Europe/Paris")
def test_daily_across_fall_back_is_25_hours(holder, travel):
    offer = make_offer(token_count=1, cycle=Cycle.DAILY)
    with travel(datetime(2026, 10, 24, 12, 0, tzinfo=PARIS)):
        order = buy(holder, offer)
    assert order.expires - order.starts == timedelta(hours=25)


@override_settings(TIME_ZONE="America/New_York")
def test_chained_month_end_in_new_york(holder, travel):
    group = make_group("sub")
    monthly = make_offer(group=group, token_count=10, cycle=Cycle.MONTHLY, append_date=True)
    yearly = make_offer(
        group=group, token_count=120, cycle=Cycle.YEARLY, append_date=True, price=Decimal("90")
    )
    # Jan 31, 22:00 in New York is already Feb 1 in UTC: the month is counted from Jan 31.
    with travel(datetime(2026, 1, 31, 22, 0, tzinfo=NEW_YORK)):
        first = buy(holder, monthly)
        second = buy(holder, yearly)
    assert first.expires.astimezone(NEW_YORK) == datetime(2026, 2, 28, 22, 0, tzinfo=NEW_YORK)
    assert second.starts == first.expires
    assert second.expires.astimezone(NEW_YORK) == datetime(2027, 2, 28, 22, 0, tzinfo=NEW_YORK)
    with travel(datetime(2026, 3, 8, 12, 0, tzinfo=NEW_YORK)):  # after spring forward
        report = services.expire_credits()
        assert report.expired_lots == 1 and report.expired_tokens == 10
        assert services.get_balance(holder, group) == 120


@override_settings(TIME_ZONE="America/New_York")
def test_weekly_across_fall_back_in_new_york(holder, travel):
    offer = make_offer(token_count=1, cycle=Cycle.WEEKLY)
    with travel(datetime(2026, 10, 29, 9, 30, tzinfo=NEW_YORK)):
        order = buy(holder, offer)
    assert order.expires.astimezone(NEW_YORK) == datetime(2026, 11, 5, 9, 30, tzinfo=NEW_YORK)
    assert order.expires - order.starts == timedelta(days=7, hours=1)
