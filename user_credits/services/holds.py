"""Holds: reserve tokens before metered work, capture what was used, release the rest.

A hold reserves tokens lot by lot in burn order (``HoldLine``) and raises each lot's ``held``;
held tokens are not available to ``consume`` or to other holds. Capturing consumes from the
reserved lots (``consume`` ledger entries keyed ``hold:<id>``) and releases the rest; releasing
frees everything. A hold past its ``expires_at`` is released by ``expire_credits`` and by the
next write on its account. A held lot that expires (or is revoked by a refund) takes its held
tokens with it: the hold shrinks by that much.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from .. import signals
from ..conf import app_settings
from ..exceptions import (
    IdempotencyConflict,
    InvalidArgument,
    InvalidTransition,
)
from ..models import (
    CreditAccount,
    CreditLot,
    Hold,
    HoldLine,
    HoldStatus,
    LedgerEntry,
)
from .common import positive_int, resolve_group, send_on_commit, user_pk
from .credits import (
    BURN_ORDER,
    Consumption,
    _clean_key,
    _insufficient,
    _save_lots,
    active_lots,
    consume_entry,
    lock_account,
    split_due_lots,
)
from .reservations import free_lines, release_expired_holds


@dataclass(frozen=True)
class HoldResult:
    hold: Hold
    replayed: bool = False


# --- the services --------------------------------------------------------------------------


def hold(user, offer_group, count, *, ttl=None, idempotency_key=None, metadata=None) -> Hold:
    """Reserve ``count`` tokens (burn order, per lot) or raise ``InsufficientCredits``.

    ``ttl`` (a timedelta or seconds; default ``USER_CREDITS["HOLD_TTL"]``) bounds how long the
    reservation lives. The same ``idempotency_key`` returns the first hold (``replayed=True``
    on the returned object); with another group or count it raises ``IdempotencyConflict``.
    """
    count = positive_int(count)
    key = _clean_key(idempotency_key)
    ttl = _ttl(ttl)
    uid = user_pk(user)
    group = resolve_group(offer_group)
    with transaction.atomic():
        account = lock_account(uid, group, create=False)
        if key is not None:
            first = (
                Hold.objects.filter(user_id=uid, idempotency_key=key)
                .select_related("account")
                .first()
            )
            if first is not None:
                if first.account.offer_group_id != group.pk or first.count != count:
                    raise IdempotencyConflict(f"Idempotency key {key!r} was used for another hold.")
                first.replayed = True
                return first
        if account is None:
            raise _insufficient(group, count, 0)
        now = timezone.now()
        release_expired_holds(account, now)
        burnable = _burnable_lots(account, now)
        available = sum(lot.remaining - lot.held for lot in burnable)
        if available < count:
            raise _insufficient(group, count, available)
        new = Hold.objects.create(
            user_id=uid,
            account=account,
            count=count,
            expires_at=now + ttl,
            idempotency_key=key,
            metadata=metadata or {},
            created_at=now,
        )
        needed = count
        lines = []
        for lot in burnable:
            take = min(needed, lot.remaining - lot.held)
            if take <= 0:
                continue
            needed -= take
            CreditLot.objects.filter(pk=lot.pk).update(held=F("held") + take)
            lines.append(HoldLine(hold=new, lot=lot, count=take))
            if not needed:
                break
        HoldLine.objects.bulk_create(lines)
        new.replayed = False
        return new


def capture(hold, count=None, *, metadata=None, over="consume") -> Consumption:
    """Consume up to the held tokens (default: all of them) and release the rest.

    Capturing more than is held consumes the extra through the normal path (``over=
    "consume"``, which may raise ``InsufficientCredits``) or raises ``InvalidArgument``
    (``over="raise"``). A second capture returns the first result; a released or expired hold
    raises ``InvalidTransition``.
    """
    if over not in ("consume", "raise"):
        raise InvalidArgument("over must be 'consume' or 'raise'.")
    if count is not None:
        count = positive_int(count)
    with transaction.atomic():
        result = _capture(hold, count, metadata, over)
    if isinstance(result, InvalidTransition):
        # Raised once the transaction is over, so that releasing an expired hold sticks.
        raise result
    return result


def _capture(hold, count, metadata, over):
    account, hold = _lock(hold)
    key = f"hold:{hold.pk}"
    if hold.status == HoldStatus.CAPTURED:
        entries = list(
            LedgerEntry.objects.filter(account=account, idempotency_key=key).order_by("id")
        )
        balance = entries[-1].balance_after if entries else account.balance
        return Consumption(balance=balance, entries=entries, replayed=True)
    now = timezone.now()
    release_expired_holds(account, now)
    hold.refresh_from_db()
    if hold.status != HoldStatus.ACTIVE:
        return InvalidTransition(f"Hold #{hold.pk} is {hold.status}; it cannot be captured.")
    # Due lots first: they take their held tokens with them (the hold shrinks).
    burnable = _burnable_lots(account, now)
    lines = list(hold.lines.order_by("id"))
    held = sum(line.count for line in lines)
    wanted = held if count is None else count
    if wanted > held and over == "raise":
        raise InvalidArgument(f"{wanted} tokens asked, {held} held.")
    balance = account.balance
    entries = []
    left = wanted
    for line in lines:
        take = min(left, line.count)
        left -= take
        CreditLot.objects.filter(pk=line.lot_id).update(
            held=F("held") - line.count, remaining=F("remaining") - take
        )
        if take:
            balance -= take
            entries.append(consume_entry(account, line.lot_id, take, balance, key, metadata, now))
    if left:  # beyond what was held: the normal burn order, without other holds' tokens
        fresh = CreditLot.objects.filter(pk__in=[lot.pk for lot in burnable]).order_by(*BURN_ORDER)
        extra = [lot for lot in fresh if lot.remaining > lot.held]
        available = sum(lot.remaining - lot.held for lot in extra)
        if available < left:
            raise _insufficient(account.offer_group, left, available)
        for lot in extra:
            take = min(left, lot.remaining - lot.held)
            left -= take
            balance -= take
            CreditLot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - take)
            entries.append(consume_entry(account, lot.pk, take, balance, key, metadata, now))
            if not left:
                break
    LedgerEntry.objects.bulk_create(entries)
    CreditAccount.objects.filter(pk=account.pk).update(balance=balance)
    hold.status, hold.captured, hold.settled_at = HoldStatus.CAPTURED, wanted, now
    hold.save(update_fields=["status", "captured", "settled_at"])
    if wanted:
        send_on_commit(
            signals.credits_consumed,
            user_id=hold.user_id,
            offer_group=account.offer_group.key,
            count=wanted,
            balance=balance,
            entries=entries,
        )
    return Consumption(balance=balance, entries=entries)


def release(hold) -> Hold:
    """Free every token of an active hold. Releasing a settled hold changes nothing."""
    with transaction.atomic():
        account, hold = _lock(hold)
        if hold.status != HoldStatus.ACTIVE:
            return hold
        free_lines(hold)
        hold.status, hold.settled_at = HoldStatus.RELEASED, timezone.now()
        hold.save(update_fields=["status", "settled_at"])
        return hold


def held_tokens(hold) -> int:
    """Tokens a hold still reserves (it shrinks when a held lot expires)."""
    if hold.status != HoldStatus.ACTIVE:
        return 0
    return hold.lines.aggregate(total=Sum("count"))["total"] or 0


# --- helpers -------------------------------------------------------------------------------


def _ttl(ttl):
    if ttl is None:
        ttl = app_settings.HOLD_TTL
    if isinstance(ttl, int | float) and not isinstance(ttl, bool):
        ttl = timedelta(seconds=ttl)
    if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
        raise InvalidArgument("ttl must be a positive timedelta or number of seconds.")
    return ttl


def _lock(hold):
    """Lock the hold's account, then the hold (the order every write takes)."""
    pk = hold.pk if isinstance(hold, Hold) else hold
    try:
        account_id = Hold.objects.values_list("account_id", flat=True).get(pk=pk)
    except (Hold.DoesNotExist, ValueError, TypeError):
        raise InvalidArgument(f"Unknown hold {hold!r}.") from None
    account = (
        CreditAccount.objects.select_for_update(of=("self",))
        .select_related("offer_group")
        .get(pk=account_id)
    )
    return account, Hold.objects.select_for_update().get(pk=pk)


def _burnable_lots(account, now):
    """The account's lots in burn order; due ones are expired first, and saved."""
    burnable, emptied, entries, balance = split_due_lots(account, active_lots(account), now)
    if emptied:
        _save_lots(emptied)
        LedgerEntry.objects.bulk_create(entries)
        CreditAccount.objects.filter(pk=account.pk).update(balance=balance)
        account.balance = balance
    return burnable
