"""Stripe Products and Prices of recurring offers, created or updated from the offers.

``sync_offer(offer)`` is idempotent: the Product's id is ``user_credits_offer_<pk>``; a Price is
immutable at Stripe, so a change of amount, currency, interval or currency options makes a new
Price (the old one is archived) and the offer points to it. Run by
``python manage.py user_credits_sync_prices`` and the admin action of the same name, through
``services.sync_prices``.
"""

import stripe
from django.utils.translation import gettext
from djstripe.settings import djstripe_settings

from ...exceptions import InvalidArgument, PaymentProviderError
from ...models import Cycle, Offer
from ...money import to_minor

#: Our cycles as Stripe's recurring intervals.
INTERVALS = {
    Cycle.DAILY: ("day", 1),
    Cycle.WEEKLY: ("week", 1),
    Cycle.BI_WEEKLY: ("week", 2),
    Cycle.MONTHLY: ("month", 1),
    Cycle.TRIMESTER: ("month", 3),
    Cycle.SEMESTER: ("month", 6),
    Cycle.YEARLY: ("year", 1),
}


def product_id(offer: Offer) -> str:
    return f"user_credits_offer_{offer.pk}"


def wanted_price(offer: Offer) -> dict:
    """The Price the offer should have, as Stripe's create arguments."""
    try:
        interval, count = INTERVALS[offer.cycle]
    except KeyError:
        raise InvalidArgument(
            gettext("%(offer)r: a %(cycle)s cycle has no Stripe interval.")
            % {"offer": offer.name, "cycle": offer.cycle},
            field="cycle",
        ) from None
    wanted = {
        "currency": offer.currency,
        "unit_amount": to_minor(offer.price, offer.currency),
        "recurring": {"interval": interval, "interval_count": count},
    }
    options = {
        p.currency: {"unit_amount": to_minor(p.price, p.currency)} for p in offer.prices.all()
    }
    if options:
        wanted["currency_options"] = options
    return wanted


def _same(price, wanted) -> bool:
    recurring = price.get("recurring") or {}
    options = {
        code: {"unit_amount": int(option.get("unit_amount") or 0)}
        for code, option in (price.get("currency_options") or {}).items()
        if code != price.get("currency")
    }
    return (
        bool(price.get("active"))
        and price.get("currency") == wanted["currency"]
        and int(price.get("unit_amount") or 0) == wanted["unit_amount"]
        and recurring.get("interval") == wanted["recurring"]["interval"]
        and int(recurring.get("interval_count") or 1) == wanted["recurring"]["interval_count"]
        and options == wanted.get("currency_options", {})
    )


def sync_offer(offer: Offer) -> str:
    """Create or update the offer's Product and Price; returns ``created``, ``updated`` or
    ``unchanged`` and sets ``offer.stripe_price_id`` (saved)."""
    api_key = djstripe_settings.get_default_api_key(livemode=djstripe_settings.STRIPE_LIVE_MODE)
    wanted = wanted_price(offer)
    try:
        pid = product_id(offer)
        try:
            product = stripe.Product.retrieve(pid, api_key=api_key)
            if product.get("name") != offer.name or not product.get("active"):
                stripe.Product.modify(pid, api_key=api_key, name=offer.name, active=True)
        except stripe.InvalidRequestError:
            stripe.Product.create(
                api_key=api_key, id=pid, name=offer.name, metadata={"user_credits_offer": offer.pk}
            )
        old = None
        if offer.stripe_price_id:
            try:
                old = stripe.Price.retrieve(
                    offer.stripe_price_id, api_key=api_key, expand=["currency_options"]
                )
            except stripe.InvalidRequestError:
                old = None
            if old is not None and _same(old, wanted):
                return "unchanged"
        price = stripe.Price.create(
            api_key=api_key,
            product=pid,
            metadata={"user_credits_offer": offer.pk},
            **wanted,
        )
        if old is not None and old.get("active"):
            stripe.Price.modify(old["id"], api_key=api_key, active=False)
    except stripe.StripeError as exc:
        raise PaymentProviderError(
            gettext("Stripe refused the price of %(offer)r: %(error)s")
            % {"offer": offer.name, "error": exc}
        ) from exc
    offer.stripe_price_id = price["id"]
    Offer.objects.filter(pk=offer.pk).update(stripe_price_id=price["id"])
    return "updated" if old is not None else "created"
