"""What a payment provider tells us about an order, applied by one service per kind.

A provider's inbound module (``payments.stripe.webhooks``) parses each event into a
``PaymentNotification`` and calls the service of its kind; the rules (what a refund seen before
its payment means, a refund in another currency) live here, not in the provider's module.
"""

from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction

from ..models import Order, OrderEvent, OrderStatus
from .orders import mark_failed, mark_paid, record_payment_event
from .refunds import refund


@dataclass(frozen=True)
class PaymentNotification:
    """A provider's news about one of our orders, in the order's major currency unit.

    ``amount``: what was paid (``payment_succeeded``), or the cumulative amount refunded so far
    (``payment_refunded``: redelivered and reordered notifications are then harmless).
    ``paid_amount``: with a refund, what the refunded charge had captured, which proves the
    payment when its own notification has not arrived yet.
    """

    order_id: int
    reference: str = ""
    amount: Decimal | None = None
    currency: str = ""
    message: str = ""
    payload: dict = field(default_factory=dict)
    paid_amount: Decimal | None = None
    refund_reference: str = ""


def payment_succeeded(notification: PaymentNotification) -> Order:
    """The payment went through: the order is paid (amount and currency checked)."""
    return mark_paid(
        notification.order_id,
        amount=notification.amount,
        currency=notification.currency,
        reference=notification.reference,
        message=notification.message or "Paid.",
        payload=notification.payload,
    )


def payment_failed(notification: PaymentNotification) -> Order:
    """The payment was declined or canceled (a paid order stays paid)."""
    return mark_failed(
        notification.order_id,
        message=notification.message or "Payment failed.",
        payload=notification.payload,
    )


def payment_pending(notification: PaymentNotification) -> OrderEvent:
    """The buyer finished on the provider's side; the money has not settled yet."""
    return record_payment_event(
        notification.order_id, message=notification.message, payload=notification.payload
    )


def payment_refunded(notification: PaymentNotification) -> Order:
    """Money went back to the buyer: revoke the refunded share of the order's tokens.

    A refund in another currency than the order's is recorded and ignored. A refund seen
    before its payment's own notification first records the payment from the refunded
    charge (checked as any payment), then refunds.
    """
    with transaction.atomic():
        order = Order.objects.get(pk=notification.order_id)
        currency = notification.currency.lower()
        if currency and currency != order.currency:
            record_payment_event(
                order,
                message=f"Refund in {currency} ignored: the order is in {order.currency}.",
                payload=notification.payload,
            )
            return order
        if order.status in OrderStatus.payable() and notification.paid_amount is not None:
            order = mark_paid(
                order,
                amount=notification.paid_amount,
                currency=currency,
                reference=notification.reference,
                message="Paid (seen on its refund).",
                payload=notification.payload,
            )
            if order.status != OrderStatus.PAID:
                return order
        return refund(
            order,
            total_refunded=notification.amount,
            reference=notification.refund_reference,
            payload=notification.payload,
        )
