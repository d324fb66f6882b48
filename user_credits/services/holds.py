"""Holds: reserve tokens before metered work, capture what was used, release the rest.

A hold reserves tokens lot by lot in burn order (``HoldLine``) and raises each lot's ``held``;
held tokens are not available to ``consume`` or to other holds. Capturing consumes from the
reserved lots (``consume`` ledger entries keyed ``hold:<id>``) and releases the rest; releasing
frees everything. A hold past its ``expires_at`` is released by ``expire_credits`` and by the
next write on its account. A held lot that expires (or is revoked by a refund) takes its held
tokens with it: the hold shrinks by that much.
"""

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.translation import gettext

from .. import signals
from ..conf import app_settings
from ..exceptions import IdempotencyConflict, InvalidArgument, InvalidTransition
from ..models import (
    CreditAccount,
    CreditLot,
    EntryKind,
    Hold,
    HoldLine,
    HoldStatus,
    LedgerEntry,
    LotStatus,
    OfferGroup,
)
from .allocation import BURN_ORDER, allocate
from .common import (
    clean_key,
    holder_pk,
    positive_int,
    resolve_group,
    send_on_commit,
    waits_as_busy,
)
from .consumption import Consumption, insufficient
from .ledger import LedgerWriter, active_lots, expire_due_lots, lock_account, save_lots
from .recharge import recharge_if_low
from .reservations import free_lines, release_expired_holds
from .spending import authorize, check_limit


def hold(
    holder: Any,
    offer_group: OfferGroup | str,
    count: int,
    *,
    ttl: timedelta | int | float | None = None,
    idempotency_key: str | None = None,
    metadata: dict | None = None,
    member: Any = None,
) -> Hold:
    """Reserve ``count`` tokens (burn order, per lot) or raise ``InsufficientCredits``.

    ``ttl`` (a timedelta or seconds; default ``USER_CREDITS["HOLD_TTL"]``) bounds how long the
    reservation lives. The same ``idempotency_key`` returns the first hold (with
    ``hold.replayed`` true); with another group or count it raises ``IdempotencyConflict``.
    ``member``: the user holding for the holder (as for ``consume``); the held tokens count
    against their spending limit until the hold is settled.
    """
    count = positive_int(count)
    key = clean_key(idempotency_key)
    ttl = _ttl(ttl)
    uid = holder_pk(holder)
    group = resolve_group(offer_group)
    mid = authorize(member, holder)
    with (
        waits_as_busy(gettext("The %(group)s account") % {"group": group.key}),
        transaction.atomic(),
    ):
        account = lock_account(uid, group, create=False)
        if key is not None:
            first = (
                Hold.objects.filter(holder_id=uid, idempotency_key=key)
                .select_related("account")
                .first()
            )
            if first is not None:
                if first.account.offer_group_id != group.pk or first.count != count:
                    raise IdempotencyConflict(
                        gettext("Idempotency key %(key)r was used for another hold.")
                        % {"key": key},
                        field="idempotency_key",
                    )
                first.replayed = True
                return first
        if account is None:
            raise insufficient(group, count, 0)
        now = timezone.now()
        release_expired_holds(account, now)
        burnable = _burnable_lots(account, now)
        check_limit(account, mid, count, now)
        takes, shortfall = allocate(burnable, count)
        if shortfall:
            raise insufficient(group, count, count - shortfall)
        new = Hold.objects.create(
            holder_id=uid,
            member_id=mid,
            account=account,
            count=count,
            expires_at=now + ttl,
            idempotency_key=key,
            metadata=metadata or {},
            created_at=now,
        )
        for lot, take in takes:
            CreditLot.objects.filter(pk=lot.pk).update(held=F("held") + take)
        HoldLine.objects.bulk_create(HoldLine(hold=new, lot=lot, count=take) for lot, take in takes)
        if account.auto_recharge_below is not None:  # held tokens are not available
            available = account.balance - _held_on(account)
            recharge_if_low(uid, group.pk, available, account.auto_recharge_below)
        return new


def capture(
    hold: Hold | int,
    count: int | None = None,
    *,
    metadata: dict | None = None,
    over: str = "consume",
    member: Any = None,
) -> Consumption:
    """Consume up to the held tokens (default: all of them) and release the rest.

    Capturing more than is held consumes the extra through the normal path (``over=
    "consume"``, which may raise ``InsufficientCredits``) or raises ``InvalidArgument``
    (``over="raise"``). A second capture returns the first result; a released or expired hold
    raises ``InvalidTransition``. The entries are the hold's ``member``'s (or ``member``'s, who
    must be allowed to spend the holder's credits); tokens beyond the held ones count against
    their spending limit.
    """
    if over not in ("consume", "raise"):
        raise InvalidArgument(gettext("over must be 'consume' or 'raise'."), field="over")
    if count is not None:
        count = positive_int(count)
    with (
        waits_as_busy(
            gettext("The account of hold #%(hold)s") % {"hold": getattr(hold, "pk", hold)}
        ),
        transaction.atomic(),
    ):
        account, locked = _lock(hold)
        mid = locked.member_id if member is None else authorize(member, locked.holder_id)
        now = timezone.now()
        if locked.status != HoldStatus.ACTIVE or locked.expires_at > now:
            return _capture(account, locked, count, metadata or {}, over, now, mid)
        release_expired_holds(account, now)
    # Raised once the release is committed: a hold past its time stays released.
    raise _not_capturable(locked.pk, HoldStatus.EXPIRED)


