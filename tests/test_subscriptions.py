"""Recurring plans: subscribe, renew once per invoice, rollover, free plans, cancel, resume."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from user_credits import services, signals
from user_credits.exceptions import InvalidArgument, InvalidOrder, InvalidTransition
from user_credits.models import (
    Billing,
    CreditLot,
    EntryKind,
    LedgerEntry,
    Offer,
    Order,
    OrderStatus,
    Rollover,
    Subscription,
    SubscriptionStatus,
)
from user_credits.services.cycles import cycle_end

from .factories import make_offer, table_snapshot

pytestmark = pytest.mark.django_db


def plan(price="20", tokens=100, rollover=Rollover.NONE, cap=None, **fields):
    return make_offer(
        price=Decimal(price),
        token_count=tokens,
        billing=Billing.RECURRING,
        rollover=rollover,
        rollover_cap=cap,
        **fields,
    )


def at(*args):
    return datetime(*args, tzinfo=UTC)


# --- offers ----------------------------------------------------------------------------------


def test_rollover_cap_required_with_capped_and_refused_otherwise():
    offer = plan(rollover=Rollover.CAPPED, cap=50)
    offer.full_clean()
    offer.rollover_cap = None
    with pytest.raises(ValidationError) as caught:
        offer.full_clean()
    assert "rollover_cap" in caught.value.message_dict
    offer.rollover, offer.rollover_cap = Rollover.ALL, 10
    with pytest.raises(ValidationError) as caught:
        offer.full_clean()
    assert "rollover_cap" in caught.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        Offer.objects.filter(pk=offer.pk).update(rollover=Rollover.CAPPED, rollover_cap=None)


# --- subscribing -----------------------------------------------------------------------------


def test_one_time_offer_is_refused(holder):
    before = table_snapshot()
    with pytest.raises(InvalidOrder) as caught:
        services.subscribe(holder, make_offer())
    assert caught.value.field == "offer" and "sold once" in str(caught.value)
    assert table_snapshot() == before and not Subscription.objects.exists()


def test_second_live_subscription_to_the_same_offer_is_refused(holder, other_holder):
    offer = plan()
    first = services.subscribe(holder, offer)
    assert first.status == SubscriptionStatus.INCOMPLETE
    before = Subscription.objects.count()
    with pytest.raises(InvalidOrder) as caught:
        services.subscribe(holder, offer)
    assert caught.value.field == "offer" and "already subscribes" in str(caught.value)
    assert Subscription.objects.count() == before
    services.subscribe(other_holder, offer)  # another holder may
    services.cancel_subscription(first, at_period_end=False)
    assert services.subscribe(holder, offer).status == SubscriptionStatus.INCOMPLETE


def test_bad_quantity_names_the_field(holder):
    with pytest.raises(InvalidOrder) as caught:
        services.subscribe(holder, plan(), quantity=0)
    assert caught.value.field == "quantity"
    assert not Subscription.objects.exists()


def test_free_plan_is_active_at_once_with_its_first_period(holder, travel, on_commit):
    offer = plan(price="0", tokens=30)
    renewed = []
    signals.subscription_renewed.connect(lambda **kw: renewed.append(kw["order"]), weak=False)
    try:
        with travel(at(2026, 1, 31, 12)), on_commit():
            sub = services.subscribe(holder, offer)
    finally:
        signals.subscription_renewed.receivers.clear()
    assert sub.status == SubscriptionStatus.ACTIVE
    assert (sub.current_period_start, sub.current_period_end) == (
        at(2026, 1, 31, 12),
        at(2026, 2, 28, 12),
    )
    (order,) = sub.orders.all()
    assert order.status == OrderStatus.PAID and order.total == 0
    assert renewed == [order]
    lot = CreditLot.objects.get(order=order)
    assert lot.expires == at(2026, 2, 28, 13)  # period end + RENEWAL_GRACE
    with travel(at(2026, 2, 1)):
        assert services.get_balance(holder, offer.offer_group) == 30


def test_paid_plan_is_incomplete_until_its_first_period_is_paid(holder):
    sub = services.subscribe(holder, plan())
    assert sub.status == SubscriptionStatus.INCOMPLETE and sub.payment_start is None
    assert not sub.orders.exists()


# --- renewals --------------------------------------------------------------------------------


def test_renewal_is_granted_once_per_reference(holder, travel, on_commit):
    offer = plan(price="20", tokens=100)
    sub = services.subscribe(holder, offer, quantity=2)
    with travel(at(2026, 3, 1)), on_commit():
        orders = [
            services.renew_subscription(
                sub,
                period_start=at(2026, 3, 1),
                period_end=at(2026, 4, 1),
                reference="in_1",
                amount="40",
                currency="usd",
            )
            for _ in range(3)
        ]
    assert len({o.pk for o in orders}) == 1
    order = orders[0]
    assert (order.status, order.total, order.subscription_id) == (OrderStatus.PAID, 40, sub.pk)
    assert CreditLot.objects.filter(order__subscription=sub).count() == 1
    with travel(at(2026, 3, 2)):
        assert services.get_balance(holder, offer.offer_group) == 200
    sub.refresh_from_db()
    assert sub.status == SubscriptionStatus.ACTIVE and sub.current_period_end == at(2026, 4, 1)


@pytest.mark.parametrize("amount, currency", [("19.99", "usd"), ("20", "eur"), ("2000", "usd")])
def test_mismatched_renewal_is_inconsistent_and_grants_nothing(holder, amount, currency):
    sub = services.subscribe(holder, plan(price="20"))
    order = services.renew_subscription(
        sub,
        period_start=at(2030, 1, 1),
        period_end=at(2030, 2, 1),
        reference="in_bad",
        amount=amount,
        currency=currency,
    )
    assert order.status == OrderStatus.INCONSISTENT
    assert "does not match" in order.events.get(status=OrderStatus.INCONSISTENT).message
    assert not CreditLot.objects.exists() and not LedgerEntry.objects.exists()
    sub.refresh_from_db()
    assert sub.status == SubscriptionStatus.INCOMPLETE


def test_bad_period_names_the_field(holder):
    sub = services.subscribe(holder, plan())
    with pytest.raises(InvalidArgument) as caught:
        services.renew_subscription(
            sub, period_start=at(2030, 2, 1), period_end=at(2030, 1, 1), reference="in_x"
        )
    assert caught.value.field == "period_end"
    with pytest.raises(InvalidArgument) as caught:
        services.renew_subscription(
            sub, period_start=at(2030, 1, 1), period_end=at(2030, 2, 1), reference=""
        )
    assert caught.value.field == "reference"
    assert not Order.objects.exists()


def test_rollover_moves_unused_tokens_up_to_the_cap(holder, travel):
    offer = plan(tokens=100, rollover=Rollover.CAPPED, cap=30)
    sub = services.subscribe(holder, offer)
    with travel(at(2026, 1, 1)):
        services.renew_subscription(
            sub, period_start=at(2026, 1, 1), period_end=at(2026, 2, 1), reference="in_1"
        )
        services.consume(holder, offer.offer_group, 40)
    with travel(at(2026, 2, 1, 0, 10)):  # within the grace: the old lot is alive
        order = services.renew_subscription(
            sub, period_start=at(2026, 2, 1), period_end=at(2026, 3, 1), reference="in_2"
        )
        assert services.get_balance(holder, offer.offer_group) == 60 + 100  # old 60 + new 100
    rolled = list(
        LedgerEntry.objects.filter(kind=EntryKind.ROLLOVER)
        .order_by("seq")
        .values_list("amount", flat=True)
    )
    assert rolled == [-30, 30]
    new = CreditLot.objects.get(order=order)
    assert (new.granted, new.remaining) == (130, 130)
    with travel(at(2026, 2, 2)):  # the old lot's 30 left over expired with it
        services.expire_credits()
        assert services.get_balance(holder, offer.offer_group) == 130
    assert services.verify_ledger().ok


def test_renewal_after_the_grace_rolls_nothing_over(holder, travel):
    offer = plan(tokens=100, rollover=Rollover.ALL)
    sub = services.subscribe(holder, offer)
    with travel(at(2026, 1, 1)):
        services.renew_subscription(
            sub, period_start=at(2026, 1, 1), period_end=at(2026, 2, 1), reference="in_1"
        )
    with travel(at(2026, 2, 1, 2)):  # two hours late: the old lot expired
        services.renew_subscription(
            sub, period_start=at(2026, 2, 1), period_end=at(2026, 3, 1), reference="in_2"
        )
        assert services.get_balance(holder, offer.offer_group) == 100
    assert not LedgerEntry.objects.filter(kind=EntryKind.ROLLOVER).exists()


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])
def test_fourteen_monthly_periods_from_jan_31_with_capped_rollover(holder, travel, settings, zone):
    """A plan renewed on each period end for 14 months, consuming a varying amount each
    month: the balance after each renewal equals a model computed here."""
    settings.TIME_ZONE = zone
    offer = plan(tokens=100, rollover=Rollover.CAPPED, cap=35, cycle="monthly")
    sub = services.subscribe(holder, offer)
    anchor = at(2026, 1, 31, 9)
    spend = [10, 90, 0, 65, 100, 20, 5, 99, 50, 0, 70, 33, 1, 100]
    model_left = 0
    for n in range(14):
        start = cycle_end(anchor, "monthly", quantity=n) if n else anchor
        end = cycle_end(anchor, "monthly", quantity=n + 1)
        with travel(start + timedelta(minutes=5)):
            services.renew_subscription(
                sub, period_start=start, period_end=end, reference=f"in_{n}"
            )
            model_left = 100 + min(model_left, 35)
            # Before the old lot expires, the balance also counts its tokens past the cap.
            services.expire_credits(now=start + timedelta(hours=2))
        with travel(start + timedelta(hours=2)):
            assert services.get_balance(holder, offer.offer_group) == model_left, n
            if spend[n]:
                services.consume(holder, offer.offer_group, spend[n])
            model_left -= spend[n]
    ends = list(sub.orders.order_by("starts").values_list("expires", flat=True))
    from django.utils import timezone

    local_days = [timezone.localtime(e).day for e in ends[:4]]
    assert local_days == [28, 31, 30, 31]  # Feb 28, Mar 31, Apr 30, May 31
    assert services.verify_ledger().ok


# --- free plans renewed by the expiry sweep ----------------------------------------------------


def test_free_plan_renews_its_current_period_only(holder, travel):
    offer = plan(price="0", tokens=10)
    with travel(at(2026, 1, 31, 8)):
        sub = services.subscribe(holder, offer)
    # The sweep did not run for three periods; it grants the current one only.
    report = services.expire_credits(now=at(2026, 5, 5))
    assert report.renewed_subscriptions == 1
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.current_period_end) == (
        at(2026, 4, 30, 8),
        at(2026, 5, 31, 8),
    )
    assert sub.orders.count() == 2
    assert services.expire_credits(now=at(2026, 5, 6)).renewed_subscriptions == 0  # once
    with travel(at(2026, 5, 6)):
        assert services.get_balance(holder, offer.offer_group) == 10
    assert services.expire_credits(now=at(2026, 5, 31, 8, 30)).renewed_subscriptions == 1
    assert sub.orders.count() == 3


def test_free_plan_canceled_at_period_end_ends_at_the_sweep(holder, travel, on_commit):
    offer = plan(price="0", tokens=10)
    with travel(at(2026, 1, 1)):
        sub = services.subscribe(holder, offer)
    services.cancel_subscription(sub)
    sub.refresh_from_db()
    assert sub.status == SubscriptionStatus.ACTIVE and sub.cancel_at_period_end
    canceled = []
    signals.subscription_canceled.connect(
        lambda **kw: canceled.append(kw["subscription"].pk), weak=False
    )
    try:
        with on_commit():
            services.expire_credits(now=at(2026, 2, 2))
    finally:
        signals.subscription_canceled.receivers.clear()
    sub.refresh_from_db()
    assert sub.status == SubscriptionStatus.CANCELED and canceled == [sub.pk]
    assert sub.orders.count() == 1


# --- cancel and resume -----------------------------------------------------------------------


def test_cancel_at_period_end_then_resume(holder, travel):
    sub = services.subscribe(holder, plan())
    with travel(at(2026, 1, 1)):
        services.renew_subscription(
            sub, period_start=at(2026, 1, 1), period_end=at(2026, 2, 1), reference="in_1"
        )
    sub = services.cancel_subscription(sub)
    assert sub.status == SubscriptionStatus.ACTIVE and sub.cancel_at_period_end
    sub = services.resume_subscription(sub)
    assert not sub.cancel_at_period_end
    with pytest.raises(InvalidTransition) as caught:
        services.resume_subscription(sub)
    assert caught.value.field == "subscription"


def test_immediate_cancel_keeps_the_tokens_and_renews_no_more(holder, travel):
    offer = plan(tokens=50)
    sub = services.subscribe(holder, offer)
    with travel(at(2026, 1, 1)):
        services.renew_subscription(
            sub, period_start=at(2026, 1, 1), period_end=at(2026, 2, 1), reference="in_1"
        )
        sub = services.cancel_subscription(sub, at_period_end=False)
        assert sub.status == SubscriptionStatus.CANCELED
        assert services.get_balance(holder, offer.offer_group) == 50
    with pytest.raises(InvalidTransition):
        services.renew_subscription(
            sub, period_start=at(2026, 2, 1), period_end=at(2026, 3, 1), reference="in_2"
        )
    with pytest.raises(InvalidTransition):
        services.cancel_subscription(sub)
    assert sub.orders.count() == 1


def test_failed_renewal_is_past_due_then_a_retry_pays(holder, travel, on_commit):
    offer = plan(tokens=50)
    sub = services.subscribe(holder, offer)
    with travel(at(2026, 1, 1)):
        services.renew_subscription(
            sub, period_start=at(2026, 1, 1), period_end=at(2026, 2, 1), reference="in_1"
        )
    seen = []
    signals.subscription_past_due.connect(lambda **kw: seen.append("past_due"), weak=False)
    try:
        with on_commit():
            sub = services.mark_past_due(sub)
            services.mark_past_due(sub)  # again: one signal
    finally:
        signals.subscription_past_due.receivers.clear()
    assert sub.status == SubscriptionStatus.PAST_DUE and seen == ["past_due"]
    with travel(at(2026, 2, 3)):
        services.renew_subscription(
            sub, period_start=at(2026, 2, 1), period_end=at(2026, 3, 1), reference="in_2"
        )
    sub.refresh_from_db()
    assert sub.status == SubscriptionStatus.ACTIVE and sub.orders.count() == 2


def test_sweep_leaves_provider_and_manual_paid_renewals_alone(holder, other_holder):
    offer = plan(price="20")
    by_stripe = services.subscribe(holder, offer)
    by_hand = services.subscribe(other_holder, offer)
    for sub, reference in ((by_stripe, "in_s"), (by_hand, "in_h")):
        services.renew_subscription(
            sub, period_start=at(2026, 1, 1), period_end=at(2026, 2, 1), reference=reference
        )
    Subscription.objects.filter(pk=by_stripe.pk).update(reference="sub_x")
    report = services.expire_credits(now=at(2026, 3, 1))
    assert report.renewed_subscriptions == 0
    assert Order.objects.count() == 2  # no period granted by the sweep
    assert set(Subscription.objects.values_list("status", flat=True)) == {"active"}
    services.cancel_subscription(by_hand)  # a manual plan canceled at its period end…
    services.expire_credits(now=at(2026, 3, 2))
    by_hand.refresh_from_db()
    assert by_hand.status == SubscriptionStatus.CANCELED  # … ends at the next sweep


def test_placed_by_defaults_to_the_holder_only_when_holders_are_users(holder, user, other_user):
    """A workspace is not a user: with a custom holder model nobody is named by default (on
    PostgreSQL the holder's key there broke the foreign key to the user model)."""
    from user_credits.holders import holder_is_user

    sub = services.subscribe(holder, plan(price="5", tokens=30))
    assert sub.placed_by_id == (user.pk if holder_is_user() else None)
    order = services.create_order(holder, make_offer(price=Decimal("5"), token_count=30))
    assert order.placed_by_id == (user.pk if holder_is_user() else None)
    named = services.subscribe(holder, plan(price="7", tokens=30), member=other_user)
    assert named.placed_by_id == other_user.pk
