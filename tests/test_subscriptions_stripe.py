"""Recurring plans through Stripe Billing: signed events in the shapes of dj-stripe's fixtures
(invoices, subscriptions, Checkout Sessions), posted to dj-stripe's real webhook endpoint."""

import random
import time
from decimal import Decimal

import pytest

from user_credits import services
from user_credits.models import (
    Billing,
    CreditLot,
    EntryKind,
    LedgerEntry,
    Order,
    OrderStatus,
    Rollover,
    SubscriptionStatus,
)
from user_credits.payments.stripe import SUBSCRIPTION_KEY

from . import stripe_fake as fake
from .factories import make_offer, table_snapshot

DAY = 86400


class Plan:
    """A recurring offer and one holder's subscription to it, with their Stripe objects."""

    def __init__(self, stripe_api, holder, *, price="20", tokens=100, **offer_fields):
        self.api = stripe_api
        product = stripe_api.put(fake.product(name="Plan"))
        self.price = stripe_api.put(
            fake.price(
                unit_amount=int(Decimal(price) * 100), currency="usd", product_id=product["id"]
            )
        )
        self.offer = make_offer(
            price=Decimal(price),
            token_count=tokens,
            billing=Billing.RECURRING,
            stripe_price_id=self.price["id"],
            **offer_fields,
        )
        self.user = holder
        self.subscription = services.subscribe(holder, self.offer)
        self.customer = stripe_api.make_customer({})["id"]
        self.start = int(time.time()) - 60
        self.sub = stripe_api.put(
            fake.subscription(
                customer=self.customer,
                price_obj=self.price,
                metadata={SUBSCRIPTION_KEY: str(self.subscription.pk)},
                period_start=self.start,
                period_end=self.start + 30 * DAY,
            )
        )

    def period(self, n):
        return self.start + 30 * DAY * n, self.start + 30 * DAY * (n + 1)

    def invoice(self, n=0, *, amount=2000, **extra):
        start, end = self.period(n)
        extra.setdefault(
            "billing_reason", "subscription_create" if n == 0 else "subscription_cycle"
        )
        return fake.invoice(
            customer=self.customer,
            sub=self.sub,
            amount=amount,
            currency="usd",
            period_start=start,
            period_end=end,
            **extra,
        )

    def sub_event(self, event_type, **changes):
        return fake.event(event_type, {**self.sub, **changes})

    def refresh(self):
        self.subscription.refresh_from_db()
        return self.subscription

    def balance(self):
        return services.get_balance(self.user, self.offer.offer_group)


@pytest.fixture
def plan(stripe_api, endpoint, holder):
    return Plan(stripe_api, holder)


def grants():
    return LedgerEntry.objects.filter(kind=EntryKind.GRANT).count()


@pytest.mark.django_db
def test_first_period_paid_through_invoice_paid(deliver, plan):
    assert plan.subscription.status == SubscriptionStatus.INCOMPLETE
    assert (
        deliver(plan.sub_event("customer.subscription.created", status="incomplete")).status_code
        == 200
    )
    assert plan.refresh().status == SubscriptionStatus.INCOMPLETE
    assert plan.subscription.reference == plan.sub["id"]
    invoice = plan.invoice(0)
    assert deliver(fake.event("invoice.paid", invoice)).status_code == 200
    assert deliver(fake.event("invoice.payment_succeeded", invoice)).status_code == 200
    sub = plan.refresh()
    assert sub.status == SubscriptionStatus.ACTIVE
    (order,) = sub.orders.all()
    assert (order.status, order.total, order.payment_reference) == (
        OrderStatus.PAID,
        Decimal("20"),
        invoice["id"],
    )
    assert int(order.starts.timestamp()) == plan.period(0)[0]
    assert int(order.expires.timestamp()) == plan.period(0)[1]
    assert plan.balance() == 100 and grants() == 1


