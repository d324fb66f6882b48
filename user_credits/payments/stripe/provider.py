"""Outbound calls to Stripe: start the payment of an order.

Starting a payment creates a PaymentIntent (its client secret is returned) or a Checkout
Session (its URL), with the order id in ``metadata`` (``ORDER_KEY``), in the order's currency
and amount converted to Stripe's minor units by ``user_credits.money``.
"""

import logging

import stripe
from djstripe.models import Customer
from djstripe.settings import djstripe_settings

from ... import services
from ...conf import app_settings
from ...exceptions import PaymentProviderError
from ...money import from_minor, to_minor
from ..base import PaymentProvider, PaymentStart

logger = logging.getLogger("user_credits.payments")

#: The metadata key carrying our order id on PaymentIntents and Checkout Sessions.
ORDER_KEY = "user_credits_order"

__all__ = ["ORDER_KEY", "StripeProvider", "from_minor", "to_minor"]


class StripeProvider(PaymentProvider):
    name = "stripe"
    requires_djstripe = True

    def start_payment(self, order, *, request=None) -> PaymentStart:
        livemode = djstripe_settings.STRIPE_LIVE_MODE
        api_key = djstripe_settings.get_default_api_key(livemode=livemode)
        metadata = {ORDER_KEY: str(order.pk)}
        try:
            customer, _ = Customer.get_or_create(subscriber=order.holder, livemode=livemode)
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
