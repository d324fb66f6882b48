"""Stripe through dj-stripe: the only module that imports ``djstripe`` or ``stripe``.

Starting a payment creates a PaymentIntent (its client secret is returned) or a Checkout
Session (its URL), with the order id in ``metadata``. Webhook events reach the receivers at the
bottom through dj-stripe; each translates one event into one service call and is idempotent,
since Stripe redelivers and reorders events.
"""

import logging
from decimal import Decimal

import stripe
from djstripe.event_handlers import djstripe_receiver
from djstripe.models import Customer
from djstripe.settings import djstripe_settings

from .. import services
from ..conf import app_settings
from ..exceptions import PaymentProviderError, UserCreditsError
from ..models import Order, OrderStatus
from .base import PaymentProvider, PaymentStart

logger = logging.getLogger("user_credits.payments")

#: The metadata key carrying our order id on PaymentIntents and Checkout Sessions.
ORDER_KEY = "user_credits_order"

# Stripe's currencies whose amounts have no minor unit, and those with three decimals.
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())


def minor_units(currency: str) -> int:
    currency = currency.lower()
    return 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2


def to_minor(amount: Decimal, currency: str) -> int:
    """``Decimal("12.34")`` usd → ``1234``; jpy is not multiplied, kwd by 1000."""
    scaled = Decimal(amount).scaleb(minor_units(currency))
    if scaled != scaled.to_integral_value():
        raise PaymentProviderError(f"{amount} {currency.upper()} has more decimals than allowed.")
    return int(scaled)


def from_minor(amount: int, currency: str) -> Decimal:
    return Decimal(int(amount)).scaleb(-minor_units(currency))


class StripeProvider(PaymentProvider):
    name = "stripe"
    requires_djstripe = True

    def start_payment(self, order, *, request=None) -> PaymentStart:
        livemode = djstripe_settings.STRIPE_LIVE_MODE
        api_key = djstripe_settings.get_default_api_key(livemode=livemode)
        metadata = {ORDER_KEY: str(order.pk)}
        try:
            customer, _ = Customer.get_or_create(subscriber=order.user, livemode=livemode)
            if app_settings.STRIPE_FLOW == "payment_intent":
                intent = stripe.PaymentIntent.create(
                    api_key=api_key,
                    amount=to_minor(order.total, order.currency),
                    currency=order.currency,
                    customer=customer.id,
                    metadata=metadata,
                )
                start = PaymentStart(
                    provider=self.name,
                    reference=intent["id"],
                    client_secret=intent["client_secret"],
                )
            else:
                urls = {"order_id": order.pk}
                session = stripe.checkout.Session.create(
                    api_key=api_key,
                    mode="payment",
                    customer=customer.id,
                    client_reference_id=str(order.pk),
                    metadata=metadata,
                    payment_intent_data={"metadata": metadata},
                    line_items=[
                        {
                            "quantity": order.quantity,
                            "price_data": {
                                "currency": order.currency,
                                "unit_amount": to_minor(order.unit_price, order.currency),
                                "product_data": {"name": order.name},
                            },
                        }
                    ],
                    success_url=app_settings.CHECKOUT_SUCCESS_URL.format(**urls),
                    cancel_url=app_settings.CHECKOUT_CANCEL_URL.format(**urls),
                )
                start = PaymentStart(
                    provider=self.name, reference=session["id"], redirect_url=session["url"]
                )
        except stripe.StripeError as exc:
            logger.warning("Stripe refused to start a payment for order %s: %s", order.pk, exc)
            raise PaymentProviderError(
                f"Stripe refused the payment: {exc.user_message or exc}"
            ) from exc
        services.record_payment_event(
            order,
            message=f"Stripe payment started ({start.reference}).",
            payload={"provider": self.name, "stripe_object": start.reference},
            reference=start.reference,
        )
        return start


# --- webhook receivers -------------------------------------------------------------------


def _order_of(obj) -> Order | None:
    """The order named in an object's metadata, else the one paid by this PaymentIntent."""
    order_id = (obj.get("metadata") or {}).get(ORDER_KEY) or (
        obj.get("client_reference_id") if obj.get("object") == "checkout.session" else None
    )
    if order_id is not None:
        try:
            return Order.objects.get(pk=int(order_id))
        except (Order.DoesNotExist, ValueError, TypeError):
            logger.warning(
                "Stripe %s %s names an unknown order %r", obj.get("object"), obj.get("id"), order_id
            )
            return None
    intent = obj.get("payment_intent")
    intent = intent.get("id") if isinstance(intent, dict) else intent
    if intent:
        return Order.objects.filter(payment_reference=intent).first()
    return None