@pytest.mark.django_db
def test_invoice_before_its_subscription_event_and_renewal_cycle(deliver, plan):
    deliver(fake.event("invoice.payment_succeeded", plan.invoice(0)))  # no subscription event yet
    sub = plan.refresh()
    assert sub.status == SubscriptionStatus.ACTIVE and sub.reference == plan.sub["id"]
    deliver(plan.sub_event("customer.subscription.created", status="incomplete"))
    assert plan.refresh().status == SubscriptionStatus.ACTIVE  # a late 'incomplete' is stale
    renewal = plan.invoice(1)
    assert renewal["billing_reason"] == "subscription_cycle"
    deliver(fake.event("invoice.paid", renewal))
    sub = plan.refresh()
    assert sub.orders.filter(status=OrderStatus.PAID).count() == 2
    assert int(sub.current_period_end.timestamp()) == plan.period(1)[1]
    assert grants() == 2


@pytest.mark.django_db
def test_failed_then_retried_renewal(deliver, plan):
    deliver(fake.event("invoice.paid", plan.invoice(0)))
    failing = plan.invoice(1, paid=False)
    deliver(fake.event("invoice.payment_failed", failing))
    assert plan.refresh().status == SubscriptionStatus.PAST_DUE
    deliver(plan.sub_event("customer.subscription.updated", status="past_due"))
    assert plan.refresh().status == SubscriptionStatus.PAST_DUE and grants() == 1
    retried = {**failing, "paid": True, "status": "paid", "amount_paid": 2000, "attempt_count": 2}
    deliver(fake.event("invoice.paid", retried))
    sub = plan.refresh()
    assert sub.status == SubscriptionStatus.ACTIVE and grants() == 2


@pytest.mark.django_db
def test_cancel_at_period_end_then_the_period_ends(deliver, plan):
    deliver(fake.event("invoice.paid", plan.invoice(0)))
    deliver(plan.sub_event("customer.subscription.updated", cancel_at_period_end=True))
    sub = plan.refresh()
    assert sub.status == SubscriptionStatus.ACTIVE and sub.cancel_at_period_end
    deliver(plan.sub_event("customer.subscription.deleted", status="canceled"))
    sub = plan.refresh()
    assert sub.status == SubscriptionStatus.CANCELED and sub.canceled_at is not None
    assert plan.balance() == 100  # the period's tokens stay until they expire
    # A late invoice of a canceled subscription grants nothing (logged, 200).
    assert deliver(fake.event("invoice.paid", plan.invoice(1))).status_code == 200
    assert grants() == 1


@pytest.mark.django_db
def test_immediate_cancel(deliver, plan):
    deliver(fake.event("invoice.paid", plan.invoice(0)))
    deliver(plan.sub_event("customer.subscription.deleted", status="canceled"))
    assert plan.refresh().status == SubscriptionStatus.CANCELED
    assert plan.balance() == 100


@pytest.mark.django_db
def test_refund_of_a_renewal_invoice_revokes_its_period(deliver, plan):
    deliver(fake.event("invoice.paid", plan.invoice(0)))
    renewal = plan.invoice(1)
    deliver(fake.event("invoice.paid", renewal))
    assert plan.balance() == 200
    charge = {
        **fake.charge(amount=2000, currency="usd", metadata={}, amount_refunded=2000),
        "invoice": renewal["id"],
    }
    assert deliver(fake.event("charge.refunded", charge)).status_code == 200
    order = Order.objects.get(payment_reference=renewal["id"])
    assert order.status == OrderStatus.REFUNDED
    assert plan.balance() == 100
    assert [e.amount for e in LedgerEntry.objects.filter(kind=EntryKind.REVOKE)] == [-100]


@pytest.mark.django_db
def test_mismatched_invoice_amount_is_inconsistent(deliver, plan):
    assert deliver(fake.event("invoice.paid", plan.invoice(0, amount=1500))).status_code == 200
    (order,) = plan.refresh().orders.all()
    assert order.status == OrderStatus.INCONSISTENT
    assert not CreditLot.objects.exists()


