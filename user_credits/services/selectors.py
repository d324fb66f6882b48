"""Reads that apply the rules: balances and credits per offer group.

One meaning per name: ``available`` (tokens that can be spent now), ``held`` (reserved by
holds) and ``total`` (= available + held). Expired lots never count, even before the expiry
command has run.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import F, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..models import CreditAccount, CreditLot, LedgerEntry, LotStatus, OfferGroup
from .allocation import BURN_ORDER
from .common import holder_pk, resolve_group
from .ledger import live_lots_q


@dataclass(frozen=True)
class BalanceDetail:
    available: int
    held: int
    total: int


@dataclass(frozen=True)
class LotCredits:
    id: int
    order: int | None
    granted: int
    remaining: int
    held: int
    starts: datetime
    expires: datetime | None
    category: str


@dataclass(frozen=True)
class GroupCredits:
    offer_group: str
    name: str
    available: int
    held: int
    total: int
    overdraft: int
    starts: datetime | None
    expires: datetime | None
    lots: list[LotCredits]

    @property
    def balance(self) -> int:
        """Deprecated alias of ``available`` (removed in 1.0)."""
        return self.available


def _account_filter(offer_group: OfferGroup | str, prefix: str = "") -> dict:
    if isinstance(offer_group, OfferGroup):
        return {f"{prefix}offer_group": offer_group}
    return {f"{prefix}offer_group__key": offer_group}


def get_balance(holder: Any, offer_group: OfferGroup | str, *, at: datetime | None = None) -> int:
    """Tokens the user can spend now in ``offer_group`` (one query): expired lots never count,
    tokens reserved by holds neither. With ``at``, the balance the ledger recorded at that
    instant (the last entry's ``balance_after``; held tokens included)."""
    if at is not None:
        return _balance_at(holder, offer_group, at)
    return get_balance_detail(holder, offer_group).available


def with_balances(accounts: QuerySet, now: datetime | None = None) -> QuerySet:
    """Annotate accounts with ``available``, ``held`` and ``total`` tokens at ``now``."""
    live = live_lots_q(now or timezone.now(), "lots__")
    return accounts.annotate(
        total=Coalesce(Sum("lots__remaining", filter=live), 0) - F("overdraft"),
        held=Coalesce(Sum("lots__held", filter=live), 0),
    ).annotate(available=F("total") - F("held"))


def get_balance_detail(holder: Any, offer_group: OfferGroup | str) -> BalanceDetail:
    """Available, held and total tokens of the user in ``offer_group`` (one query)."""
    uid = holder_pk(holder)
    row = (
        with_balances(CreditAccount.objects.filter(holder_id=uid, **_account_filter(offer_group)))
        .values_list("available", "held", "total")
        .first()
    )
    if row is None:
        resolve_group(offer_group)  # an unknown group is an error, not an empty balance
        return BalanceDetail(available=0, held=0, total=0)
    available, held, total = row
    return BalanceDetail(available=available, held=held, total=total)


def _balance_at(holder, offer_group, at) -> int:
    # The account as a scalar subquery, not a join: the entries are then read backwards from
    # ``at`` on the (account, created_at, id) index, one row whatever the ledger's length.
    account = CreditAccount.objects.filter(
        holder_id=holder_pk(holder), **_account_filter(offer_group)
    ).values("pk")[:1]
    row = (
        LedgerEntry.objects.filter(account_id=Subquery(account), created_at__lte=at)
        .order_by("-created_at", "-id")
        .values_list("balance_after", flat=True)
        .first()
    )
    if row is None:
        resolve_group(offer_group)
        return 0
    return row


def get_user_credits(holder: Any) -> list[GroupCredits]:
    """Per offer group: tokens, period and unexpired lots (two queries)."""
    uid = holder_pk(holder)
    now = timezone.now()
    # Spent lots of the current period are listed too (remaining 0).
    unexpired = Q(status=LotStatus.ACTIVE) & (Q(expires__isnull=True) | Q(expires__gt=now))
    lots = CreditLot.objects.filter(unexpired).order_by(*BURN_ORDER)
    accounts = (
        CreditAccount.objects.filter(holder_id=uid)
        .select_related("offer_group")
        .prefetch_related(Prefetch("lots", queryset=lots, to_attr="live_lots"))
        .order_by("offer_group__key")
    )
    return [_group_credits(account) for account in accounts]


def _group_credits(account: CreditAccount) -> GroupCredits:
    live = [
        LotCredits(
            id=lot.pk,
            order=lot.order_id,
            granted=lot.granted,
            remaining=lot.remaining,
            held=lot.held,
            starts=lot.starts,
            expires=lot.expires,
            category=lot.category,
        )
        for lot in account.live_lots
    ]
    held = sum(lot.held for lot in live)
    total = sum(lot.remaining for lot in live) - account.overdraft
    expiries = [lot.expires for lot in live]
    return GroupCredits(
        offer_group=account.offer_group.key,
        name=account.offer_group.name,
        available=total - held,
        held=held,
        total=total,
        overdraft=account.overdraft,
        starts=min((lot.starts for lot in live), default=None),
        expires=None if not live or None in expiries else max(expiries),
        lots=live,
    )
