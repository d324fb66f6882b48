"""Outbound calls to Stripe: start the payment of an order.

Starting a payment creates a PaymentIntent (its client secret is returned) or a Checkout
Session (its URL), with the order id in ``metadata`` (``ORDER_KEY``), in the order's currency
and amount converted to Stripe's minor units by ``user_credits.money``.
"""

import logging

import stripe
from django.utils.translation import gettext
from djstripe.models import Customer
from djstripe.settings import djstripe_settings

from ... import services
from ...conf import app_settings
from ...exceptions import PaymentDeclined, PaymentProviderError
from ...money import from_minor, to_minor
from ..base import PaymentProvider, PaymentStart

logger = logging.getLogger("user_credits.payments")

#: The metadata key carrying our order id on PaymentIntents and Checkout Sessions.
ORDER_KEY = "user_credits_order"
#: The metadata key carrying our subscription id on Stripe subscriptions and Checkout Sessions.
SUBSCRIPTION_KEY = "user_credits_subscription"

__all__ = ["ORDER_KEY", "SUBSCRIPTION_KEY", "StripeProvider", "from_minor", "to_minor"]


class StripeProvider(PaymentProvider):
    name = "stripe"
    requires_djstripe = True

    def start_payment(self, order, *, request=None, save_payment_method=False) -> PaymentStart:
        """``save_payment_method``: ask Stripe to keep the card for off-session payments
        (``setup_future_usage=off_session``), as auto-recharge needs."""
        livemode = djstripe_settings.STRIPE_LIVE_MODE
        api_key = djstripe_settings.get_default_api_key(livemode=livemode)
        metadata = {ORDER_KEY: str(order.pk)}
        future = {"setup_future_usage": "off_session"} if save_payment_method else {}
        try:
            customer, _ = Customer.get_or_create(subscriber=order.holder, livemode=livemode)
            if app_settings.STRIPE_FLOW == "payment_intent":
                intent = stripe.PaymentIntent.create(
                    api_key=api_key,
                    amount=to_minor(order.total, order.currency),
                    currency=order.currency,
                    customer=customer.id,
                    metadata=metadata,
                    **future,
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
                    payment_intent_data={"metadata": metadata, **future},
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
                gettext("Stripe refused the payment: %(error)s")
                % {"error": exc.user_message or exc}
            ) from exc
        services.record_payment_event(
            order,
            message=f"Stripe payment started ({start.reference}).",
            payload={"provider": self.name, "stripe_object": start.reference},
            reference=start.reference,
        )
        return start

    # --- off-session payments (auto-recharge) ----------------------------------------------

    def charge_off_session(self, order, *, idempotency_key: str) -> PaymentStart:
        """A PaymentIntent confirmed at once, off-session, with the customer's saved payment
        method (its default, else the most recent card attached). A decline or a bank that asks
        for authentication raises ``PaymentDeclined``; a success is recorded at once (its
        webhook, when it arrives, changes nothing)."""
        livemode = djstripe_settings.STRIPE_LIVE_MODE
        api_key = djstripe_settings.get_default_api_key(livemode=livemode)
        try:
            customer, _ = Customer.get_or_create(subscriber=order.holder, livemode=livemode)
            payment_method = saved_payment_method(customer.id, api_key)
            if not payment_method:
                raise PaymentDeclined(
                    gettext("No saved payment method to charge."), reason="no_payment_method"
                )
            intent = stripe.PaymentIntent.create(
                api_key=api_key,
                amount=to_minor(order.total, order.currency),
                currency=order.currency,
                customer=customer.id,
                payment_method=payment_method,
                off_session=True,
                confirm=True,
                metadata={ORDER_KEY: str(order.pk), "user_credits_auto_recharge": "1"},
                idempotency_key=idempotency_key,
            )
        except stripe.CardError as exc:  # declines, and authentication_required
            error = exc.error or {}
            reason = getattr(error, "decline_code", None) or exc.code or "card_error"
            raise PaymentDeclined(
                gettext("Stripe declined the auto-recharge (%(reason)s): %(message)s")
                % {"reason": reason, "message": exc.user_message or exc},
                reason=reason,
            ) from exc
        except stripe.StripeError as exc:
            raise PaymentDeclined(
                gettext("Stripe refused the auto-recharge: %(message)s")
                % {"message": exc.user_message or exc},
                reason=exc.code or "stripe_error",
            ) from exc
        status = intent.get("status")
        if status == "succeeded":
            currency = intent.get("currency", order.currency)
            services.payment_succeeded(
                services.PaymentNotification(
                    order_id=order.pk,
                    reference=intent["id"],
                    amount=from_minor(intent.get("amount_received") or intent["amount"], currency),
                    currency=currency,
                    message=gettext("Auto-recharge paid with Stripe."),
                    payload={"stripe_object": intent["id"]},
                )
            )
        elif status in ("requires_action", "requires_payment_method", "canceled"):
            raise PaymentDeclined(
                gettext("Stripe could not charge the auto-recharge off-session (%(status)s).")
                % {"status": status},
                reason="authentication_required" if status == "requires_action" else status,
            )
        return PaymentStart(provider=self.name, reference=intent["id"])

    def start_setup(self, holder) -> PaymentStart:
        """A SetupIntent for off-session use: a holder who has bought nothing yet saves a card
        for auto-recharge (the front end confirms it with the client secret)."""
        livemode = djstripe_settings.STRIPE_LIVE_MODE
        api_key = djstripe_settings.get_default_api_key(livemode=livemode)
        try:
            customer, _ = Customer.get_or_create(subscriber=holder, livemode=livemode)
            intent = stripe.SetupIntent.create(
                api_key=api_key,
                customer=customer.id,
                usage="off_session",
                payment_method_types=["card"],
            )
        except stripe.StripeError as exc:
            raise PaymentProviderError(
                gettext("Stripe refused to save a payment method: %(message)s")
                % {"message": exc.user_message or exc}
            ) from exc
        return PaymentStart(
            provider=self.name, reference=intent["id"], client_secret=intent["client_secret"]
        )

    # --- subscriptions ---------------------------------------------------------------------

    def start_subscription(self, subscription, *, request=None) -> PaymentStart:
        """A Stripe subscription to the offer's synced Price: a Checkout Session in
        ``mode=subscription`` (its URL) or, with ``STRIPE_FLOW = "payment_intent"``, the
        Subscriptions API (the first invoice's client secret). Our id is in the metadata."""
        offer = subscription.offer
        if not offer.stripe_price_id:
            raise PaymentProviderError(
                gettext("%(offer)r has no Stripe price: run manage.py user_credits_sync_prices.")
                % {"offer": offer.name}
            )
        livemode = djstripe_settings.STRIPE_LIVE_MODE
        api_key = djstripe_settings.get_default_api_key(livemode=livemode)
        metadata = {SUBSCRIPTION_KEY: str(subscription.pk)}
        item = {"price": offer.stripe_price_id, "quantity": subscription.quantity}
        try:
            customer, _ = Customer.get_or_create(subscriber=subscription.holder, livemode=livemode)
            if app_settings.STRIPE_FLOW == "payment_intent":
                created = stripe.Subscription.create(
                    api_key=api_key,
                    customer=customer.id,
                    items=[item],
                    metadata=metadata,
                    payment_behavior="default_incomplete",
                    expand=["latest_invoice.payment_intent"],
                )
                invoice = created.get("latest_invoice")
                intent = invoice.get("payment_intent") if hasattr(invoice, "get") else None
                secret = intent.get("client_secret") if hasattr(intent, "get") else ""
                start = PaymentStart(
                    provider=self.name, reference=created["id"], client_secret=secret or ""
                )
                reference = created["id"]
            else:
                urls = {"order_id": "", "subscription_id": subscription.pk}
                session = stripe.checkout.Session.create(
                    api_key=api_key,
                    mode="subscription",
                    customer=customer.id,
                    metadata=metadata,
                    subscription_data={"metadata": metadata},
                    line_items=[item],
                    success_url=app_settings.CHECKOUT_SUCCESS_URL.format_map(_Blank(urls)),
                    cancel_url=app_settings.CHECKOUT_CANCEL_URL.format_map(_Blank(urls)),
                )
                start = PaymentStart(
                    provider=self.name, reference=session["id"], redirect_url=session["url"]
                )
                reference = ""
        except stripe.StripeError as exc:
            logger.warning("Stripe refused subscription %s: %s", subscription.pk, exc)
            raise PaymentProviderError(
                gettext("Stripe refused the subscription: %(error)s")
                % {"error": exc.user_message or exc}
            ) from exc
        if reference:
            type(subscription).objects.filter(pk=subscription.pk, reference="").update(
                reference=reference
            )
            subscription.reference = reference
        return start

    def cancel_subscription(self, subscription, *, at_period_end: bool) -> None:
        api_key = djstripe_settings.get_default_api_key(livemode=djstripe_settings.STRIPE_LIVE_MODE)
        try:
            if at_period_end:
                stripe.Subscription.modify(
                    subscription.reference, api_key=api_key, cancel_at_period_end=True
                )
            else:
                stripe.Subscription.cancel(subscription.reference, api_key=api_key)
        except stripe.StripeError as exc:
            raise PaymentProviderError(
                gettext("Stripe refused the cancel: %(error)s") % {"error": exc}
            ) from exc

    def resume_subscription(self, subscription) -> None:
        api_key = djstripe_settings.get_default_api_key(livemode=djstripe_settings.STRIPE_LIVE_MODE)
        try:
            stripe.Subscription.modify(
                subscription.reference, api_key=api_key, cancel_at_period_end=False
            )
        except stripe.StripeError as exc:
            raise PaymentProviderError(
                gettext("Stripe refused to resume: %(error)s") % {"error": exc}
            ) from exc

    def sync_price(self, offer) -> str:
        from .prices import sync_offer

        return sync_offer(offer)


def saved_payment_method(customer_id: str, api_key: str) -> str:
    """The customer's default payment method (``invoice_settings``), else the most recent card
    attached to them (a card saved with ``setup_future_usage`` or a SetupIntent); ``""``."""
    customer = stripe.Customer.retrieve(customer_id, api_key=api_key)
    settings = customer.get("invoice_settings") or {}
    default = settings.get("default_payment_method")
    if default:
        return default if isinstance(default, str) else default["id"]
    cards = stripe.PaymentMethod.list(customer=customer_id, type="card", api_key=api_key)
    data = cards.get("data") or []
    return data[0]["id"] if data else ""


class _Blank(dict):
    """``str.format_map`` values where a missing name is blank (a subscription's success URL
    has no order id)."""

    def __missing__(self, key):
        return ""
