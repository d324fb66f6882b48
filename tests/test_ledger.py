"""Paying grants lots; consumption burns them; refunds revoke them. DESIGN.md §3."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.test import override_settings
from django.utils import timezone

from user_credits import services, signals
from user_credits.exceptions import (
    IdempotencyConflict,
    InsufficientCredits,
    InvalidArgument,
    InvalidCount,
    InvalidTransition,
    PaymentMismatch,
    UnknownOfferGroup,
)
from user_credits.models import (
    CreditLot,
    Cycle,
    EntryKind,
    LedgerEntry,
    LotStatus,
    Order,
    OrderStatus,
)

from .factories import assert_ledger_consistent, buy, make_group, make_offer, table_snapshot

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _consistent_after_each_test():
    yield
    assert_ledger_consistent()


# --- paying ------------------------------------------------------------------------------


def test_chained_subscriptions_in_one_group(catalog, holder, travel):
    """A 3-month Startup then a yearly Startup: the yearly one starts at the first's expiry."""
    with travel(T0):
        first = buy(holder, catalog["Startup Standard Monthly"], quantity=3)
    assert first.starts == T0
    assert first.expires == datetime(2026, 4, 30, 10, 0, tzinfo=UTC)  # Jan 31 + 3 months
    with travel(T0 + timedelta(days=10)):
        second = buy(holder, catalog["Startup Standard Yearly"])
        business = buy(holder, catalog["Business Standard Monthly"])
    assert second.starts == first.expires
    assert second.expires == datetime(2027, 4, 30, 10, 0, tzinfo=UTC)
    # Another group has its own calendar: it starts now.
    assert business.starts == T0 + timedelta(days=10)
    with travel(T0 + timedelta(days=11)):
        assert services.get_balance(holder, "Startup") == 3_000 + 12_000
        assert services.get_balance(holder, "Business") == 5_000


def test_chaining_ignores_ended_and_refunded_orders(catalog, holder, travel):
    with travel(T0):
        ended = buy(holder, catalog["Startup Standard Monthly"])
    with travel(T0 + timedelta(days=40)):
        after = buy(holder, catalog["Startup Standard Monthly"])
    assert ended.expires < after.starts == T0 + timedelta(days=40)
    services.refund(after)
    with travel(T0 + timedelta(days=41)):
        again = buy(holder, catalog["Startup Standard Monthly"])
    assert again.starts == T0 + timedelta(days=41)


def test_explicit_start_is_kept(holder):
    offer = make_offer(cycle=Cycle.WEEKLY, append_date=True)
    later = timezone.now() + timedelta(days=3)
    order = buy(holder, offer, starts=later)
    assert (order.starts, order.expires) == (later, later + timedelta(weeks=1))
    assert order.lots.get().starts == later


def test_once_never_expires(holder):
    order = buy(holder, make_offer(cycle=Cycle.ONCE, token_count=7))
    assert order.expires is None
    assert order.lots.get().expires is None
    assert services.get_balance(holder, order.offer_group) == 7


def test_mark_paid_twice_grants_once(holder, on_commit):
    order = services.create_order(holder, make_offer(token_count=10))
    received = []
    uid = "tests.test_mark_paid_twice_grants_once"
    signals.order_paid.connect(
        lambda **kw: received.append(kw["order"].pk), weak=False, dispatch_uid=uid
    )
    try:
        with on_commit():
            services.mark_paid(order, amount=Decimal("10.00"), currency="USD", reference="pi_1")
            again = services.mark_paid(order, amount=Decimal("10"), reference="pi_1")
    finally:
        assert signals.order_paid.disconnect(dispatch_uid=uid)
    assert again.status == OrderStatus.PAID
    assert received == [order.pk]
    assert CreditLot.objects.filter(order=order).count() == 1
    assert services.get_balance(holder, order.offer_group) == 10
    assert order.events.filter(status=OrderStatus.PAID).count() == 1
    assert Order.objects.get(pk=order.pk).payment_reference == "pi_1"