def _payload(event, obj, **extra):
    return {
        "stripe_event": event.id,
        "stripe_object": obj.get("id"),
        "event_type": event.type,
        **extra,
    }


def _translate(event, call):
    """Run one service call for the event's order; ours or not, the webhook answers 200."""
    obj = event.data.get("object", {})
    order = _order_of(obj)
    if order is None:
        return
    try:
        call(order, obj)
    except UserCreditsError as exc:
        # A refund larger than what is left, an event for an order in the wrong state: the
        # event stays recorded by dj-stripe and in the log; retrying would change nothing.
        logger.warning("Stripe event %s (%s) for order %s: %s", event.id, event.type, order.pk, exc)
        services.record_payment_event(
            order, message=f"Ignored {event.type}: {exc}", payload=_payload(event, obj)
        )


@djstripe_receiver(["payment_intent.succeeded"])
def on_payment_intent_succeeded(sender, event, **kwargs):
    def call(order, intent):
        currency = intent.get("currency", "")
        services.mark_paid(
            order,
            amount=from_minor(intent.get("amount_received") or intent.get("amount") or 0, currency),
            currency=currency,
            reference=intent["id"],
            message="Paid with Stripe.",
            payload=_payload(event, intent),
        )

    _translate(event, call)


@djstripe_receiver(["payment_intent.payment_failed", "payment_intent.canceled"])
def on_payment_intent_failed(sender, event, **kwargs):
    def call(order, intent):
        error = (intent.get("last_payment_error") or {}).get("message") or ""
        reason = intent.get("cancellation_reason") or ""
        what = "canceled" if event.type.endswith("canceled") else "failed"
        services.mark_failed(
            order,
            message=f"Stripe payment {what}. {error or reason}".strip(),
            payload=_payload(event, intent),
        )

    _translate(event, call)


@djstripe_receiver(["checkout.session.completed", "checkout.session.async_payment_succeeded"])
def on_checkout_paid(sender, event, **kwargs):
    def call(order, session):
        if session.get("payment_status") != "paid":
            services.record_payment_event(
                order,
                message="Checkout completed; the payment is not settled yet.",
                payload=_payload(event, session, payment_status=session.get("payment_status")),
            )
            return
        intent = session.get("payment_intent")
        intent = intent.get("id") if isinstance(intent, dict) else intent
        currency = session.get("currency", "")
        services.mark_paid(
            order,
            amount=from_minor(session.get("amount_total") or 0, currency),
            currency=currency,
            reference=intent or session["id"],
            message="Paid with Stripe Checkout.",
            payload=_payload(event, session),
        )

    _translate(event, call)


@djstripe_receiver(["checkout.session.async_payment_failed"])
def on_checkout_failed(sender, event, **kwargs):
    def call(order, session):
        services.mark_failed(
            order, message="Stripe Checkout payment failed.", payload=_payload(event, session)
        )

    _translate(event, call)


@djstripe_receiver(["charge.refunded"])
def on_charge_refunded(sender, event, **kwargs):
    def call(order, charge):
        currency = charge.get("currency", "")
        if currency and currency.lower() != order.currency:
            services.record_payment_event(
                order,
                message=f"Refund in {currency} ignored: the order is in {order.currency}.",
                payload=_payload(event, charge),
            )
            return
        if order.status in OrderStatus.payable() and charge.get("paid"):
            # The refund arrived before the payment's own event: the charge proves the
            # payment (amount and currency checked as usual), then the refund applies.
            intent = charge.get("payment_intent")
            order = services.mark_paid(
                order,
                amount=from_minor(
                    charge.get("amount_captured") or charge.get("amount") or 0, currency
                ),
                currency=currency,
                reference=(intent.get("id") if isinstance(intent, dict) else intent)
                or charge["id"],
                message="Paid with Stripe (seen on its refund).",
                payload=_payload(event, charge),
            )
            if order.status != OrderStatus.PAID:
                return
        # The cumulative amount refunded makes redelivered and reordered events harmless.
        services.refund(
            order,
            total_refunded=from_minor(charge.get("amount_refunded") or 0, currency),
            reference=f"{charge['id']}:{charge.get('amount_refunded')}",
            payload=_payload(event, charge),
        )

    _translate(event, call)
