"""End to end: our Stripe provider against localstripe (a fake Stripe server) on loopback,
whose signed webhooks reach the live test server's dj-stripe endpoint."""

import threading
from decimal import Decimal

import pytest
import requests
import stripe
from django.test import override_settings

from user_credits import services, signals
from user_credits.models import OrderStatus
from user_credits.payments.stripe import StripeProvider

from .factories import make_offer
from .stripe_fake import SECRET


@pytest.fixture
def paid():
    """An event set when ``order_paid`` is sent (from any thread); ``.orders`` has their ids."""
    event = threading.Event()
    event.orders = []

    def receiver(order, **kwargs):
        event.orders.append(order.pk)
        event.set()

    uid = "tests.test_payments_e2e.paid"
    signals.order_paid.connect(receiver, weak=False, dispatch_uid=uid)
    yield event
    assert signals.order_paid.disconnect(dispatch_uid=uid)


@pytest.mark.django_db(transaction=True)
@override_settings(USER_CREDITS={"STRIPE_FLOW": "payment_intent"})
def test_pay_with_localstripe_until_the_signed_webhook_grants(
    live_server,
    localstripe,
    endpoint,
    holder,
    settings,
    paid,
):
    webhook_url = f"{live_server.url}/stripe/webhook/{endpoint.djstripe_uuid}/"
    registered = requests.post(
        f"{localstripe}/_config/webhooks/user_credits",
        data={"url": webhook_url, "secret": SECRET, "events[]": ["payment_intent.succeeded"]},
        timeout=5,
    )
    assert registered.status_code == 200
    order = services.create_order(holder, make_offer(price=Decimal("19.99"), token_count=250))

    start = StripeProvider().start_payment(order)
    assert start.client_secret
    # What the buyer's browser does with the client secret and a test card.
    key = settings.STRIPE_TEST_SECRET_KEY
    stripe.PaymentIntent.modify(start.reference, api_key=key, payment_method="pm_card_visa")
    confirmed = stripe.PaymentIntent.confirm(start.reference, api_key=key)
    assert confirmed["status"] == "succeeded"

    # The webhook arrives on the live server's thread; its commit sends order_paid.
    assert paid.wait(20), "no order_paid within 20 s of the payment's confirmation"
    assert paid.orders == [order.pk]
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert order.payment_reference == start.reference
    assert services.get_balance(holder, order.offer_group) == 250
    assert order.events.filter(
        status=OrderStatus.PAID, payload__stripe_object=start.reference
    ).exists()


# --- recurring plans ---------------------------------------------------------------------------
#
# No end-to-end run of a subscription against localstripe 1.15 is possible; this test pins down
# why, call by call, so that an upgrade that lifts it shows. localstripe has no Prices API and
# no Checkout Sessions, refuses subscription items given as ``price`` and
# ``payment_behavior=default_incomplete`` (what our provider sends). It has Plans, and a
# subscription to a Plan pays its first invoice with a test card; but dj-stripe 2.11 re-reads
# each invoice with ``expand[]=discounts``, which localstripe refuses (so the webhook fails
# before our receiver), and localstripe's subscription items lack ``subscription`` (dj-stripe's
# copy of ``customer.subscription.created`` fails on its NOT NULL column).


@pytest.mark.django_db
@override_settings(USER_CREDITS={"STRIPE_FLOW": "payment_intent"})
def test_what_localstripe_refuses_of_a_subscription(localstripe, endpoint, holder, settings):
    from djstripe.models import Customer

    from user_credits.exceptions import PaymentProviderError
    from user_credits.models import Billing

    key = settings.STRIPE_TEST_SECRET_KEY

    def post(path, data):
        return requests.post(f"{localstripe}{path}", auth=(key, ""), data=data, timeout=5)

    product = stripe.Product.create(api_key=key, name="Pro Monthly")
    price = {"product": product["id"], "unit_amount": 1500, "currency": "usd"}
    assert post("/v1/prices", {**price, "recurring[interval]": "month"}).status_code == 404
    checkout = {"mode": "subscription", "success_url": "https://shop.test/ok"}
    assert post("/v1/checkout/sessions", checkout).status_code == 404
    plan = stripe.Plan.create(
        api_key=key, product=product["id"], amount=1500, currency="usd", interval="month"
    )
    offer = make_offer(price=Decimal("15"), token_count=300, billing=Billing.RECURRING)
    offer.stripe_price_id = plan["id"]  # Stripe takes a Plan's id where it takes a Price's
    offer.save(update_fields=["stripe_price_id"])
    subscription = services.subscribe(holder, offer)  # manual provider: nothing started yet
    with pytest.raises(PaymentProviderError, match="Bad request"):  # items[0][price]=plan_…
        StripeProvider().start_subscription(subscription)

    customer, _ = Customer.get_or_create(subscriber=holder, livemode=False)
    stripe.PaymentMethod.attach("pm_card_visa", api_key=key, customer=customer.id)
    stripe.Customer.modify(
        customer.id, api_key=key, invoice_settings={"default_payment_method": "pm_card_visa"}
    )
    item = {"customer": customer.id, "items[0][plan]": plan["id"]}
    behaviour = post("/v1/subscriptions", {**item, "payment_behavior": "default_incomplete"})
    assert behaviour.status_code == 400 and behaviour.json()["error"]["message"] == "Bad request"
    created = post("/v1/subscriptions", item).json()
    assert created["status"] == "active"
    assert "subscription" not in created["items"]["data"][0]
    invoice = stripe.Invoice.retrieve(created["latest_invoice"], api_key=key)
    assert invoice["status"] == "paid" and invoice["amount_paid"] == 1500
    with pytest.raises(stripe.InvalidRequestError, match="Bad expand 'discounts'"):
        stripe.Invoice.retrieve(invoice["id"], api_key=key, expand=["discounts"])
