"""Plain factory functions: real rows, sensible defaults, keyword overrides."""

from decimal import Decimal
from itertools import count

from django.contrib.auth import get_user_model
from django.db.models import Sum

from user_credits import services
from user_credits.holders import holder_is_user
from user_credits.models import (
    CreditAccount,
    CreditLot,
    Cycle,
    LedgerEntry,
    LotStatus,
    Offer,
    OfferGroup,
    OfferKind,
)

_seq = count(1)


def make_user(username=None, **fields):
    username = username or f"user{next(_seq)}"
    return get_user_model().objects.create_user(username=username, password="pw", **fields)


def make_holder(name=None, *, user=None, **fields):
    """A holder (``USER_CREDITS_HOLDER_MODEL``): a user under the default model (``name`` is
    the username); under a custom one (``tests.settings_workspaces``), a workspace owned by
    ``user`` (a new user named ``name`` when not given), who may spend its credits."""
    if holder_is_user():
        return user if user is not None else make_user(name, **fields)
    from example_project.workspaces.models import Workspace

    owner = user if user is not None else make_user(name, **fields)
    slug = f"{owner.username}-team{next(_seq)}"
    return Workspace.objects.create(name=slug, slug=slug, owner=owner)


def bulk_holders(prefix, n):
    """``n`` holders in a few statements (``bulk_create``): users named ``<prefix><i>``, or
    under a custom holder model a workspace owned by each."""
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"{prefix}{i}", password="") for i in range(n)
    )
    if holder_is_user():
        return users
    from example_project.workspaces.models import Workspace

    return Workspace.objects.bulk_create(
        Workspace(name=u.username, slug=u.username, owner=u) for u in users
    )


def person(holder):
    """The user who acts for ``holder``: the holder itself when it is a user, else the
    workspace's owner (the one its pages and API resolve to, ``HOLDER_FROM_REQUEST``)."""
    return holder if isinstance(holder, get_user_model()) else holder.owner


def holder_name(holder):
    """How ``user_credits_expire`` names ``holder``: a username, or a workspace's slug."""
    return holder.get_username() if holder_is_user() else holder.slug


def make_group(key=None, name=None):
    key = key or f"group{next(_seq)}"
    return OfferGroup.objects.get_or_create(key=key, defaults={"name": name or key})[0]


def make_offer(name=None, *, group=None, tags=(), unlocked_by=(), **fields):
    fields.setdefault("price", Decimal("10"))
    fields.setdefault("currency", "usd")
    fields.setdefault("token_count", 100)
    fields.setdefault("cycle", Cycle.MONTHLY)
    offer = Offer.objects.create(
        name=name or f"offer{next(_seq)}",
        offer_group=group if isinstance(group, OfferGroup) else make_group(group),
        **fields,
    )
    if tags:
        from user_credits.models import Tag

        offer.tags.set([Tag.objects.get_or_create(name=t)[0] for t in tags])
    if unlocked_by:
        offer.unlocked_by.set(
            [g if isinstance(g, OfferGroup) else make_group(g) for g in unlocked_by]
        )
    return offer


# --- the test catalog ----------------------------------------------------------------------
# Subscriptions in three plans, each with a Standard and a cheaper EarlyBird edition; event
# talks sold as token packs, with a VIP talk that early birds (and ScaleUp) unlock; a mobile
# bundle of three items. Offers are made in this order: lists follow it (``Offer`` orders by id).

PLANS = [  # (group, monthly price, tokens a month)
    ("Startup", Decimal("20"), 1_000),
    ("Business", Decimal("50"), 5_000),
    ("ScaleUp", Decimal("100"), 20_000),
]
EDITIONS = [("Standard", "", Decimal("1")), ("EarlyBird", "Eb", Decimal("0.8"))]


def make_plans():
    """``{"<plan> <edition> Monthly"|"… Yearly": offer}``: a yearly plan costs ten months and
    grants twelve; groups ``Startup``, ``EbStartup``, …; Business Standard is the popular one."""
    offers = {}
    for plan, monthly_price, tokens in PLANS:
        for edition, prefix, factor in EDITIONS:
            group = make_group(f"{prefix}{plan}", f"{plan} ({edition})")
            for cycle, months, grants in ((Cycle.MONTHLY, 1, 1), (Cycle.YEARLY, 10, 12)):
                name = f"{plan} {edition} {cycle.label.capitalize()}"
                offers[name] = make_offer(
                    name,
                    group=group,
                    kind=OfferKind.SUBSCRIPTION,
                    price=(monthly_price * months * factor).quantize(Decimal("0.01")),
                    token_count=tokens * grants,
                    cycle=cycle,
                    append_date=True,
                    popular=(plan, edition) == ("Business", "Standard"),
                    tags=("subscription", cycle.value, edition),
                )
    return offers


def make_free_tier():
    return make_offer(
        "Free",
        group=make_group("Free", "Free tier"),
        kind=OfferKind.SUBSCRIPTION,
        price=Decimal("0"),
        token_count=100,
        cycle=Cycle.MONTHLY,
        append_date=True,
        tags=("subscription", "monthly", "yearly"),
    )


