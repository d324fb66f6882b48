"""Holds: reserve before metered work, capture what was used, release the rest."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from user_credits import services
from user_credits.exceptions import (
    IdempotencyConflict,
    InsufficientCredits,
    InvalidArgument,
    InvalidTransition,
)
from user_credits.models import CreditLot, EntryKind, HoldStatus, LedgerEntry, LotStatus

from .factories import assert_ledger_consistent, make_group, make_holder, table_snapshot

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _consistent():
    yield
    assert_ledger_consistent()


@pytest.fixture
def clock():
    """The app's clock, frozen at T0; a test moves it by setting ``clock.now``."""
    from unittest import mock

    class Clock:
        now = T0

    frozen = Clock()
    with mock.patch("django.utils.timezone.now", side_effect=lambda: frozen.now):
        yield frozen


@pytest.fixture
def group(holder, clock):
    group = make_group("ai")
    services.grant(holder, group, 6, expires=T0 + timedelta(days=2))  # burns first
    services.grant(holder, group, 10)
    return group


def detail(holder, group):
    d = services.get_balance_detail(holder, group)
    return d.available, d.held, d.total


def test_hold_reserves_in_burn_order_and_hides_tokens(holder, group, clock):
    held = services.hold(holder, group, 8, idempotency_key="job-1")
    lines = [
        (line.lot.expires is not None, line.count) for line in held.lines.select_related("lot")
    ]
    assert lines == [(True, 6), (False, 2)]
    assert detail(holder, group) == (8, 8, 16)
    assert services.get_balance(holder, group) == 8
    with pytest.raises(InsufficientCredits):
        services.consume(holder, group, 9)  # held tokens are not available
    with pytest.raises(InsufficientCredits):
        services.hold(holder, group, 9)  # nor to other holds
    services.consume(holder, group, 8)
    assert detail(holder, group) == (0, 8, 8)
    # No ledger entry for a hold: the balance counts held tokens until they are captured.
    assert not LedgerEntry.objects.filter(
        kind=EntryKind.CONSUME, idempotency_key__startswith="hold"
    ).exists()


def test_capture_less_releases_the_rest(holder, group, clock):
    held = services.hold(holder, group, 8)
    result = services.capture(held, 5, metadata={"tokens": 5})
    assert [(-e.amount, e.kind) for e in result.entries] == [(5, "consume")]
    assert result.balance == 11
    assert detail(holder, group) == (11, 0, 11)
    held.refresh_from_db()
    assert (held.status, held.captured) == (HoldStatus.CAPTURED, 5)


def test_capture_all_by_default(holder, group, clock):
    held = services.hold(holder, group, 8)
    result = services.capture(held)
    assert sum(-e.amount for e in result.entries) == 8
    assert detail(holder, group) == (8, 0, 8)


def test_capture_more_consumes_the_extra_or_raises(holder, group, clock):
    held = services.hold(holder, group, 4)
    other = services.hold(holder, group, 10)
    before = table_snapshot()
    with pytest.raises(InvalidArgument):
        services.capture(held, 6, over="raise")
    with pytest.raises(InsufficientCredits):
        services.capture(held, 7)  # 4 held + 2 free: the other hold's tokens are not taken
    assert table_snapshot() == before
    result = services.capture(held, 6)
    assert sum(-e.amount for e in result.entries) == 6
    assert detail(holder, group) == (0, 10, 10)
    services.release(other)
    assert detail(holder, group) == (10, 0, 10)


def test_release_and_double_calls_are_idempotent(holder, group, clock):
    held = services.hold(holder, group, 5)
    services.release(held)
    assert services.release(held).status == HoldStatus.RELEASED
    assert detail(holder, group) == (16, 0, 16)
    with pytest.raises(InvalidTransition):
        services.capture(held)
    captured = services.hold(holder, group, 3)
    first = services.capture(captured, 2)
    again = services.capture(captured, 2)
    assert again.replayed and [e.pk for e in again.entries] == [e.pk for e in first.entries]
    assert again.balance == first.balance == 14
    assert services.release(captured).status == HoldStatus.CAPTURED