@pytest.mark.django_db
def test_invoice_of_an_unknown_subscription_is_logged_and_answered_200(
    deliver, plan, stripe_api, caplog
):
    stranger = stripe_api.put(
        fake.subscription(
            customer=plan.customer,
            price_obj=plan.price,
            metadata={},
            period_start=plan.start,
            period_end=plan.start + 30 * DAY,
        )
    )
    invoice = fake.invoice(
        customer=plan.customer,
        sub=stranger,
        amount=2000,
        currency="usd",
        period_start=plan.start,
        period_end=plan.start + 30 * DAY,
    )
    named = {**invoice, "subscription_details": {"metadata": {SUBSCRIPTION_KEY: "999999"}}}
    before = table_snapshot()
    with caplog.at_level("WARNING", logger="user_credits.payments"):
        assert deliver(fake.event("invoice.paid", invoice)).status_code == 200
        assert deliver(fake.event("invoice.paid", named)).status_code == 200
    assert table_snapshot() == before
    assert "no subscription of ours" in caplog.text and "unknown subscription" in caplog.text


@pytest.mark.django_db
def test_checkout_session_in_subscription_mode_records_the_stripe_subscription(deliver, plan):
    session = fake.checkout_session(
        amount_total=2000,
        currency="usd",
        metadata={SUBSCRIPTION_KEY: str(plan.subscription.pk)},
        mode="subscription",
        subscription=plan.sub["id"],
    )
    assert deliver(fake.event("checkout.session.completed", session)).status_code == 200
    sub = plan.refresh()
    assert sub.reference == plan.sub["id"] and sub.status == SubscriptionStatus.INCOMPLETE
    assert not Order.objects.exists()  # the invoice pays, not the session


@pytest.mark.django_db
def test_rollover_capped_through_invoices(deliver, stripe_api, endpoint, holder):
    plan = Plan(stripe_api, holder, rollover=Rollover.CAPPED, rollover_cap=30)
    deliver(fake.event("invoice.paid", plan.invoice(0)))
    services.consume(holder, plan.offer.offer_group, 10)
    # The renewal is paid while the first period's lot is alive (its end is in the future here).
    deliver(fake.event("invoice.paid", plan.invoice(1)))
    rolled = LedgerEntry.objects.filter(kind=EntryKind.ROLLOVER).order_by("seq")
    assert [e.amount for e in rolled] == [-30, 30]
    assert plan.balance() == 190  # 60 left in the first lot, 130 in the second
    assert services.verify_ledger().ok


def _events(plan):
    invoice0, invoice1 = plan.invoice(0), plan.invoice(1)
    return [
        plan.sub_event("customer.subscription.created", status="incomplete"),
        fake.event("invoice.paid", invoice0),
        fake.event("invoice.payment_succeeded", invoice0),
        plan.sub_event("customer.subscription.updated"),
        fake.event("invoice.paid", invoice1),
        fake.event("invoice.payment_succeeded", invoice1),
    ]


@pytest.mark.django_db
def test_events_replayed_three_times_and_shuffled_grant_once_per_invoice(deliver, plan):
    events = _events(plan) * 3
    random.Random(16).shuffle(events)
    assert {deliver(evt).status_code for evt in events} == {200}
    sub = plan.refresh()
    assert sub.status == SubscriptionStatus.ACTIVE
    assert sub.orders.filter(status=OrderStatus.PAID).count() == 2
    assert grants() == 2 and plan.balance() == 200


@pytest.mark.postgres
def test_events_replayed_and_shuffled_from_four_threads(deliver, stripe_api, endpoint, holder):
    from .test_concurrency import in_threads

    plan = Plan(stripe_api, holder)
    events = _events(plan) * 3
    random.Random(4).shuffle(events)
    for evt in events:
        stripe_api.put(evt["data"]["object"])
    chunks = [events[i::4] for i in range(4)]
    codes = in_threads(4, lambda i: [deliver(evt).status_code for evt in chunks[i]])
    # dj-stripe's own copy of an object created by two deliveries at once can collide (a 500:
    # Stripe retries); redelivering every event then changes nothing of ours but completes.
    for evt in events:
        assert deliver(evt).status_code == 200
    assert sum(c == 200 for c in sum(codes, [])) >= 1
    sub = plan.refresh()
    assert sub.status == SubscriptionStatus.ACTIVE
    assert sub.orders.filter(status=OrderStatus.PAID).count() == 2
    assert grants() == 2 and plan.balance() == 200
    assert services.verify_ledger().ok


# --- outbound: prices, subscribing, cancel and resume ------------------------------------------

STRIPE = "user_credits.payments.stripe.StripeProvider"


