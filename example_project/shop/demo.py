"""The demo catalog: the WonderAI case of the original library, plus talks and a mobile bundle.

Every offer is priced in USD and also in EUR (list prices, not conversions); the talks also
in KWD, a three-decimal currency.
"""

from decimal import Decimal

from django.db import transaction

from user_credits.models import (
    Billing,
    BundleItem,
    Cycle,
    Offer,
    OfferGroup,
    OfferKind,
    OfferPrice,
    Rollover,
    Tag,
)

PLANS = [  # (group, standard monthly price, tokens a month)
    ("Startup", Decimal("20"), 1_000),
    ("Business", Decimal("50"), 5_000),
    ("ScaleUp", Decimal("100"), 20_000),
]
EARLY_BIRD_DISCOUNT = Decimal("0.8")
EUR_LIST_PRICE = Decimal("0.9")  # of the USD price, rounded to the cent once, here
#: The talks' prices in Kuwaiti dinars (three decimals), set by hand.
KWD_PRICES = {
    "1 Talk": Decimal("9.250"),
    "3 Talks": Decimal("24.625"),
    "EventTalk": Decimal("15.375"),
    "VIP EventTalk": Decimal("7.750"),
}


def _group(key, name=None):
    group, _ = OfferGroup.objects.update_or_create(key=key, defaults={"name": name or key})
    return group


def _offer(name, group, *, tags=(), unlocked_by=(), **fields):
    offer, _ = Offer.objects.update_or_create(name=name, defaults={"offer_group": group, **fields})
    offer.tags.set([Tag.objects.get_or_create(name=tag)[0] for tag in tags])
    offer.unlocked_by.set(unlocked_by)
    return offer


@transaction.atomic
def load_demo_catalog() -> dict[str, Offer]:
    """Create or update the demo offers; running it twice changes nothing."""
    offers = {}
    for plan, monthly_price, tokens in PLANS:
        for edition, prefix, factor in (
            ("Standard", "", 1),
            ("EarlyBird", "Eb", EARLY_BIRD_DISCOUNT),
        ):
            group = _group(f"{prefix}{plan}", f"{plan} ({edition})")
            for cycle, months in ((Cycle.MONTHLY, 1), (Cycle.YEARLY, 10)):
                name = f"{plan} {edition} {cycle.label.capitalize()}"
                offers[name] = _offer(
                    name,
                    group,
                    kind=OfferKind.SUBSCRIPTION,
                    price=(monthly_price * months * factor).quantize(Decimal("0.01")),
                    currency="usd",
                    token_count=tokens * (12 if cycle == Cycle.YEARLY else 1),
                    cycle=cycle,
                    append_date=True,
                    popular=(plan == "Business" and edition == "Standard"),
                    tags=("subscription", cycle.value, edition),
                )
    offers["Free"] = _offer(
        "Free",
        _group("Free", "Free tier"),
        kind=OfferKind.SUBSCRIPTION,
        price=Decimal("0"),
        token_count=100,
        cycle=Cycle.MONTHLY,
        append_date=True,
        tags=("subscription", "monthly", "yearly"),
    )
    talks = _group("talks", "Event talks")
    offers["1 Talk"] = _offer(
        "1 Talk", talks, price=Decimal("30"), token_count=1, cycle=Cycle.YEARLY, tags=("tokens",)
    )
    offers["3 Talks"] = _offer(
        "3 Talks", talks, price=Decimal("80"), token_count=3, cycle=Cycle.YEARLY, tags=("tokens",)
    )
    offers["EventTalk"] = _offer(
        "EventTalk",
        talks,
        kind=OfferKind.EXPERTISE,
        price=Decimal("50"),
        token_count=1,
        cycle=Cycle.ONCE,
        overriding_key="EventTalk",
        tags=("EventTalk",),
    )
    vip_unlockers = OfferGroup.objects.filter(
        key__in=["EbStartup", "EbBusiness", "EbScaleUp", "ScaleUp"]
    )
    offers["VIP EventTalk"] = _offer(
        "VIP EventTalk",
        talks,
        kind=OfferKind.EXPERTISE,
        price=Decimal("25"),
        token_count=1,
        cycle=Cycle.ONCE,
        overriding_key="EventTalk",
        weight=10,
        tags=("EventTalk",),
        unlocked_by=list(vip_unlockers),
    )
    mobile_items = [
        ("Calls 120 min", _group("calls", "Call minutes"), 120),
        ("Data 20 GB", _group("data", "Mobile data (GB)"), 20),
        ("Mobile TV", _group("tv", "Mobile TV channels"), 1),
    ]
    bundle = _offer(
        "Mobile Max",
        _group("mobile", "Mobile plans"),
        price=Decimal("30"),
        token_count=None,
        cycle=Cycle.MONTHLY,
        tags=("mobile",),
    )
    offers["Mobile Max"] = bundle
    for name, group, tokens in mobile_items:
        item_offer = _offer(
            name,
            group,
            price=Decimal("10"),
            token_count=tokens,
            cycle=Cycle.MONTHLY,
            tags=("mobile-option",),
        )
        offers[name] = item_offer
        BundleItem.objects.update_or_create(
            bundle=bundle, offer=item_offer, defaults={"quantity": 1}
        )
    # Recurring plans: subscriptions that renew every month until canceled, each period with
    # its own lot; Pro carries up to 300 unused tokens into the next period.
    offers["Pro Monthly"] = _offer(
        "Pro Monthly",
        _group("Pro", "Pro plan"),
        kind=OfferKind.SUBSCRIPTION,
        billing=Billing.RECURRING,
        price=Decimal("15"),
        currency="usd",
        token_count=1_000,
        cycle=Cycle.MONTHLY,
        rollover=Rollover.CAPPED,
        rollover_cap=300,
        tags=("recurring",),
    )
    offers["Hobby Monthly"] = _offer(
        "Hobby Monthly",
        _group("Hobby", "Hobby plan"),
        kind=OfferKind.SUBSCRIPTION,
        billing=Billing.RECURRING,
        price=Decimal("0"),
        currency="usd",
        token_count=100,
        cycle=Cycle.MONTHLY,
        rollover=Rollover.NONE,
        rollover_cap=None,
        tags=("recurring",),
    )
    for name, offer in offers.items():
        prices = {"eur": (offer.price * EUR_LIST_PRICE).quantize(Decimal("0.01"))}
        if name in KWD_PRICES:
            prices["kwd"] = KWD_PRICES[name]
        for currency, price in prices.items():
            OfferPrice.objects.update_or_create(
                offer=offer, currency=currency, defaults={"price": price}
            )
    return offers