@pytest.mark.parametrize(
    "amount, currency", [(Decimal("9.99"), "usd"), (Decimal("10"), "eur"), ("1000", None)]
)
def test_payment_mismatch_grants_nothing(holder, amount, currency):
    order = services.create_order(holder, make_offer(price=Decimal("10")))
    order = services.mark_paid(order, amount=amount, currency=currency, reference="pi_x")
    assert order.status == OrderStatus.INCONSISTENT
    event = order.events.get(status=OrderStatus.INCONSISTENT)
    assert "does not match" in event.message and event.payload["reference"] == "pi_x"
    assert not CreditLot.objects.exists()
    assert services.get_balance(holder, order.offer_group) == 0


def test_failed_then_paid_and_paid_then_failed(holder):
    order = services.create_order(holder, make_offer(token_count=4))
    assert services.mark_failed(order, message="card declined").status == OrderStatus.REFUSED
    assert services.mark_paid(order).status == OrderStatus.PAID
    # A late failure notification does not un-pay the order.
    assert services.mark_failed(order, status=OrderStatus.ERROR).status == OrderStatus.PAID
    assert services.get_balance(holder, order.offer_group) == 4
    with pytest.raises(InvalidTransition):
        services.mark_failed(order, status="paid")


def test_bundle_grants_one_child_order_per_item(catalog, holder, travel):
    with travel(T0):
        order = buy(holder, catalog["Mobile Max"], quantity=2)
    children = {c.offer_group.key: c for c in order.children.all()}
    assert set(children) == {"calls", "data", "tv"}
    assert all(c.status == OrderStatus.PAID and c.parent == order for c in children.values())
    assert all((c.starts, c.expires) == (order.starts, order.expires) for c in children.values())
    assert order.expires == datetime(2026, 3, 31, 10, 0, tzinfo=UTC)
    with travel(T0 + timedelta(days=1)):
        assert services.get_balance(holder, "calls") == 120 * 2
        assert services.get_balance(holder, "data") == 20 * 2
        assert services.get_balance(holder, "tv") == 2
        assert services.get_balance(holder, "mobile") == 0


def test_bundle_item_with_append_date_chains_in_its_own_group(holder, travel):
    minutes = make_group("minutes")
    item_offer = make_offer("Minutes", group=minutes, token_count=10, append_date=True)
    bundle = make_offer("Bundle", token_count=None, cycle=Cycle.MONTHLY)
    bundle.bundle_items.create(offer=item_offer, quantity=3)
    with travel(T0):
        own = buy(holder, item_offer)
        order = buy(holder, bundle)
    child = order.children.get()
    assert child.starts == own.expires
    assert child.expires == datetime(2026, 3, 28, 10, 0, tzinfo=UTC)  # Feb 28 + 1 month
    assert order.starts == T0
    with travel(T0 + timedelta(days=1)):
        assert services.get_balance(holder, minutes) == 10 + 30


# --- consuming ---------------------------------------------------------------------------


def test_token_packs_burn_soonest_expiring_first(catalog, holder, travel):
    with travel(T0):
        yearly = buy(holder, catalog["3 Talks"])
        never = buy(holder, catalog["EventTalk"])
    with travel(T0 + timedelta(days=30)):
        later = buy(holder, catalog["1 Talk"])
    with travel(T0 + timedelta(days=31)):
        result = services.consume(holder, "talks", 4)
    taken = {e.lot.order_id: -e.amount for e in result.entries}
    assert taken == {yearly.pk: 3, later.pk: 1}
    assert never.lots.get().remaining == 1
    assert result.balance == 1
    assert [e.kind for e in result.entries] == ["consume", "consume"]


