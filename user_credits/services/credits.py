"""Token lots and the ledger: grants, consumption and balance reads.

Every write locks the ``CreditAccount`` row first; lots and ledger entries of an account are
only written under that lock, so absolute values can be written back safely.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Case, F, IntegerField, Prefetch, Q, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import signals
from ..conf import app_settings
from ..exceptions import IdempotencyConflict, InsufficientCredits, InvalidArgument
from ..models import (
    ConsumptionRecord,
    CreditAccount,
    CreditLot,
    EntryKind,
    LedgerEntry,
    LotCategory,
    LotStatus,
    OfferGroup,
)
from . import postgres
from .common import positive_int, resolve_group, send_on_commit, user_pk
from .reservations import drop_held_tokens, release_expired_holds

#: Lots burn by priority, then soonest expiry (never-expiring last), promotional before
#: paid, then oldest.
BURN_ORDER = (
    "priority",
    F("expires").asc(nulls_last=True),
    Case(
        When(category=LotCategory.PROMOTIONAL, then=Value(0)),
        default=Value(1),
        output_field=IntegerField(),
    ),
    "id",
)


@dataclass(frozen=True)
class Consumption:
    balance: int
    entries: list = field(default_factory=list)
    replayed: bool = False


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
    balance: int
    held: int
    overdraft: int
    starts: datetime | None
    expires: datetime | None
    lots: list[LotCredits]


def live_lots_q(now, prefix=""):
    """Lots that count in a balance at ``now``: active, with tokens, not past their expiry."""
    p = prefix
    return Q(**{f"{p}status": LotStatus.ACTIVE, f"{p}remaining__gt": 0}) & (
        Q(**{f"{p}expires__isnull": True}) | Q(**{f"{p}expires__gt": now})
    )


# --- locking -----------------------------------------------------------------------------


def lock_account(user_id, group: OfferGroup, *, create=True) -> CreditAccount | None:
    """Lock (and with ``create`` make) the user's account in ``group``. Call inside atomic."""
    locked = CreditAccount.objects.select_for_update()
    account = locked.filter(user_id=user_id, offer_group=group).first()
    if account is None and create:
        try:
            with transaction.atomic():
                # The new row stays locked by this transaction until it ends.
                account = CreditAccount.objects.create(user_id=user_id, offer_group=group)
        except IntegrityError:  # created meanwhile by another transaction: wait for it
            account = locked.get(user_id=user_id, offer_group=group)
    if account is not None:
        account.offer_group = group
    return account


def lock_accounts(user_id, groups) -> dict[int, CreditAccount]:
    """Lock several of a user's accounts, always in group id order (no deadlock)."""
    unique = {g.pk: g for g in groups}
    return {pk: lock_account(user_id, unique[pk]) for pk in sorted(unique)}


# --- writes ------------------------------------------------------------------------------


def add_lot(
    account: CreditAccount,
    *,
    tokens: int,
    starts: datetime,
    expires: datetime | None,
    category: str,
    order=None,
    reason: str = "",
    priority: int = 50,
) -> CreditLot:
    """Grant ``tokens`` to a locked account; an outstanding overdraft is settled first."""
    settled = min(account.overdraft, tokens)
    lot = CreditLot.objects.create(
        account=account,
        order=order,
        granted=tokens,
        remaining=tokens - settled,
        starts=starts,
        expires=expires,
        category=category,
        priority=priority,
        reason=reason,
    )
    account.balance += tokens
    account.overdraft -= settled
    metadata = {"order": order.pk} if order is not None else {}
    if reason:
        metadata["reason"] = reason
    if settled:
        metadata["settled_overdraft"] = settled
    LedgerEntry.objects.create(
        account=account,
        lot=lot,
        kind=EntryKind.GRANT,
        amount=tokens,
        balance_after=account.balance,
        metadata=metadata,
    )
    account.save(update_fields=["balance", "overdraft"])
    send_on_commit(
        signals.credits_granted,
        user_id=account.user_id,
        offer_group=account.offer_group.key,
        lot=lot,
    )
    return lot