def test_idempotent_hold(holder, group, clock):
    first = services.hold(holder, group, 3, idempotency_key="req")
    again = services.hold(holder, group, 3, idempotency_key="req")
    assert again.pk == first.pk and again.replayed and not first.replayed
    with pytest.raises(IdempotencyConflict):
        services.hold(holder, group, 4, idempotency_key="req")
    assert detail(holder, group) == (13, 3, 16)


def test_ttl_expiry_by_the_sweep_and_by_the_next_write(holder, group, clock):
    by_sweep = services.hold(holder, group, 5, ttl=60)
    clock.now = T0 + timedelta(minutes=2)
    report = services.expire_credits()
    assert report.released_holds == 1
    by_sweep.refresh_from_db()
    assert by_sweep.status == HoldStatus.EXPIRED and detail(holder, group)[1] == 0
    clock.now = T0
    by_write = services.hold(holder, group, 16, ttl=timedelta(seconds=30))
    clock.now = T0 + timedelta(minutes=1)
    assert services.consume(holder, group, 16).balance == 0  # the write releases it first
    with pytest.raises(InvalidTransition):
        services.capture(by_write)
    by_write.refresh_from_db()
    assert by_write.status == HoldStatus.EXPIRED


@override_settings(USER_CREDITS={"HOLD_TTL": 5})
def test_default_ttl_from_settings(holder, group, clock):
    held = services.hold(holder, group, 1)
    assert held.expires_at == T0 + timedelta(seconds=5)


def test_lot_expiring_under_a_hold_shrinks_it(holder, group, clock):
    held = services.hold(holder, group, 8, ttl=timedelta(days=7))
    clock.now = T0 + timedelta(days=3)  # the 6-token lot expired
    assert detail(holder, group) == (8, 2, 10)
    services.expire_credits()
    assert detail(holder, group) == (8, 2, 10)
    result = services.capture(held)
    assert sum(-e.amount for e in result.entries) == 2
    assert CreditLot.objects.filter(status=LotStatus.EXPIRED, held=0).count() == 1


def test_lot_expiring_under_a_hold_at_capture_time(holder, group, clock):
    held = services.hold(holder, group, 8, ttl=timedelta(days=7))
    clock.now = T0 + timedelta(days=3)
    result = services.capture(held)  # expires the due lot itself first
    assert sum(-e.amount for e in result.entries) == 2
    assert detail(holder, group)[0] == 8


def test_refund_revokes_held_tokens(holder, clock):
    from decimal import Decimal

    from .factories import buy, make_offer

    order = buy(holder, make_offer(price=Decimal("10"), token_count=10))
    held = services.hold(holder, order.offer_group, 9)
    services.refund(order)
    assert services.get_balance_detail(holder, order.offer_group).total == 0
    assert services.capture(held).entries == []


def test_bad_arguments(holder, group):
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(InvalidArgument):
            services.hold(holder, group, bad)
    with pytest.raises(InvalidArgument):
        services.hold(holder, group, 1, ttl=0)
    with pytest.raises(InvalidArgument):
        services.capture(999_999)
    with pytest.raises(InsufficientCredits):
        services.hold(make_holder(), group, 1)


def test_balance_at_a_past_instant(holder, clock):
    group = make_group("hist")
    services.grant(holder, group, 10)
    clock.now = T0 + timedelta(hours=1)
    services.consume(holder, group, 4)
    clock.now = T0 + timedelta(hours=2)
    services.consume(holder, group, 1)
    assert services.get_balance(holder, group, at=T0 - timedelta(seconds=1)) == 0
    assert services.get_balance(holder, group, at=T0 + timedelta(minutes=30)) == 10
    assert services.get_balance(holder, "hist", at=T0 + timedelta(hours=1, minutes=5)) == 6
    assert services.get_balance(holder, group, at=T0 + timedelta(days=1)) == 5


def test_balance_at_is_one_query(holder, django_assert_num_queries):
    group = make_group("hist")
    services.grant(holder, group, 3)
    with django_assert_num_queries(1):
        services.get_balance(holder, group, at=datetime(2030, 1, 1, tzinfo=UTC))