def test_burn_order_priority_then_expiry_then_promotional_then_oldest(holder):
    group = make_group("g")
    soon = timezone.now() + timedelta(days=5)
    paid = services.grant(holder, group, 1, expires=soon, category="paid")
    promo = services.grant(holder, group, 1, expires=soon)
    urgent = services.grant(holder, group, 1, priority=10)
    old = services.grant(holder, group, 1, expires=soon, category="paid")
    order = [services.consume(holder, group, 1).entries[0].lot_id for _ in range(4)]
    assert order == [urgent.pk, promo.pk, paid.pk, old.pk]


def test_consume_exactly_the_balance_then_one_more(holder):
    group = make_group("g")
    services.grant(holder, group, 5)
    assert services.consume(holder, group, 5).balance == 0
    before = table_snapshot()
    with pytest.raises(InsufficientCredits) as exc:
        services.consume(holder, group, 1)
    assert (exc.value.requested, exc.value.available) == (1, 0)
    assert table_snapshot() == before


def test_one_more_than_the_balance_writes_nothing(holder):
    group = make_group("g")
    services.grant(holder, group, 3)
    services.grant(holder, group, 3)
    before = table_snapshot()
    with pytest.raises(InsufficientCredits, match="7 requested, 6 available"):
        services.consume(holder, group, 7)
    assert table_snapshot() == before
    assert services.get_balance(holder, group) == 6


def test_consume_without_account_or_unknown_group(holder):
    make_group("empty")
    with pytest.raises(InsufficientCredits):
        services.consume(holder, "empty", 1)
    with pytest.raises(UnknownOfferGroup):
        services.consume(holder, "nope", 1)
    with pytest.raises(UnknownOfferGroup):
        services.get_balance(holder, "nope")


@pytest.mark.parametrize("count", [0, -3, 1.0, "1", None, True])
def test_count_must_be_a_positive_integer(holder, count):
    group = make_group("g")
    services.grant(holder, group, 5)
    before = table_snapshot()
    with pytest.raises(InvalidCount):
        services.consume(holder, group, count)
    assert table_snapshot() == before


def test_lot_expiring_at_the_instant_of_a_consume_is_expired_first(holder, travel):
    group = make_group("g")
    with travel(T0):
        lot = services.grant(holder, group, 5, expires=T0 + timedelta(hours=1))
        services.grant(holder, group, 2)
    with travel(T0 + timedelta(hours=1)):  # expires is exclusive: gone at that instant
        assert services.get_balance(holder, group) == 2
        with pytest.raises(InsufficientCredits):
            services.consume(holder, group, 3)
        result = services.consume(holder, group, 2)
    lot.refresh_from_db()
    # The failed attempt wrote nothing; the successful one expired the due lot first.
    assert (lot.remaining, lot.status) == (0, LotStatus.EXPIRED)
    kinds = list(LedgerEntry.objects.order_by("id").values_list("kind", "amount"))
    assert kinds == [("grant", 5), ("grant", 2), ("expire", -5), ("consume", -2)]
    assert result.balance == 0


def test_idempotent_replay_and_conflict(holder, on_commit):
    group = make_group("g")
    services.grant(holder, group, 10)
    received = []
    uid = "tests.test_idempotent_replay_and_conflict"
    signals.credits_consumed.connect(
        lambda **kw: received.append(kw["count"]), weak=False, dispatch_uid=uid
    )
    try:
        with on_commit():
            first = services.consume(holder, group, 3, idempotency_key="req-1", metadata={"a": 1})
            again = services.consume(holder, group, 3, idempotency_key="req-1")
    finally:
        assert signals.credits_consumed.disconnect(dispatch_uid=uid)
    assert (first.replayed, again.replayed) == (False, True)
    assert again.balance == first.balance == 7
    assert [e.pk for e in again.entries] == [e.pk for e in first.entries]
    assert received == [3]
    assert services.get_balance(holder, group) == 7
    before = table_snapshot()
    with pytest.raises(IdempotencyConflict):
        services.consume(holder, group, 4, idempotency_key="req-1")
    with pytest.raises(IdempotencyConflict):
        services.consume(holder, make_group("other"), 3, idempotency_key="req-1")
    assert table_snapshot() == before


