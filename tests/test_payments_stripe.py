"""Stripe through dj-stripe: signed webhooks posted to dj-stripe's real endpoint, with dj-stripe
re-reading each event's object from a loopback fake Stripe API."""

import time
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings

from user_credits import services
from user_credits.exceptions import InvalidArgument
from user_credits.models import CreditLot, EntryKind, LedgerEntry, OfferPrice, OrderStatus
from user_credits.payments.stripe import ORDER_KEY, StripeProvider, from_minor, to_minor

from . import stripe_fake as fake
from .factories import make_offer, person, table_snapshot


@pytest.fixture
def order(db, holder):
    return services.create_order(
        holder, make_offer(price=Decimal("12.50"), token_count=40), quantity=2
    )


def succeeded(order, **overrides):
    values = {
        "amount": to_minor(order.total, order.currency),
        "currency": order.currency,
        "metadata": {ORDER_KEY: str(order.pk)},
        **overrides,
    }
    return fake.event("payment_intent.succeeded", fake.payment_intent(**values))


def balance(order):
    return services.get_balance(order.holder, order.offer_group)


# --- amounts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount, currency, minor",
    [
        ("12.34", "usd", 1234),
        ("500", "jpy", 500),
        ("1.234", "kwd", 1234),
        ("3.375", "kwd", 3375),
        ("0", "eur", 0),
        # Stripe's special cases: whole units, sent with two decimals.
        ("5", "isk", 500),
        ("5", "ugx", 500),
        ("1500", "huf", 150000),
        ("12.30", "twd", 1230),
    ],
)
def test_minor_units(amount, currency, minor):
    assert to_minor(Decimal(amount), currency) == minor
    assert from_minor(minor, currency) == Decimal(amount)


def test_amount_finer_than_the_currency_is_refused():
    with pytest.raises(InvalidArgument) as caught:
        to_minor(Decimal("10.5"), "jpy")
    assert caught.value.field == "amount"


# --- webhooks ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_payment_intent_succeeded_pays_and_grants(deliver, order, stripe_api):
    evt = succeeded(order)
    response = deliver(evt)
    assert response.status_code == 200
    intent_id = evt["data"]["object"]["id"]
    assert any(
        r[0] == "GET" and intent_id in r[1] for r in stripe_api.requests
    )  # dj-stripe re-read it
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert order.payment_reference == evt["data"]["object"]["id"]
    paid = order.events.get(status=OrderStatus.PAID)
    assert paid.payload["stripe_event"] == evt["id"] and paid.payload["amount"] == "25.00"
    assert balance(order) == 80
    assert LedgerEntry.objects.filter(kind=EntryKind.GRANT).count() == 1


@pytest.mark.django_db
def test_replayed_event_grants_once(deliver, order):
    evt = succeeded(order)
    assert [deliver(evt).status_code for _ in range(3)] == [200, 200, 200]
    # Stripe may also send another event for the same payment.
    deliver(succeeded(order))
    assert CreditLot.objects.filter(order=order).count() == 1
    assert balance(order) == 80


@pytest.mark.django_db
@pytest.mark.parametrize("overrides", [{"amount": 2499}, {"currency": "eur"}, {"amount": 250000}])
def test_amount_or_currency_mismatch_grants_nothing(deliver, order, overrides):
    assert deliver(succeeded(order, **overrides)).status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.INCONSISTENT
    assert "does not match" in order.events.get(status=OrderStatus.INCONSISTENT).message
    assert not CreditLot.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("event_type", ["payment_intent.payment_failed", "payment_intent.canceled"])
def test_failed_and_canceled(deliver, order, event_type):
    pi = fake.payment_intent(
        amount=2500,
        currency="usd",
        metadata={ORDER_KEY: str(order.pk)},
        status="requires_payment_method" if "failed" in event_type else "canceled",
        last_payment_error={"message": "Your card was declined."}
        if "failed" in event_type
        else None,
    )
    assert deliver(fake.event(event_type, pi)).status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUSED
    message = order.events.get(status=OrderStatus.REFUSED).message
    assert ("declined" in message) if "failed" in event_type else ("canceled" in message)