def grant(
    user,
    offer_group,
    tokens: int,
    *,
    expires: datetime | None = None,
    category: str = LotCategory.PROMOTIONAL,
    reason: str = "",
    priority: int = 50,
) -> CreditLot:
    """Grant tokens by hand (a promotion, a goodwill gesture), with a reason in the ledger."""
    tokens = positive_int(tokens, "tokens")
    if category not in LotCategory.values:
        raise InvalidArgument(f"category must be one of {', '.join(LotCategory.values)}.")
    now = timezone.now()
    if expires is not None and expires <= now:
        raise InvalidArgument("expires must be in the future.")
    uid = user_pk(user)
    group = resolve_group(offer_group)
    with transaction.atomic():
        account = lock_account(uid, group)
        return add_lot(
            account,
            tokens=tokens,
            starts=now,
            expires=expires,
            category=category,
            reason=reason,
            priority=priority,
        )


def _expire_entry(account, lot, now, balance):
    return LedgerEntry(
        account=account,
        lot=lot,
        kind=EntryKind.EXPIRE,
        amount=-lot.remaining,
        balance_after=balance,
        created_at=now,
    )


def consume_entry(account, lot_id, take, balance, key, metadata, now):
    return LedgerEntry(
        account=account,
        lot_id=lot_id,
        kind=EntryKind.CONSUME,
        amount=-take,
        balance_after=balance,
        idempotency_key=key,
        metadata=metadata or {},
        created_at=now,
    )


def _clean_key(idempotency_key):
    if idempotency_key is None:
        return None
    key = str(idempotency_key)
    if not key or len(key) > 255:
        raise InvalidArgument("idempotency_key must be 1 to 255 characters.")
    return key


def _replay(user_id, key, group, count) -> Consumption | None:
    record = (
        ConsumptionRecord.objects.filter(user_id=user_id, idempotency_key=key)
        .select_related("account")
        .first()
    )
    if record is None:
        return None
    if record.account.offer_group_id != group.pk or record.count != count:
        raise IdempotencyConflict(
            f"Idempotency key {key!r} was used for {record.count} token(s) in another request."
        )
    entries = list(
        LedgerEntry.objects.filter(account=record.account, idempotency_key=key).order_by("id")
    )
    return Consumption(balance=record.balance_after, entries=entries, replayed=True)


def consume(user, offer_group, count, *, idempotency_key=None, metadata=None) -> Consumption:
    """Burn ``count`` tokens of the user's account in ``offer_group``, atomically.

    Due lots are expired first; tokens are then taken in ``BURN_ORDER``, one ledger entry per
    lot touched. Not enough tokens raises ``InsufficientCredits`` and writes nothing, unless
    overdraft is allowed for the group. A repeated ``idempotency_key`` returns the first result.
    """
    count = positive_int(count)
    key = _clean_key(idempotency_key)
    uid = user_pk(user)
    group = resolve_group(offer_group)
    try:
        return _consume(uid, group, count, key, metadata or {})
    except IntegrityError:
        if key is None:
            raise
        # The same key was recorded concurrently for another account: replay or conflict.
        with transaction.atomic():
            replay = _replay(uid, key, group, count)
        if replay is None:
            raise
        return replay


def _consume(uid, group, count, key, metadata) -> Consumption:
    overdraft_allowed = app_settings.overdraft_allowed(group.key)
    connection = connections[router.db_for_write(CreditAccount)]
    if connection.vendor == "postgresql":
        args = (connection, uid, group, count, key, metadata, overdraft_allowed)
        if connection.in_atomic_block:
            # A savepoint keeps the caller's transaction usable if the call fails.
            with transaction.atomic(using=connection.alias):
                result = _consume_postgresql(*args)
        else:
            # In autocommit the single statement is its own transaction: one round trip.
            result = _consume_postgresql(*args)
        if result is not None:
            return result
    with transaction.atomic(using=connection.alias):
        return _consume_portable(uid, group, count, key, metadata, overdraft_allowed)