@pytest.fixture
def stripe_provider(settings, endpoint, stripe_api):
    settings.USER_CREDITS = {"PAYMENT_PROVIDER": STRIPE}
    return stripe_api


@pytest.mark.django_db
def test_sync_prices_is_idempotent_and_follows_the_offer(stripe_provider):
    from user_credits.models import OfferPrice

    api = stripe_provider
    offer = make_offer(price=Decimal("20"), billing=Billing.RECURRING, cycle="trimester")
    OfferPrice.objects.create(offer=offer, currency="kwd", price=Decimal("6.125"))
    make_offer(price=Decimal("5"))  # one-time: not synced
    make_offer(price=Decimal("0"), billing=Billing.RECURRING)  # free: no provider
    assert services.sync_prices() == {offer.pk: "created"}
    offer.refresh_from_db()
    price = api.objects[offer.stripe_price_id]
    assert (price["unit_amount"], price["currency"], price["product"]) == (
        2000,
        "usd",
        f"user_credits_offer_{offer.pk}",
    )
    assert price["recurring"]["interval"] == "month" and price["recurring"]["interval_count"] == 3
    assert price["currency_options"] == {"kwd": {"unit_amount": 6125}}
    posts = len([r for r in api.requests if r[0] == "POST"])
    assert services.sync_prices() == {offer.pk: "unchanged"}
    assert len([r for r in api.requests if r[0] == "POST"]) == posts  # nothing created again
    offer.price = Decimal("25")
    offer.save()
    assert services.sync_prices() == {offer.pk: "updated"}
    old = price["id"]
    offer.refresh_from_db()
    assert (
        offer.stripe_price_id != old and api.objects[offer.stripe_price_id]["unit_amount"] == 2500
    )
    assert api.objects[old]["active"] is False


@pytest.mark.django_db
def test_sync_prices_command_and_system_check(stripe_provider):
    from io import StringIO

    from django.core.management import call_command

    from user_credits.checks import check_recurring_prices

    offer = make_offer(price=Decimal("9"), billing=Billing.RECURRING)
    warnings = check_recurring_prices(databases=["default"])
    assert [w.id for w in warnings] == ["user_credits.W004"] and offer.name in warnings[0].msg
    out = StringIO()
    call_command("user_credits_sync_prices", stdout=out)
    assert f"(#{offer.pk}): created price_" in out.getvalue()
    assert check_recurring_prices(databases=["default"]) == []


@pytest.mark.django_db
@pytest.mark.parametrize("flow", ["checkout", "payment_intent"])
def test_subscribing_through_stripe(stripe_provider, holder, settings, flow):
    settings.USER_CREDITS = {"PAYMENT_PROVIDER": STRIPE, "STRIPE_FLOW": flow}
    api = stripe_provider
    offer = make_offer(price=Decimal("20"), billing=Billing.RECURRING)
    services.sync_prices()
    offer.refresh_from_db()
    sub = services.subscribe(holder, offer, quantity=2)
    assert sub.status == SubscriptionStatus.INCOMPLETE
    if flow == "checkout":
        ((_, _, form),) = [r for r in api.requests if r[:2] == ("POST", "/v1/checkout/sessions")]
        assert form["mode"] == "subscription"
        assert form["line_items"]["0"] == {"price": offer.stripe_price_id, "quantity": "2"}
        assert form["metadata"] == {SUBSCRIPTION_KEY: str(sub.pk)}
        assert form["subscription_data"]["metadata"] == {SUBSCRIPTION_KEY: str(sub.pk)}
        assert sub.payment_start.redirect_url.startswith("https://checkout.stripe.test/")
    else:
        ((_, _, form),) = [r for r in api.requests if r[:2] == ("POST", "/v1/subscriptions")]
        assert form["metadata"] == {SUBSCRIPTION_KEY: str(sub.pk)}
        assert form["payment_behavior"] == "default_incomplete"
        assert sub.payment_start.client_secret.startswith("pi_secret_")
        sub.refresh_from_db()
        assert sub.reference.startswith("sub_")