@pytest.mark.django_db
def test_failure_arriving_after_success_does_not_unpay(deliver, order):
    deliver(succeeded(order))
    late = fake.payment_intent(
        amount=2500,
        currency="usd",
        metadata={ORDER_KEY: str(order.pk)},
        status="requires_payment_method",
    )
    deliver(fake.event("payment_intent.payment_failed", late))
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID and balance(order) == 80


@pytest.mark.django_db
def test_checkout_completed_paid(deliver, order):
    session = fake.checkout_session(
        amount_total=2500,
        currency="usd",
        metadata={ORDER_KEY: str(order.pk)},
        payment_intent="pi_from_checkout",
    )
    deliver(fake.event("checkout.session.completed", session))
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID and order.payment_reference == "pi_from_checkout"
    assert balance(order) == 80


@pytest.mark.django_db
def test_checkout_unpaid_then_async_success(deliver, order):
    session = fake.checkout_session(
        amount_total=2500,
        currency="usd",
        metadata={},
        client_reference_id=str(order.pk),
        payment_status="unpaid",
    )
    deliver(fake.event("checkout.session.completed", session))
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    assert "not settled" in order.events.last().message
    assert balance(order) == 0
    deliver(
        fake.event(
            "checkout.session.async_payment_succeeded", {**session, "payment_status": "paid"}
        )
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID and balance(order) == 80


@pytest.mark.django_db
def test_checkout_async_failure(deliver, order):
    session = fake.checkout_session(
        amount_total=2500,
        currency="usd",
        metadata={ORDER_KEY: str(order.pk)},
        payment_status="unpaid",
    )
    deliver(fake.event("checkout.session.async_payment_failed", session))
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUSED


@pytest.mark.django_db
def test_partial_then_full_refund_replayed_and_reordered(deliver, order):
    evt = succeeded(order)
    deliver(evt)
    intent = evt["data"]["object"]["id"]
    services.consume(order.holder, order.offer_group, 10)
    base = fake.charge(amount=2500, currency="usd", metadata={}, payment_intent=intent)
    partial = fake.event("charge.refunded", {**base, "amount_refunded": 1250})
    full = fake.event("charge.refunded", {**base, "amount_refunded": 2500, "refunded": True})
    deliver(partial)
    order.refresh_from_db()
    assert order.status == OrderStatus.PARTIAL and order.amount_refunded == Decimal("12.50")
    assert balance(order) == 30  # 80 - 10 consumed - 40 (half of 80 granted)
    deliver(full)
    deliver(partial)  # late and replayed: changes nothing
    deliver(full)
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED and balance(order) == 0
    revoked = [e.amount for e in LedgerEntry.objects.filter(kind=EntryKind.REVOKE).order_by("id")]
    assert revoked == [-40, -30]


@pytest.mark.django_db
def test_refund_larger_than_paid_is_recorded_not_applied(deliver, order):
    deliver(succeeded(order))
    evt = fake.event(
        "charge.refunded",
        fake.charge(
            amount=2500, currency="usd", metadata={ORDER_KEY: str(order.pk)}, amount_refunded=9999
        ),
    )
    assert deliver(evt).status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID and balance(order) == 80
    assert "Ignored charge.refunded" in order.events.last().message


@pytest.mark.django_db
def test_refund_arriving_before_the_payment_event(deliver, order):
    charge = fake.charge(
        amount=2500,
        currency="usd",
        metadata={ORDER_KEY: str(order.pk)},
        amount_refunded=2500,
        payment_intent="pi_early",
    )
    deliver(fake.event("charge.refunded", charge))
    deliver(succeeded(order))  # the payment's own event, late: changes nothing
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED and balance(order) == 0
    assert CreditLot.objects.filter(order=order).count() == 1
    assert [e.amount for e in LedgerEntry.objects.filter(kind=EntryKind.REVOKE)] == [-80]


@pytest.mark.django_db
def test_unknown_or_foreign_order_is_answered_200(deliver, order):
    before = table_snapshot()
    for metadata in ({ORDER_KEY: "999999"}, {ORDER_KEY: "not-a-number"}, {}):
        evt = fake.event(
            "payment_intent.succeeded",
            fake.payment_intent(amount=2500, currency="usd", metadata=metadata),
        )
        assert deliver(evt).status_code == 200
    assert table_snapshot() == before


@pytest.mark.django_db
def test_bad_signature_and_stale_timestamp_are_refused(deliver, order):
    before = table_snapshot()
    assert deliver(succeeded(order), secret="whsec_wrong").status_code == 400
    stale = int(time.time()) - 3600
    assert deliver(succeeded(order), timestamp=stale).status_code == 400
    assert table_snapshot() == before


@pytest.mark.postgres
def test_concurrent_duplicate_deliveries_grant_once(deliver, holder):
    from .test_concurrency import in_threads

    order = services.create_order(holder, make_offer(price=Decimal("5"), token_count=3))
    evt = succeeded(order)
    results = in_threads(3, lambda i: deliver(evt).status_code)
    assert results == [200, 200, 200]
    assert CreditLot.objects.filter(order=order).count() == 1
    assert balance(order) == 3


# --- three-decimal money, exact on every database ---------------------------------------------


def stored_text(order, column):
    """The column as the database itself holds it, cast to text by the database."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT CAST({column} AS TEXT) FROM user_credits_order WHERE id = %s", [order.pk]
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_kwd_order_pays_and_refunds_to_the_fils(deliver, holder):
    """1.125 KWD × 3 pays 3.375 through signed events; a refund of 2,125 fils is 2.125 KWD
    exactly (at two decimals SQLite stored 2.12 and PostgreSQL 2.13)."""
    offer = make_offer(price=Decimal("1.125"), currency="kwd", token_count=100)
    order = services.create_order(holder, offer, quantity=3)
    assert (order.unit_price, order.total) == (Decimal("1.125"), Decimal("3.375"))
    evt = succeeded(order)
    assert evt["data"]["object"]["amount"] == 3375
    assert deliver(evt).status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID and order.total == Decimal("3.375")
    assert order.events.get(status=OrderStatus.PAID).payload["amount"] == "3.375"
    assert balance(order) == 300

    intent = evt["data"]["object"]["id"]
    base = fake.charge(amount=3375, currency="kwd", metadata={}, payment_intent=intent)
    deliver(fake.event("charge.refunded", {**base, "amount_refunded": 2125}))
    order.refresh_from_db()
    assert order.status == OrderStatus.PARTIAL
    assert order.amount_refunded == Decimal("2.125")
    assert Decimal(stored_text(order, "amount_refunded")) == Decimal("2.125")
    assert Decimal(stored_text(order, "total")) == Decimal("3.375")
    refund = order.events.get(status=OrderStatus.PARTIAL)
    assert refund.payload["amount"] == "2.125" and "Refunded 2.125 KWD" in refund.message
    assert balance(order) == 300 - 188  # 300 × 2.125 / 3.375 = 188.9, rounded down

    deliver(fake.event("charge.refunded", {**base, "amount_refunded": 3375, "refunded": True}))
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED and order.amount_refunded == Decimal("3.375")
    assert balance(order) == 0


@pytest.mark.django_db
def test_payment_finer_than_the_currency_is_refused_not_rounded(deliver, holder):
    """ISK has no decimals but Stripe counts it in hundredths (5 ISK is 500): a payment of
    50050 (500.50 ISK) is recorded as ignored, never rounded; 50000 pays the 500 ISK order."""
    order = services.create_order(holder, make_offer(price=Decimal("500"), currency="isk"))
    evt = succeeded(order, amount=50050)
    assert deliver(evt).status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    assert "more decimals than ISK allows" in order.events.last().message
    deliver(succeeded(order))
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert order.events.get(status=OrderStatus.PAID).payload["amount"] == "500"


# --- starting payments -----------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(USER_CREDITS={"STRIPE_FLOW": "payment_intent"})
def test_payment_intent_flow(stripe_api, endpoint, order):
    start = StripeProvider().start_payment(order)
    created = [r for r in stripe_api.requests if r[:2] == ("POST", "/v1/payment_intents")]
    ((_, _, form),) = created
    assert (form["amount"], form["currency"], form["metadata"]) == (
        "2500",
        "usd",
        {ORDER_KEY: str(order.pk)},
    )
    assert form["customer"].startswith("cus_")
    assert start.client_secret.startswith("pi_secret_") and start.redirect_url == ""
    order.refresh_from_db()
    assert order.payment_reference == start.reference
    assert "Stripe payment started" in order.events.last().message
    # A new attempt makes a new intent; the order keeps the latest.
    again = StripeProvider().start_payment(order)
    order.refresh_from_db()
    assert order.payment_reference == again.reference != start.reference


@pytest.mark.django_db
@pytest.mark.parametrize("flow", ["payment_intent", "checkout"])
def test_stripe_is_charged_in_the_order_currency(stripe_api, endpoint, holder, flow, settings):
    """An order in the offer's second currency is charged in that currency, at that price."""
    settings.USER_CREDITS = {"STRIPE_FLOW": flow}
    offer = make_offer(price=Decimal("20"), currency="usd")
    OfferPrice.objects.create(offer=offer, currency="kwd", price=Decimal("6.125"))
    order = services.create_order(holder, offer, quantity=2, currency="kwd")
    StripeProvider().start_payment(order)
    path = "/v1/payment_intents" if flow == "payment_intent" else "/v1/checkout/sessions"
    ((_, _, form),) = [r for r in stripe_api.requests if r[:2] == ("POST", path)]
    if flow == "payment_intent":
        assert (form["amount"], form["currency"]) == ("12250", "kwd")
    else:
        item = form["line_items"]["0"]
        assert (item["price_data"]["unit_amount"], item["price_data"]["currency"]) == (
            "6125",
            "kwd",
        )
        assert item["quantity"] == "2"


@pytest.mark.django_db
def test_checkout_flow_in_a_zero_decimal_currency(stripe_api, endpoint, holder):
    order = services.create_order(
        holder, make_offer(price=Decimal("700"), currency="jpy"), quantity=3
    )
    start = StripeProvider().start_payment(order)
    ((_, _, form),) = [r for r in stripe_api.requests if r[:2] == ("POST", "/v1/checkout/sessions")]
    item = form["line_items"]["0"]
    assert (
        item["price_data"]["unit_amount"],
        item["quantity"],
        item["price_data"]["currency"],
    ) == ("700", "3", "jpy")
    assert form["metadata"] == {ORDER_KEY: str(order.pk)}
    assert form["payment_intent_data"]["metadata"] == {ORDER_KEY: str(order.pk)}
    assert form["client_reference_id"] == str(order.pk)
    assert start.redirect_url.startswith("https://checkout.stripe.test/")


@pytest.mark.django_db
@override_settings(
    USER_CREDITS={
        "PAYMENT_PROVIDER": "user_credits.payments.stripe.StripeProvider",
        "STRIPE_FLOW": "payment_intent",
    }
)
def test_pay_endpoint_returns_the_client_secret(stripe_api, endpoint, order):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(person(order.holder))
    body = client.post(f"/api/credits/orders/{order.pk}/pay/").json()
    assert body["provider"] == "stripe" and body["client_secret"].startswith("pi_secret_")


@pytest.mark.django_db
@override_settings(USER_CREDITS={"PAYMENT_PROVIDER": "user_credits.payments.stripe.StripeProvider"})
def test_stripe_refusal_is_a_502_and_changes_nothing(endpoint, order):
    from rest_framework.test import APIClient

    with fake.FakeStripe() as api:
        api.make_checkout_session = lambda form: (_ for _ in ()).throw(RuntimeError("down"))
        client = APIClient()
        client.force_authenticate(person(order.holder))
        before = table_snapshot()
        response = client.post(f"/api/credits/orders/{order.pk}/pay/")
    assert response.status_code == 502 and response.json()["code"] == "payment_provider_error"
    assert table_snapshot() == before
