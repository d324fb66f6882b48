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
from datetime import UTC, datetime

import stripe
from django.db import transaction
from djstripe.event_handlers import djstripe_receiver
from djstripe.settings import djstripe_settings

from ... import services
from ...exceptions import UserCreditsError
from ...models import Offer, Order, Subscription, SubscriptionStatus
from ...money import from_minor
from ...services.notifications import PaymentNotification
from ...services.subscriptions import InvoiceNotification, SubscriptionNotification
from .provider import ORDER_KEY, SUBSCRIPTION_KEY

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
    invoice = _id(obj.get("invoice")) if obj.get("object") == "charge" else ""
    if invoice:  # a charge of a subscription's invoice: the period's order
        order_id = (
            Order.objects.filter(subscription__isnull=False, payment_reference=invoice)
            .values_list("pk", flat=True)
            .first()
        )
        if order_id is not None:
            return order_id
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
        if event.type == "charge.refunded":
            _invoice_refunded_before_paid(event)
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


# --- subscriptions: Stripe Billing's invoices and subscriptions -------------------------------
#
# Each paid invoice of a subscription (``invoice.paid`` and ``invoice.payment_succeeded``: Stripe
# sends both, localstripe only the latter) renews it once per invoice id; the period is the
# invoice's subscription line. Our subscription is found by ``metadata[SUBSCRIPTION_KEY]`` (on
# the subscription, copied by Stripe to the invoice's ``subscription_details`` and lines), else
# by the ``sub_…`` recorded on it. An invoice can arrive before its subscription's own event.


def _metadata_sources(obj: dict):
    yield obj.get("metadata") or {}
    yield (obj.get("subscription_details") or {}).get("metadata") or {}
    parent = obj.get("parent") or {}
    yield (parent.get("subscription_details") or {}).get("metadata") or {}
    for line in (obj.get("lines") or {}).get("data") or []:
        yield line.get("metadata") or {}


def _stripe_subscription_id(obj: dict) -> str:
    if obj.get("object") == "subscription":
        return obj.get("id") or ""
    parent = (obj.get("parent") or {}).get("subscription_details") or {}
    return _id(obj.get("subscription")) or _id(parent.get("subscription"))


def subscription_id_of(obj: dict) -> int | None:
    """Our subscription named in an object's metadata, else the one with its ``sub_…``."""
    named = next(
        (m[SUBSCRIPTION_KEY] for m in _metadata_sources(obj) if SUBSCRIPTION_KEY in m), None
    )
    if named is not None:
        try:
            return Subscription.objects.values_list("pk", flat=True).get(pk=int(named))
        except (Subscription.DoesNotExist, ValueError, TypeError):
            logger.warning(
                "Stripe %s %s names an unknown subscription %r",
                obj.get("object"),
                obj.get("id"),
                named,
            )
            return None
    reference = _stripe_subscription_id(obj)
    if reference:
        return Subscription.objects.filter(reference=reference).values_list("pk", flat=True).first()
    return None


def _moment(timestamp) -> datetime | None:
    return datetime.fromtimestamp(int(timestamp), tz=UTC) if timestamp else None


def _invoice_period(invoice: dict) -> tuple[datetime | None, datetime | None]:
    """The subscription period an invoice pays: its subscription line's (the invoice's own
    period_start/end is the period of its usage items, often one instant)."""
    lines = [
        line
        for line in (invoice.get("lines") or {}).get("data") or []
        if line.get("type") == "subscription" or line.get("subscription")
    ]
    if lines:
        regular = [line for line in lines if not line.get("proration")] or lines
        period = regular[-1].get("period") or {}
        return _moment(period.get("start")), _moment(period.get("end"))
    return _moment(invoice.get("period_start")), _moment(invoice.get("period_end"))


def _offer_of_price(price) -> int | None:
    price_id = _id(price)
    if not price_id:
        return None
    return Offer.objects.filter(stripe_price_id=price_id).values_list("pk", flat=True).first()


def _proration(invoice: dict):
    """``(old offer, new offer, since)`` of a proration invoice (a plan changed mid-period:
    a credit line for the old price's unused time, a debit line for the new one), else None."""
    lines = [
        line for line in (invoice.get("lines") or {}).get("data") or [] if line.get("proration")
    ]
    credit = next((line for line in lines if (line.get("amount") or 0) < 0), None)
    debit = next((line for line in lines if (line.get("amount") or 0) > 0), None)
    if credit is None or debit is None:
        return None
    since = _moment((debit.get("period") or {}).get("start"))
    return _offer_of_price(credit.get("price")), _offer_of_price(debit.get("price")), since


def _invoice_paid(event, invoice, subscription_id):
    currency = invoice.get("currency", "")
    proration = _proration(invoice)
    if proration is not None:
        old, new, since = proration
        return "invoice_prorated", InvoiceNotification(
            subscription_id=subscription_id,
            reference=invoice["id"],
            amount=from_minor(invoice.get("amount_paid") or 0, currency),
            currency=currency,
            old_offer_id=old,
            new_offer_id=new,
            since=since,
            payload={"billing_reason": invoice.get("billing_reason")},
        )
    start, end = _invoice_period(invoice)
    return "invoice_paid", InvoiceNotification(
        subscription_id=subscription_id,
        reference=invoice["id"],
        period_start=start,
        period_end=end,
        amount=from_minor(invoice.get("amount_paid") or 0, currency),
        currency=currency,
        subscription_reference=_stripe_subscription_id(invoice),
        payload={"billing_reason": invoice.get("billing_reason")},
    )