@pytest.mark.django_db
def test_recurring_offer_without_a_stripe_price_is_refused(stripe_provider, holder):
    from user_credits.exceptions import PaymentProviderError

    offer = make_offer(price=Decimal("20"), billing=Billing.RECURRING)
    with pytest.raises(PaymentProviderError) as caught:
        services.subscribe(holder, offer)
    assert "user_credits_sync_prices" in str(caught.value)


@pytest.mark.django_db
def test_cancel_and_resume_tell_stripe(stripe_provider, deliver, holder):
    plan = Plan(stripe_provider, holder)
    deliver(fake.event("invoice.paid", plan.invoice(0)))
    sub = services.cancel_subscription(plan.refresh())
    assert sub.cancel_at_period_end
    assert plan.api.objects[plan.sub["id"]]["cancel_at_period_end"] is True
    services.resume_subscription(sub)
    assert plan.api.objects[plan.sub["id"]]["cancel_at_period_end"] is False
    sub = services.cancel_subscription(sub, at_period_end=False)
    assert sub.status == SubscriptionStatus.CANCELED
    assert ("DELETE", f"/v1/subscriptions/{plan.sub['id']}") in plan.api.requests


# --- plan changes ----------------------------------------------------------------------------


def _bigger_plan(plan, *, price=5000, tokens=300):
    product = plan.api.put(fake.product(name="Bigger"))
    bigger_price = plan.api.put(
        fake.price(unit_amount=price, currency="usd", product_id=product["id"])
    )
    bigger = make_offer(
        price=Decimal(price) / 100,
        token_count=tokens,
        billing=Billing.RECURRING,
        group=plan.offer.offer_group,
        stripe_price_id=bigger_price["id"],
    )
    return bigger, bigger_price


def _line(amount, price_obj, start, end, sub):
    return {
        "id": fake.new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": "usd",
        "description": "proration",
        "discountable": False,
        "livemode": False,
        "metadata": sub["metadata"],
        "period": {"start": start, "end": end},
        "price": price_obj,
        "proration": True,
        "quantity": 1,
        "subscription": sub["id"],
        "type": "subscription",
    }


@pytest.mark.django_db
def test_upgrade_mid_period_grants_the_extra_tokens_pro_rata(deliver, plan):
    deliver(fake.event("invoice.paid", plan.invoice(0)))
    bigger, bigger_price = _bigger_plan(plan)
    start, end = plan.period(0)
    half = start + (end - start) // 2
    proration = plan.invoice(0, amount=1500, billing_reason="subscription_update")
    proration["lines"]["data"] = [
        _line(-1000, plan.price, half, end, plan.sub),
        _line(2500, bigger_price, half, end, plan.sub),
    ]
    upgraded = {
        **plan.sub,
        "items": {
            **plan.sub["items"],
            "data": [{**plan.sub["items"]["data"][0], "price": bigger_price}],
        },
    }
    # The proration invoice first, then the subscription's update, each replayed.
    for evt in [fake.event("invoice.paid", proration)] * 2 + [
        fake.event("customer.subscription.updated", upgraded)
    ] * 2:
        assert deliver(evt).status_code == 200
    sub = plan.refresh()
    assert sub.offer_id == bigger.pk
    order = sub.orders.get(payment_reference=proration["id"])
    assert (order.status, order.total, order.token_count) == (OrderStatus.PAID, Decimal("15"), 100)
    assert plan.balance() == 100 + 100  # (300 − 100) × half the period
    # The next period is the bigger plan's, at its price.
    deliver(fake.event("invoice.paid", plan.invoice(1, amount=5000)))
    assert plan.balance() == 100 + 100 + 300


@pytest.mark.django_db
def test_downgrade_takes_effect_at_the_next_period(deliver, plan):
    bigger, bigger_price = _bigger_plan(plan)
    services.change_offer(plan.subscription, bigger)
    deliver(fake.event("invoice.paid", plan.invoice(0, amount=5000)))
    assert plan.balance() == 300
    downgraded = {
        **plan.sub,
        "items": {
            **plan.sub["items"],
            "data": [{**plan.sub["items"]["data"][0], "price": plan.price}],
        },
    }
    deliver(fake.event("customer.subscription.updated", downgraded))
    sub = plan.refresh()
    assert sub.offer_id == plan.offer.pk and plan.balance() == 300  # nothing taken back now
    deliver(fake.event("invoice.paid", plan.invoice(1)))
    assert sub.orders.filter(status=OrderStatus.PAID).count() == 2
    assert plan.balance() == 300 + 100


