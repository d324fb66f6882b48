"""Auto-recharge through Stripe: an off-session PaymentIntent confirmed with the customer's
saved card, against localstripe on loopback (its signed webhook reaching dj-stripe's endpoint
on the live server); a card saved by a SetupIntent; declines and authentication.

localstripe gaps, worked around here and named where they are: a confirmed SetupIntent does
not attach its payment method to the customer (Stripe does: the test attaches it); a SetupIntent
that asks for 3-D Secure cannot be authenticated (no ``_authenticate`` route for SetupIntents);
an off-session PaymentIntent that needs authentication answers ``requires_action`` where Stripe
answers a 402 ``authentication_required`` (the provider handles both); and PaymentIntents
refuse ``setup_future_usage`` (that option is tested against ``stripe_fake`` instead).
"""

import time
from decimal import Decimal

import pytest
import requests
import stripe
from django.test import override_settings
from djstripe.models import Customer, WebhookEventTrigger

from user_credits import services, signals
from user_credits.models import AutoRecharge, Order, OrderStatus
from user_credits.payments.stripe import StripeProvider

from .factories import make_group, make_offer, person
from .stripe_fake import SECRET

STRIPE = {"PAYMENT_PROVIDER": "user_credits.payments.stripe.StripeProvider"}


def save_card(holder, number, settings):
    """What a front end does with ``start_setup``'s client secret and a test card."""
    key = settings.STRIPE_TEST_SECRET_KEY
    setup = StripeProvider().start_setup(holder)
    assert setup.reference.startswith("seti_") and setup.client_secret
    card = stripe.PaymentMethod.create(
        api_key=key,
        type="card",
        card={"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
    )
    confirmed = stripe.SetupIntent.confirm(setup.reference, api_key=key, payment_method=card.id)
    # A 3-D Secure card asks the buyer to authenticate its setup (localstripe cannot complete
    # that step; the card is attached below as the authenticated setup would leave it).
    assert confirmed["status"] in ("succeeded", "requires_action")
    customer = Customer.objects.get(subscriber=holder)
    # localstripe does not attach a SetupIntent's payment method to its customer; Stripe does.
    stripe.PaymentMethod.attach(card.id, customer=customer.id, api_key=key)
    return card.id


@pytest.fixture
def failures():
    sent = []

    def failed(auto_recharge, order, reason, failures, **kwargs):
        sent.append((order.pk if order else None, reason))

    signals.auto_recharge_failed.connect(failed, weak=False, dispatch_uid="t-stripe-failed")
    yield sent
    signals.auto_recharge_failed.disconnect(dispatch_uid="t-stripe-failed")


def low_account(holder):
    group = make_group("api-calls")
    pack = make_offer("Pack 100", group=group, price=Decimal("5"), token_count=100)
    services.grant(holder, group, 100)
    services.enable_auto_recharge(holder, group, pack, threshold=50)
    return group


@pytest.mark.django_db(transaction=True)
@override_settings(USER_CREDITS=STRIPE)
def test_a_saved_card_is_charged_off_session_and_the_webhook_grants_nothing_more(
    live_server, localstripe, endpoint, holder, settings
):
    webhook_url = f"{live_server.url}/stripe/webhook/{endpoint.djstripe_uuid}/"
    registered = requests.post(
        f"{localstripe}/_config/webhooks/user_credits",
        data={"url": webhook_url, "secret": SECRET, "events[]": ["payment_intent.succeeded"]},
        timeout=5,
    )
    assert registered.status_code == 200
    card = save_card(holder, "4242424242424242", settings)
    group = low_account(holder)

    services.consume(holder, group, 60)  # autocommit: the recharge starts right after

    [order] = Order.objects.filter(holder=holder)
    assert order.status == OrderStatus.PAID, list(order.events.values_list("message", flat=True))
    assert services.get_balance(holder, group) == 140
    intent = stripe.PaymentIntent.retrieve(
        order.payment_reference, api_key=settings.STRIPE_TEST_SECRET_KEY
    )
    assert (intent["status"], intent["payment_method"], intent["amount"]) == (
        "succeeded",
        card,
        500,
    )
    assert AutoRecharge.objects.get().pending_order is None
    # Stripe's own event for the payment arrives too (a replay, in effect): nothing more.
    for _ in range(200):
        if WebhookEventTrigger.objects.filter(processed=True).exists():
            break
        time.sleep(0.1)
    assert WebhookEventTrigger.objects.filter(processed=True, valid=True).exists()
    assert services.get_balance(holder, group) == 140
    assert Order.objects.get(pk=order.pk).lots.count() == 1


@pytest.mark.django_db(transaction=True)
@override_settings(USER_CREDITS=STRIPE)
@pytest.mark.parametrize(
    "number, reason",
    [
        ("4000000000000341", "card_declined"),  # attaches, then every charge is declined
        ("4000002760003184", "authentication_required"),  # the bank wants the buyer
        (None, "no_payment_method"),
    ],
)
def test_a_refused_recharge_fails_its_order_and_signals(
    localstripe, endpoint, holder, settings, failures, number, reason
):
    if number:
        save_card(holder, number, settings)
    group = low_account(holder)

    services.consume(holder, group, 60)

    [order] = Order.objects.filter(holder=holder)
    assert order.status == OrderStatus.REFUSED
    assert services.get_balance(holder, group) == 40
    recharge = AutoRecharge.objects.get()
    assert recharge.failures == 1 and recharge.pending_order is None and recharge.enabled
    assert len(failures) == 1 and failures[0][0] == order.pk
    assert order.events.filter(payload__reason=reason).exists()


def test_setup_future_usage_is_asked_when_the_payment_method_is_saved(
    stripe_api, endpoint, holder, settings
):
    offer = make_offer(price=Decimal("5"), token_count=100)
    for flow in ("payment_intent", "checkout"):
        settings.USER_CREDITS = {**STRIPE, "STRIPE_FLOW": flow}
        services.start_payment(services.create_order(holder, offer), save_payment_method=True)
        services.start_payment(services.create_order(holder, offer))
    posts = [form for method, path, *form in stripe_api.requests if method == "POST" and form]
    intents = [f[0] for f in posts if "amount" in f[0]]
    sessions = [f[0] for f in posts if "line_items" in f[0]]
    assert [i.get("setup_future_usage") for i in intents] == ["off_session", None]
    assert [s["payment_intent_data"].get("setup_future_usage") for s in sessions] == [
        "off_session",
        None,
    ]


@pytest.mark.django_db(transaction=True)
@override_settings(USER_CREDITS=STRIPE)
def test_the_api_starts_a_setup_intent_for_a_holder_with_no_purchase(localstripe, endpoint, holder):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(person(holder))
    answer = client.post("/api/credits/auto-recharge/setup/")
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert body["provider"] == "stripe" and body["reference"].startswith("seti_")
    assert body["client_secret"].startswith(body["reference"] + "_secret_")
    customer = Customer.objects.get(subscriber=holder)
    intent = stripe.SetupIntent.retrieve(body["reference"], api_key=stripe.api_key or "sk_test")
    assert intent["customer"] == customer.id and intent["usage"] == "off_session"