def _invoice_failed(event, invoice, subscription_id):
    return "invoice_failed", InvoiceNotification(
        subscription_id=subscription_id, reference=invoice["id"]
    )


#: Stripe's subscription statuses in ours; the others (incomplete, trialing…) change nothing.
STATUSES = {
    "active": SubscriptionStatus.ACTIVE,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.PAST_DUE,
    "canceled": SubscriptionStatus.CANCELED,
    "incomplete_expired": SubscriptionStatus.CANCELED,
}


def _subscription_changed(event, sub, subscription_id):
    status = "canceled" if event.type.endswith(".deleted") else sub.get("status", "")
    items = (sub.get("items") or {}).get("data") or []
    return "updated", SubscriptionNotification(
        subscription_id=subscription_id,
        reference=sub["id"],
        status=STATUSES.get(status, ""),
        cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
        offer_id=_offer_of_price(items[0].get("price")) if len(items) == 1 else None,
    )


def _checkout_subscription(event, session, subscription_id):
    if session.get("mode") != "subscription":
        return None
    return "updated", SubscriptionNotification(
        subscription_id=subscription_id, reference=_id(session.get("subscription"))
    )


SUBSCRIPTION_PARSERS: dict[str, Callable] = {
    "invoice.paid": _invoice_paid,
    "invoice.payment_succeeded": _invoice_paid,
    "invoice.payment_failed": _invoice_failed,
    "customer.subscription.created": _subscription_changed,
    "customer.subscription.updated": _subscription_changed,
    "customer.subscription.deleted": _subscription_changed,
    "checkout.session.completed": _checkout_subscription,
}

SUBSCRIPTION_DISPATCH: dict[str, Callable] = {
    "invoice_paid": services.invoice_paid,
    "invoice_prorated": services.invoice_prorated,
    "invoice_failed": services.invoice_failed,
    "updated": services.subscription_updated,
}


def parse_subscription_event(event):
    """The notification an event carries for one of our subscriptions, or ``None``."""
    obj = event.data.get("object", {})
    if obj.get("object") == "checkout.session" and obj.get("mode") != "subscription":
        return None
    if obj.get("object") == "invoice" and not _stripe_subscription_id(obj):
        return None  # a one-off invoice
    subscription_id = subscription_id_of(obj)
    if subscription_id is None:
        logger.warning(
            "Stripe %s (%s) for %s: no subscription of ours; ignored",
            event.id,
            event.type,
            _stripe_subscription_id(obj) or obj.get("id"),
        )
        return None
    parsed = SUBSCRIPTION_PARSERS[event.type](event, obj, subscription_id)
    if parsed is None:
        return None
    kind, notification = parsed
    if kind == "updated":
        return kind, notification
    payload = {"stripe_event": event.id, "event_type": event.type, **notification.payload}
    return kind, replace(notification, payload=payload)


@djstripe_receiver(list(SUBSCRIPTION_PARSERS))
def on_stripe_subscription_event(sender, event, **kwargs):
    parsed = parse_subscription_event(event)
    if parsed is None:
        return
    kind, notification = parsed
    try:
        SUBSCRIPTION_DISPATCH[kind](notification)
    except UserCreditsError as exc:
        # A renewal of a canceled subscription, an invoice without a period: recorded in the
        # log and by dj-stripe; retrying would change nothing.
        logger.warning(
            "Stripe event %s (%s) for subscription %s: %s",
            event.id,
            event.type,
            notification.subscription_id,
            exc,
        )


# --- a subscription invoice's refund seen before the invoice was paid -----------------------
#
# Stripe does not order its events: the ``charge.refunded`` of an invoice's charge can arrive
# before that invoice's ``invoice.paid``. As for a one-time order (a refund seen before its
# payment first records the payment from the refunded charge), the refund first records the
# period the invoice paid, read from Stripe, then revokes it, in one transaction: the period's
# order ends ``refunded`` with its lot revoked, and the late ``invoice.paid`` is a replay of
# the same invoice id that grants nothing.


def _invoice_refunded_before_paid(event) -> None:
    charge = event.data.get("object", {})
    invoice_id = _id(charge.get("invoice"))
    if not invoice_id or not charge.get("paid"):
        return
    api_key = djstripe_settings.get_default_api_key(livemode=bool(event.livemode))
    try:
        invoice = stripe.Invoice.retrieve(invoice_id, api_key=api_key)
    except stripe.InvalidRequestError as exc:  # not an invoice Stripe knows: nothing of ours
        logger.warning(
            "Stripe %s: invoice %s of charge %s: %s", event.id, invoice_id, charge.get("id"), exc
        )
        return
    invoice = invoice.to_dict() if hasattr(invoice, "to_dict") else dict(invoice)
    if not _stripe_subscription_id(invoice):
        return  # a one-off invoice
    subscription_id = subscription_id_of(invoice)
    if subscription_id is None:
        return
    kind, notification = _invoice_paid(event, invoice, subscription_id)
    payload = {
        "stripe_event": event.id,
        "event_type": event.type,
        "seen_on_refund": charge.get("id"),
        **notification.payload,
    }
    notification = replace(notification, payload=payload)
    try:
        with transaction.atomic():
            SUBSCRIPTION_DISPATCH[kind](notification)
            parsed = parse(event)  # the period's order exists now: the refund finds it
            if parsed is not None:
                refund_kind, refund = parsed
                DISPATCH[refund_kind](refund)
    except UserCreditsError as exc:
        logger.warning(
            "Stripe event %s (%s) for subscription %s: %s",
            event.id,
            event.type,
            subscription_id,
            exc,
        )