# --- an invoice's refund seen before the invoice was paid ------------------------------------


def _invoice_charge(invoice, *, refunded):
    return {
        **fake.charge(
            amount=invoice["amount_paid"],
            currency="usd",
            metadata={},
            amount_refunded=refunded,
        ),
        "invoice": invoice["id"],
    }


def revokes():
    return [e.amount for e in LedgerEntry.objects.filter(kind=EntryKind.REVOKE)]


@pytest.mark.django_db
def test_refund_of_an_invoice_arriving_before_its_invoice_paid(deliver, plan, stripe_api):
    deliver(fake.event("invoice.paid", plan.invoice(0)))
    renewal = stripe_api.put(plan.invoice(1))  # Stripe knows the invoice; we have not heard
    assert (
        deliver(fake.event("charge.refunded", _invoice_charge(renewal, refunded=2000))).status_code
        == 200
    )
    assert any(r[0] == "GET" and renewal["id"] in r[1] for r in stripe_api.requests)
    order = Order.objects.get(payment_reference=renewal["id"])
    assert order.status == OrderStatus.REFUNDED
    assert order.events.filter(payload__seen_on_refund__startswith="ch_").exists()
    assert plan.balance() == 100 and revokes() == [-100]
    # The late invoice.paid (and its twin) is a replay of the invoice: nothing more.
    before = table_snapshot()
    assert deliver(fake.event("invoice.paid", renewal)).status_code == 200
    assert deliver(fake.event("invoice.payment_succeeded", renewal)).status_code == 200
    assert table_snapshot() == before
    assert grants() == 2 and plan.balance() == 100
    assert plan.refresh().orders.count() == 2
    assert services.verify_ledger().ok


@pytest.mark.django_db
def test_partial_refund_of_a_first_invoice_before_its_invoice_paid(deliver, plan, stripe_api):
    first = stripe_api.put(plan.invoice(0))
    deliver(fake.event("charge.refunded", _invoice_charge(first, refunded=500)))
    deliver(fake.event("invoice.paid", first))
    sub = plan.refresh()
    assert sub.status == SubscriptionStatus.ACTIVE and sub.reference == plan.sub["id"]
    (order,) = sub.orders.all()
    assert order.status == OrderStatus.PARTIAL
    assert plan.balance() == 75 and revokes() == [-25] and grants() == 1


@pytest.mark.django_db
def test_refund_of_an_unknown_or_one_off_invoice_changes_nothing(deliver, plan, stripe_api):
    one_off = plan.invoice(0)
    one_off = stripe_api.put(
        {**one_off, "subscription": None, "lines": {**one_off["lines"], "data": []}}
    )
    missing = plan.invoice(1)  # never put: Stripe answers 404
    before = table_snapshot()
    for invoice in (one_off, missing):
        evt = fake.event("charge.refunded", _invoice_charge(invoice, refunded=2000))
        assert deliver(evt).status_code == 200
    assert table_snapshot() == before


@pytest.mark.postgres
def test_refund_and_invoice_paid_at_once_grant_once_and_revoke_once(
    deliver, stripe_api, endpoint, holder
):
    from .test_concurrency import in_threads

    plan = Plan(stripe_api, holder)
    invoice = stripe_api.put(plan.invoice(0))
    events = [
        fake.event("charge.refunded", _invoice_charge(invoice, refunded=2000)),
        fake.event("invoice.paid", invoice),
        fake.event("invoice.payment_succeeded", invoice),
    ]
    for evt in events:
        stripe_api.put(evt["data"]["object"])
    in_threads(3, lambda i: deliver(events[i]).status_code)
    for evt in events:  # a 500 of dj-stripe's own copy is retried by Stripe
        assert deliver(evt).status_code == 200
    (order,) = plan.refresh().orders.all()
    assert order.status == OrderStatus.REFUNDED
    assert grants() == 1 and revokes() == [-100] and plan.balance() == 0
    assert services.verify_ledger().ok