def _insufficient(group, count, available):
    return InsufficientCredits(
        f"Not enough tokens in {group.key}: {count} requested, {available} available.",
        requested=count,
        available=available,
    )


def _consumed(uid, group, count, balance, entries):
    send_on_commit(
        signals.credits_consumed,
        user_id=uid,
        offer_group=group.key,
        count=count,
        balance=balance,
        entries=entries,
    )
    return Consumption(balance=balance, entries=entries)


def _consume_postgresql(connection, uid, group, count, key, metadata, overdraft_allowed):
    """One round trip; ``None`` leaves a replay or a missing account to the portable path."""
    now = timezone.now()
    result = postgres.consume(
        connection,
        user_id=uid,
        group_id=group.pk,
        count=count,
        key=key,
        metadata=metadata,
        now=now,
        overdraft=overdraft_allowed,
    )
    status = result["status"]
    if status == "insufficient":
        raise _insufficient(group, count, result["available"])
    if status != "ok":
        return None
    entries = []
    for row in result["entries"]:
        entry = LedgerEntry(
            id=row["id"],
            account_id=result["account"],
            lot_id=row["lot"],
            kind=row["kind"],
            amount=row["amount"],
            balance_after=row["balance_after"],
            idempotency_key=key,
            metadata=metadata,
            created_at=now,
        )
        entry._state.adding = False
        entry._state.db = connection.alias
        entries.append(entry)
    return _consumed(uid, group, count, result["balance"], entries)


def _consume_portable(uid, group, count, key, metadata, overdraft_allowed) -> Consumption:
    account = lock_account(uid, group, create=overdraft_allowed)
    if key is not None:
        replay = _replay(uid, key, group, count)
        if replay is not None:
            return replay
    if account is None:
        raise _insufficient(group, count, 0)
    now = timezone.now()
    lots = active_lots(account)
    # Holds past their time are released by this write; only held lots can have them.
    if any(lot.held for lot in lots) and release_expired_holds(account, now):
        lots = active_lots(account)
    burnable, changed, entries, balance = split_due_lots(account, lots, now)
    # Tokens reserved by holds are not available.
    available = sum(lot.remaining - lot.held for lot in burnable)
    if available < count and not overdraft_allowed:
        raise _insufficient(group, count, available)
    needed = count
    consumed = []
    for lot in burnable:
        if not needed:
            break
        take = min(needed, lot.remaining - lot.held)
        if take <= 0:
            continue
        needed -= take
        balance -= take
        lot.remaining -= take
        changed.append(lot)
        consumed.append(consume_entry(account, lot.pk, take, balance, key, metadata, now))
    if needed:
        balance -= needed
        account.overdraft += needed
        consumed.append(
            LedgerEntry(
                account=account,
                kind=EntryKind.OVERDRAFT,
                amount=-needed,
                balance_after=balance,
                idempotency_key=key,
                metadata=metadata,
                created_at=now,
            )
        )
    _save_lots(changed)
    LedgerEntry.objects.bulk_create(entries + consumed)
    account.balance = balance
    CreditAccount.objects.filter(pk=account.pk).update(balance=balance, overdraft=account.overdraft)
    if key is not None:
        ConsumptionRecord.objects.create(
            user_id=uid,
            account=account,
            idempotency_key=key,
            count=count,
            balance_after=balance,
        )
    return _consumed(uid, group, count, balance, consumed)


def split_due_lots(account, lots, now):
    """Split an account's active lots (burn order, account locked) into burnable ones and due
    ones. The due ones are emptied in memory (their held tokens dropped from their holds) and
    get an ``expire`` entry each, not yet saved. Returns
    ``(burnable, emptied, entries, balance after)``."""
    balance = account.balance
    burnable, emptied, entries = [], [], []
    for lot in lots:
        if lot.expires is None or lot.expires > now:
            burnable.append(lot)
            continue
        balance -= lot.remaining
        entries.append(_expire_entry(account, lot, now, balance))
        if lot.held:
            drop_held_tokens(lot, lot.held)
        lot.remaining, lot.held, lot.status = 0, 0, LotStatus.EXPIRED
        emptied.append(lot)
    return burnable, emptied, entries, balance


