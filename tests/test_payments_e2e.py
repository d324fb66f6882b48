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
    user,
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
    order = services.create_order(user, make_offer(price=Decimal("19.99"), token_count=250))

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
    assert services.get_balance(user, order.offer_group) == 250
    assert order.events.filter(
        status=OrderStatus.PAID, payload__stripe_object=start.reference
    ).exists()