def test_idempotency_key_is_per_user(holder, other_holder):
    group = make_group("g")
    services.grant(holder, group, 5)
    services.grant(other_holder, group, 5)
    services.consume(holder, group, 1, idempotency_key="k")
    assert services.consume(other_holder, group, 1, idempotency_key="k").replayed is False
    assert services.get_balance(other_holder, group) == 4


def test_overdraft_is_settled_by_the_next_grant(holder):
    group = make_group("g")
    services.grant(holder, group, 2)
    with override_settings(USER_CREDITS={"OVERDRAFT_GROUPS": {"g": True}}):
        result = services.consume(holder, group, 5)
        assert result.balance == -3
        assert [e.kind for e in result.entries] == ["consume", "overdraft"]
        assert services.get_balance(holder, group) == -3
    with pytest.raises(InsufficientCredits):
        services.consume(holder, group, 1)  # overdraft off again
    lot = services.grant(holder, group, 10)
    assert (lot.granted, lot.remaining) == (10, 7)
    assert services.get_balance(holder, group) == 7
    entry = LedgerEntry.objects.get(lot=lot, kind=EntryKind.GRANT)
    assert entry.metadata["settled_overdraft"] == 3


@override_settings(USER_CREDITS={"ALLOW_OVERDRAFT": True})
def test_global_overdraft_without_any_account(holder):
    group = make_group("g")
    assert services.consume(holder, group, 4).balance == -4
    assert services.get_balance(holder, group) == -4


# --- grants and refunds ------------------------------------------------------------------


def test_grant_validates_its_arguments(holder):
    group = make_group("g")
    with pytest.raises(InvalidCount):
        services.grant(holder, group, 0)
    with pytest.raises(InvalidArgument):
        services.grant(holder, group, 5, expires=timezone.now() - timedelta(seconds=1))
    with pytest.raises(InvalidArgument):
        services.grant(holder, group, 5, category="gift")
    lot = services.grant(holder, "g", 5, reason="welcome")
    assert (lot.category, lot.reason) == ("promotional", "welcome")
    assert LedgerEntry.objects.get(lot=lot).metadata == {"reason": "welcome"}


def test_full_refund_after_partial_consumption(holder):
    order = buy(holder, make_offer(price=Decimal("20"), token_count=100))
    services.consume(holder, order.offer_group, 30)
    order = services.refund(order, reference="re_1")
    assert order.status == OrderStatus.REFUNDED
    assert order.amount_refunded == Decimal("20")
    assert services.get_balance(holder, order.offer_group) == 0
    revoke = LedgerEntry.objects.get(kind=EntryKind.REVOKE)
    assert revoke.amount == -70
    assert order.lots.get().status == LotStatus.REVOKED
    # The same refund reference again is a no-op; a new refund has nothing left to refund.
    assert services.refund(order, reference="re_1").status == OrderStatus.REFUNDED
    with pytest.raises(InvalidTransition):
        services.refund(order)


def test_partial_refunds_revoke_the_refunded_share_rounded_down(holder):
    order = buy(holder, make_offer(price=Decimal("30"), token_count=100))
    order = services.refund(order, amount=Decimal("10"), reference="re_1")  # a third: 33
    assert order.status == OrderStatus.PARTIAL
    assert services.get_balance(holder, order.offer_group) == 67
    services.consume(holder, order.offer_group, 60)
    order = services.refund(order, amount=Decimal("10"), reference="re_2")  # 66 in all: 33 more
    # At most what is left: 7 tokens remained.
    assert services.get_balance(holder, order.offer_group) == 0
    assert LedgerEntry.objects.filter(kind=EntryKind.REVOKE).aggregate(s=Sum("amount"))["s"] == -40
    order = services.refund(order, reference="re_3")
    assert order.status == OrderStatus.REFUNDED