def _not_capturable(pk, status) -> InvalidTransition:
    return InvalidTransition(
        gettext("Hold #%(hold)s is %(status)s; it cannot be captured.")
        % {"hold": pk, "status": status},
        field="hold",
    )


def _capture(account, hold, count, metadata, over, now, mid=None) -> Consumption:
    key = f"hold:{hold.pk}"
    if hold.status == HoldStatus.CAPTURED:
        entries = list(
            LedgerEntry.objects.filter(account=account, idempotency_key=key).order_by("id")
        )
        return Consumption(balance=hold.available_after, entries=entries, replayed=True)
    if hold.status != HoldStatus.ACTIVE:
        raise _not_capturable(hold.pk, hold.status)
    release_expired_holds(account, now)  # the account's other holds past their time
    # Due lots first: they take their held tokens with them (the hold shrinks).
    burnable = _burnable_lots(account, now)
    lines = list(hold.lines.order_by("id"))
    held = sum(line.count for line in lines)
    wanted = held if count is None else count
    if wanted > held and over == "raise":
        raise InvalidArgument(
            gettext("%(wanted)s tokens asked, %(held)s held.") % {"wanted": wanted, "held": held},
            field="count",
        )
    writer = LedgerWriter(account, now)
    takes = dict(allocate(lines, wanted, capacity=lambda line: line.count)[0])
    for line in lines:
        take = takes.get(line, 0)
        CreditLot.objects.filter(pk=line.lot_id).update(
            held=F("held") - line.count, remaining=F("remaining") - take
        )
        if take:
            writer.add(
                EntryKind.CONSUME,
                -take,
                lot_id=line.lot_id,
                key=key,
                metadata=metadata,
                member_id=mid,
            )
    left = wanted - sum(takes.values())
    if left:  # beyond what was held: the normal burn order, without other holds' tokens
        # The member's limit: spent this period, their other holds, and the whole capture.
        check_limit(account, mid, wanted, now, exclude_hold=hold.pk)
        fresh = CreditLot.objects.filter(pk__in=[lot.pk for lot in burnable]).order_by(*BURN_ORDER)
        extra, shortfall = allocate(fresh, left)
        if shortfall:
            raise insufficient(account.offer_group, left, left - shortfall)
        for lot, take in extra:
            CreditLot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - take)
            writer.add(
                EntryKind.CONSUME, -take, lot_id=lot.pk, key=key, metadata=metadata, member_id=mid
            )
    writer.save()
    available = account.balance - _held_on(account)
    hold.status, hold.captured, hold.settled_at = HoldStatus.CAPTURED, wanted, now
    hold.available_after = available
    hold.save(update_fields=["status", "captured", "settled_at", "available_after"])
    recharge_if_low(hold.holder_id, account.offer_group_id, available, account.auto_recharge_below)
    if wanted:
        send_on_commit(
            signals.credits_consumed,
            user_id=hold.holder_id,
            offer_group=account.offer_group.key,
            count=wanted,
            balance=available,
            entries=writer.entries,
        )
    return Consumption(balance=available, entries=writer.entries)


def release(hold: Hold | int) -> Hold:
    """Free every token of an active hold. Releasing a settled hold changes nothing."""
    with transaction.atomic():
        account, hold = _lock(hold)
        if hold.status != HoldStatus.ACTIVE:
            return hold
        free_lines(hold)
        hold.status, hold.settled_at = HoldStatus.RELEASED, timezone.now()
        hold.save(update_fields=["status", "settled_at"])
        return hold


def held_tokens(hold: Hold) -> int:
    """Tokens a hold still reserves (it shrinks when a held lot expires)."""
    if hold.status != HoldStatus.ACTIVE:
        return 0
    return hold.lines.aggregate(total=Sum("count"))["total"] or 0


# --- helpers -------------------------------------------------------------------------------


def _ttl(ttl) -> timedelta:
    if ttl is None:
        ttl = app_settings.HOLD_TTL
    if isinstance(ttl, int | float) and not isinstance(ttl, bool):
        ttl = timedelta(seconds=ttl)
    if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
        raise InvalidArgument(
            gettext("ttl must be a positive timedelta or number of seconds."), field="ttl"
        )
    return ttl


def _lock(hold) -> tuple[CreditAccount, Hold]:
    """Lock the hold's account, then the hold (the order every write takes)."""
    pk = hold.pk if isinstance(hold, Hold) else hold
    try:
        account_id = Hold.objects.values_list("account_id", flat=True).get(pk=pk)
    except (Hold.DoesNotExist, ValueError, TypeError):
        raise InvalidArgument(
            gettext("Unknown hold %(hold)r.") % {"hold": hold}, field="hold"
        ) from None
    account = (
        CreditAccount.objects.select_for_update(of=("self",))
        .select_related("offer_group")
        .get(pk=account_id)
    )
    return account, Hold.objects.select_for_update().get(pk=pk)


def _held_on(account: CreditAccount) -> int:
    """Tokens of the account's live lots reserved by holds."""
    return (
        CreditLot.objects.filter(account=account, status=LotStatus.ACTIVE).aggregate(
            held=Sum("held")
        )["held"]
        or 0
    )


def _burnable_lots(account: CreditAccount, now: datetime) -> list[CreditLot]:
    """The account's lots in burn order; due ones are expired first, and saved."""
    writer = LedgerWriter(account, now)
    burnable, expired = expire_due_lots(writer, active_lots(account))
    if expired:
        save_lots(expired)
        writer.save()
    return burnable
