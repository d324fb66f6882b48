"""Inbound Stripe events: validate, parse into a payment notification, dispatch.

dj-stripe verifies each webhook's signature and stores the event; the receiver below parses
the events that concern our orders into a ``PaymentNotification`` and calls the one service of
its kind (``DISPATCH``). No rule of the domain lives here. Stripe redelivers and reorders
events: the services are idempotent, and a notification they refuse is recorded in the
order's history and answered 200 (retrying would change nothing).
"""

import logging
from collections.abc import Callable
from dataclasses import replace

from djstripe.event_handlers import djstripe_receiver

from ... import services
from ...exceptions import UserCreditsError
from ...models import Order
from ...money import from_minor
from ...services.notifications import PaymentNotification
from .provider import ORDER_KEY

logger = logging.getLogger("user_credits.payments")


def _id(value) -> str:
    """An expandable field's id, whether Stripe sent the id or the object."""
    return (value.get("id") if isinstance(value, dict) else value) or ""


def order_id_of(obj: dict) -> int | None:
    """Our order named in an object's metadata, else the one paid by this PaymentIntent."""
    order_id = (obj.get("metadata") or {}).get(ORDER_KEY) or (
        obj.get("client_reference_id") if obj.get("object") == "checkout.session" else None
    )
    if order_id is not None:
        try:
            return Order.objects.values_list("pk", flat=True).get(pk=int(order_id))
        except (Order.DoesNotExist, ValueError, TypeError):
            logger.warning(
                "Stripe %s %s names an unknown order %r", obj.get("object"), obj.get("id"), order_id
            )
            return None
    intent = _id(obj.get("payment_intent"))
    if intent:
        return Order.objects.filter(payment_reference=intent).values_list("pk", flat=True).first()
    return None


# --- parsers: one Stripe object → (service kind, notification) ------------------------------


def _intent_succeeded(event, intent, order_id):
    currency = intent.get("currency", "")
    received = intent.get("amount_received") or intent.get("amount") or 0
    return "succeeded", PaymentNotification(
        order_id=order_id,
        reference=intent["id"],
        amount=from_minor(received, currency),
        currency=currency,
        message="Paid with Stripe.",
    )


def _intent_failed(event, intent, order_id):
    error = (intent.get("last_payment_error") or {}).get("message") or ""
    reason = intent.get("cancellation_reason") or ""
    what = "canceled" if event.type.endswith("canceled") else "failed"
    return "failed", PaymentNotification(
        order_id=order_id, message=f"Stripe payment {what}. {error or reason}".strip()
    )


def _checkout_completed(event, session, order_id):
    if session.get("payment_status") != "paid":
        return "pending", PaymentNotification(
            order_id=order_id,
            message="Checkout completed; the payment is not settled yet.",
            payload={"payment_status": session.get("payment_status")},
        )
    currency = session.get("currency", "")
    return "succeeded", PaymentNotification(
        order_id=order_id,
        reference=_id(session.get("payment_intent")) or session["id"],
        amount=from_minor(session.get("amount_total") or 0, currency),
        currency=currency,
        message="Paid with Stripe Checkout.",
    )


def _checkout_failed(event, session, order_id):
    return "failed", PaymentNotification(
        order_id=order_id, message="Stripe Checkout payment failed."
    )


def _charge_refunded(event, charge, order_id):
    currency = charge.get("currency", "")
    captured = charge.get("amount_captured") or charge.get("amount") or 0
    return "refunded", PaymentNotification(
        order_id=order_id,
        reference=_id(charge.get("payment_intent")) or charge["id"],
        amount=from_minor(charge.get("amount_refunded") or 0, currency),
        currency=currency,
        paid_amount=from_minor(captured, currency) if charge.get("paid") else None,
        refund_reference=f"{charge['id']}:{charge.get('amount_refunded')}",
    )


PARSERS: dict[str, Callable] = {
    "payment_intent.succeeded": _intent_succeeded,
    "payment_intent.payment_failed": _intent_failed,
    "payment_intent.canceled": _intent_failed,
    "checkout.session.completed": _checkout_completed,
    "checkout.session.async_payment_succeeded": _checkout_completed,
    "checkout.session.async_payment_failed": _checkout_failed,
    "charge.refunded": _charge_refunded,
}

#: One service per kind of notification.
DISPATCH: dict[str, Callable[[PaymentNotification], object]] = {
    "succeeded": services.payment_succeeded,
    "failed": services.payment_failed,
    "pending": services.payment_pending,
    "refunded": services.payment_refunded,
}


def parse(event) -> tuple[str, PaymentNotification] | None:
    """The notification an event carries for one of our orders, or ``None``."""
    obj = event.data.get("object", {})
    order_id = order_id_of(obj)
    if order_id is None:
        return None
    kind, notification = PARSERS[event.type](event, obj, order_id)
    payload = {
        "stripe_event": event.id,
        "stripe_object": obj.get("id"),
        "event_type": event.type,
        **notification.payload,
    }
    return kind, replace(notification, payload=payload)


@djstripe_receiver(list(PARSERS))
def on_stripe_event(sender, event, **kwargs):
    parsed = parse(event)
    if parsed is None:
        return
    kind, notification = parsed
    try:
        DISPATCH[kind](notification)
    except UserCreditsError as exc:
        # A refund larger than what is left, an event for an order in the wrong state: the
        # event stays recorded by dj-stripe and in the log; retrying would change nothing.
        logger.warning(
            "Stripe event %s (%s) for order %s: %s",
            event.id,
            event.type,
            notification.order_id,
            exc,
        )
        services.record_payment_event(
            notification.order_id,
            message=f"Ignored {event.type}: {exc}",
            payload=notification.payload,
        )