def test_refund_errors_change_nothing(holder):
    pending = services.create_order(holder, make_offer(price=Decimal("5")))
    paid = buy(holder, make_offer(price=Decimal("5")))
    free = buy(holder, make_offer(price=Decimal("0")))
    before = table_snapshot()
    with pytest.raises(InvalidTransition):
        services.refund(pending)
    with pytest.raises(InvalidTransition):
        services.refund(free)
    with pytest.raises(PaymentMismatch):
        services.refund(paid, amount=Decimal("6"))
    with pytest.raises(PaymentMismatch):
        services.refund(paid, amount=Decimal("-1"))
    with pytest.raises(PaymentMismatch):
        services.refund(paid, amount="abc")
    assert table_snapshot() == before


def test_bundle_refund_revokes_every_item(catalog, holder):
    order = buy(holder, catalog["Mobile Max"])
    services.consume(holder, "calls", 20)
    services.refund(order)
    assert [services.get_balance(holder, g) for g in ("calls", "data", "tv")] == [0, 0, 0]
    assert set(order.children.values_list("status", flat=True)) == {OrderStatus.REFUNDED}


# --- reads -------------------------------------------------------------------------------


def test_balance_never_counts_expired_lots_even_before_the_sweep(holder, travel):
    group = make_group("g")
    with travel(T0):
        services.grant(holder, group, 5, expires=T0 + timedelta(days=1))
        services.grant(holder, group, 3)
    with travel(T0 + timedelta(days=2)):
        assert services.get_balance(holder, group) == 3
        (credits,) = services.get_user_credits(holder)
        assert credits.balance == 3
        assert [lot.remaining for lot in credits.lots] == [3]


def test_get_balance_is_one_query(holder, django_assert_num_queries):
    group = make_group("g")
    for _ in range(5):
        services.grant(holder, group, 2)
    with django_assert_num_queries(1):
        assert services.get_balance(holder, group) == 10
    with django_assert_num_queries(1):
        assert services.get_balance(holder.pk, "g") == 10


def test_get_user_credits(catalog, holder, travel, django_assert_max_num_queries):
    with travel(T0):
        a = buy(holder, catalog["3 Talks"])
        b = buy(holder, catalog["EventTalk"])
        buy(holder, catalog["Startup Standard Monthly"])
        for _ in range(20):
            services.grant(holder, "talks", 1, expires=T0 + timedelta(days=3))
        services.consume(holder, "talks", 2)
    with travel(T0 + timedelta(days=1)), django_assert_max_num_queries(2):
        credits = {c.offer_group: c for c in services.get_user_credits(holder)}
    talks = credits["talks"]
    assert talks.balance == 3 + 1 + 20 - 2
    assert talks.starts == T0
    assert talks.expires is None  # one lot never expires
    assert len(talks.lots) == 22
    assert {lot.order for lot in talks.lots} >= {a.pk, b.pk}
    assert credits["Startup"].expires == datetime(2026, 2, 28, 10, 0, tzinfo=UTC)
    assert credits["Startup"].lots[0].granted == 1_000


def test_signals_name_the_holder_and_keep_user_id(holder, on_commit, django_assert_num_queries):
    """``holder=`` (read only when used) and ``holder_id=``; ``user_id=`` is the same key."""
    got = []
    uid = "tests.test_signals_name_the_holder_and_keep_user_id"
    for signal in (signals.credits_granted, signals.credits_consumed):
        signal.connect(lambda **kw: got.append(kw), weak=False, dispatch_uid=uid)
    try:
        with on_commit():
            services.grant(holder, make_group("g"), 5)
            services.consume(holder, "g", 2)
    finally:
        for signal in (signals.credits_granted, signals.credits_consumed):
            assert signal.disconnect(dispatch_uid=uid)
    assert [kw["signal"] for kw in got] == [signals.credits_granted, signals.credits_consumed]
    for kw in got:
        assert kw["holder_id"] == kw["user_id"] == holder.pk
        with django_assert_num_queries(1):  # the holder is read on first use, once
            assert kw["holder"] == holder and kw["holder"].pk == holder.pk
        assert isinstance(kw["holder"], type(holder))