def active_lots(account):
    return list(
        CreditLot.objects.filter(
            account=account, status=LotStatus.ACTIVE, remaining__gt=0
        ).order_by(*BURN_ORDER)
    )


def _save_lots(lots):
    if len(lots) == 1:
        lot = lots[0]
        CreditLot.objects.filter(pk=lot.pk).update(
            remaining=lot.remaining, status=lot.status, held=lot.held
        )
    elif lots:
        CreditLot.objects.bulk_update(lots, ["remaining", "status", "held"])


# --- reads -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BalanceDetail:
    available: int
    held: int
    balance: int  # available + held: what the ledger says


def _account_filter(offer_group):
    if isinstance(offer_group, OfferGroup):
        return {"offer_group": offer_group}
    return {"offer_group__key": offer_group}


def get_balance(user, offer_group, *, at=None) -> int:
    """Tokens the user can spend now in ``offer_group`` (one query): expired lots never count,
    tokens reserved by holds neither. With ``at``, the balance the ledger recorded at that
    instant (the last entry's ``balance_after``; held tokens included)."""
    if at is not None:
        return _balance_at(user, offer_group, at)
    return get_balance_detail(user, offer_group).available


def get_balance_detail(user, offer_group) -> BalanceDetail:
    """Available, held and total tokens of the user in ``offer_group`` (one query)."""
    uid = user_pk(user)
    live = live_lots_q(timezone.now(), "lots__")
    row = (
        CreditAccount.objects.filter(user_id=uid, **_account_filter(offer_group))
        .annotate(
            live=Coalesce(Sum("lots__remaining", filter=live), 0),
            held=Coalesce(Sum("lots__held", filter=live), 0),
        )
        .values_list("live", "held", "overdraft")
        .first()
    )
    if row is None:
        resolve_group(offer_group)  # an unknown group is an error, not an empty balance
        return BalanceDetail(available=0, held=0, balance=0)
    live_tokens, held, overdraft = row
    return BalanceDetail(
        available=live_tokens - held - overdraft, held=held, balance=live_tokens - overdraft
    )


def _balance_at(user, offer_group, at) -> int:
    where = (
        {"account__offer_group": offer_group}
        if isinstance(offer_group, OfferGroup)
        else {"account__offer_group__key": offer_group}
    )
    row = (
        LedgerEntry.objects.filter(account__user_id=user_pk(user), created_at__lte=at, **where)
        .order_by("-created_at", "-id")
        .values_list("balance_after", flat=True)
        .first()
    )
    if row is None:
        resolve_group(offer_group)
        return 0
    return row


def get_user_credits(user) -> list[GroupCredits]:
    """Per offer group: balance, period and unexpired lots (two queries)."""
    uid = user_pk(user)
    now = timezone.now()
    lots = CreditLot.objects.filter(
        Q(status=LotStatus.ACTIVE) & (Q(expires__isnull=True) | Q(expires__gt=now))
    ).order_by(*BURN_ORDER)
    accounts = (
        CreditAccount.objects.filter(user_id=uid)
        .select_related("offer_group")
        .prefetch_related(Prefetch("lots", queryset=lots, to_attr="live_lots"))
        .order_by("offer_group__key")
    )
    result = []
    for account in accounts:
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
        expiries = [lot.expires for lot in live]
        result.append(
            GroupCredits(
                offer_group=account.offer_group.key,
                name=account.offer_group.name,
                balance=sum(lot.remaining - lot.held for lot in live) - account.overdraft,
                held=sum(lot.held for lot in live),
                overdraft=account.overdraft,
                starts=min((lot.starts for lot in live), default=None),
                expires=None if not live or None in expiries else max(expiries),
                lots=live,
            )
        )
    return result
