"""Stripe through dj-stripe: the only package that imports ``djstripe`` or ``stripe``.

``provider`` makes the outbound calls (start a payment); ``webhooks`` turns dj-stripe's
inbound events into payment notifications for the services.
"""

from .provider import ORDER_KEY, SUBSCRIPTION_KEY, StripeProvider, from_minor, to_minor

__all__ = ["ORDER_KEY", "SUBSCRIPTION_KEY", "StripeProvider", "from_minor", "to_minor"]