def make_talks(vip_unlocked_by):
    """Token packs of the ``talks`` group, a never-expiring "EventTalk" and the "VIP EventTalk"
    that replaces it (weight 10) for buyers of ``vip_unlocked_by``."""
    talks = make_group("talks", "Event talks")
    pack = {"group": talks, "cycle": Cycle.YEARLY, "tags": ("tokens",)}
    talk = {
        "group": talks,
        "kind": OfferKind.EXPERTISE,
        "token_count": 1,
        "cycle": Cycle.ONCE,
        "overriding_key": "EventTalk",
        "tags": ("EventTalk",),
    }
    return {
        "1 Talk": make_offer("1 Talk", price=Decimal("30"), token_count=1, **pack),
        "3 Talks": make_offer("3 Talks", price=Decimal("80"), token_count=3, **pack),
        "EventTalk": make_offer("EventTalk", price=Decimal("50"), **talk),
        "VIP EventTalk": make_offer(
            "VIP EventTalk",
            price=Decimal("25"),
            weight=10,
            unlocked_by=vip_unlocked_by,
            **talk,
        ),
    }


def make_mobile_bundle():
    """The "Mobile Max" bundle (group ``mobile``, no tokens of its own) and its three items,
    one each: 120 ``calls``, 20 ``data``, 1 ``tv``."""
    items = [
        ("Calls 120 min", make_group("calls", "Call minutes"), 120),
        ("Data 20 GB", make_group("data", "Mobile data (GB)"), 20),
        ("Mobile TV", make_group("tv", "Mobile TV channels"), 1),
    ]
    bundle = make_offer(
        "Mobile Max",
        group=make_group("mobile", "Mobile plans"),
        price=Decimal("30"),
        token_count=None,
        tags=("mobile",),
    )
    offers = {"Mobile Max": bundle}
    for name, group, tokens in items:
        offers[name] = make_offer(
            name, group=group, price=Decimal("10"), token_count=tokens, tags=("mobile-option",)
        )
        bundle.bundle_items.create(offer=offers[name], quantity=1)
    return offers


#: The talks' prices in Kuwaiti dinars (three decimals).
KWD_PRICES = {
    "1 Talk": Decimal("9.250"),
    "3 Talks": Decimal("24.625"),
    "EventTalk": Decimal("15.375"),
    "VIP EventTalk": Decimal("7.750"),
}


def make_prices(offers):
    """Every offer also priced in EUR (90 % of its USD price), the talks in KWD too."""
    from user_credits.models import OfferPrice

    for name, offer in offers.items():
        prices = {"eur": (offer.price * Decimal("0.9")).quantize(Decimal("0.01"))}
        if name in KWD_PRICES:
            prices["kwd"] = KWD_PRICES[name]
        OfferPrice.objects.bulk_create(
            OfferPrice(offer=offer, currency=currency, price=price)
            for currency, price in prices.items()
        )


def make_catalog():
    """The whole test catalog, ``{offer name: offer}``, priced in USD, EUR and (talks) KWD."""
    offers = make_plans()
    offers["Free"] = make_free_tier()
    vip_unlockers = [make_group(key) for key in ("EbStartup", "EbBusiness", "EbScaleUp")]
    offers.update(make_talks(vip_unlocked_by=[*vip_unlockers, make_group("ScaleUp")]))
    offers.update(make_mobile_bundle())
    make_prices(offers)
    return offers


def buy(user, offer, **kwargs):
    """Create and pay an order (as a payment notification would)."""
    order = services.create_order(user, offer, **kwargs)
    return services.mark_paid(order, amount=order.total, currency=order.currency)


def assert_ledger_consistent():
    """For every account: balance = Σ ledger = Σ remaining of active lots − overdraft
    (= available + held), and every lot's held tokens are its active holds' lines."""
    for account in CreditAccount.objects.all():
        ledger = LedgerEntry.objects.filter(account=account).aggregate(s=Sum("amount"))["s"] or 0
        lots = (
            CreditLot.objects.filter(account=account, status=LotStatus.ACTIVE).aggregate(
                s=Sum("remaining")
            )["s"]
            or 0
        )
        assert account.balance == ledger, (account, account.balance, ledger)
        assert account.balance == lots - account.overdraft, (account, account.balance, lots)
        assert account.overdraft >= 0
    assert not CreditLot.objects.filter(remaining__lt=0).exists()
    # Held tokens: each lot's cache equals the lines of its active holds.
    from user_credits.models import HoldLine

    held = dict(
        HoldLine.objects.filter(hold__status="active")
        .values("lot")
        .annotate(total=Sum("count"))
        .values_list("lot", "total")
    )
    for lot in CreditLot.objects.filter(held__gt=0) | CreditLot.objects.filter(pk__in=held):
        assert lot.held == held.get(lot.pk, 0) <= lot.remaining, (lot, lot.held, held.get(lot.pk))


def table_snapshot():
    """Row counts of every table of the app, and the fields that writes change: every
    account's balance, every lot's, order's and hold's state, every hold line's count."""
    from user_credits import models

    counted = [
        models.Order,
        models.OrderEvent,
        models.CreditAccount,
        models.CreditLot,
        models.LedgerEntry,
        models.ConsumptionRecord,
        models.Hold,
        models.HoldLine,
    ]
    holds = models.Hold.objects.values_list(
        "pk", "status", "captured", "expires_at", "settled_at", "metadata"
    )
    return {
        "counts": {m.__name__: m.objects.count() for m in counted},
        "balances": sorted(CreditAccount.objects.values_list("pk", "balance", "overdraft")),
        "lots": sorted(CreditLot.objects.values_list("pk", "remaining", "status", "held")),
        "orders": sorted(models.Order.objects.values_list("pk", "status")),
        "holds": sorted(holds),
        "hold_lines": sorted(models.HoldLine.objects.values_list("pk", "lot", "count")),
    }
