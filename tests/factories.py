"""Plain factory functions: real rows, sensible defaults, keyword overrides."""

from decimal import Decimal
from itertools import count

from django.contrib.auth import get_user_model
from django.db.models import Sum

from user_credits import services
from user_credits.models import (
    CreditAccount,
    CreditLot,
    Cycle,
    LedgerEntry,
    LotStatus,
    Offer,
    OfferGroup,
)

_seq = count(1)


def make_user(username=None, **fields):
    username = username or f"user{next(_seq)}"
    return get_user_model().objects.create_user(username=username, password="pw", **fields)


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
    """Row counts of every table of the app, and every account's balance."""
    from user_credits import models

    counted = [
        models.Order,
        models.OrderEvent,
        models.CreditAccount,
        models.CreditLot,
        models.LedgerEntry,
        models.ConsumptionRecord,
    ]
    return {
        "counts": {m.__name__: m.objects.count() for m in counted},
        "balances": sorted(CreditAccount.objects.values_list("pk", "balance", "overdraft")),
        "lots": sorted(CreditLot.objects.values_list("pk", "remaining", "status", "held")),
        "orders": sorted(models.Order.objects.values_list("pk", "status")),
    }
