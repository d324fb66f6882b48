"""Consumption: burn a holder's tokens, atomically and idempotently.

Two paths do the same thing: ``consume_portable`` (the ORM, every database) and, on
PostgreSQL, the ``user_credits_consume`` function (``sql``), one round trip. The differential
test runs the same operations through both and compares every row.
"""

from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone
from django.utils.translation import gettext

from .. import signals
from ..conf import app_settings
from ..exceptions import IdempotencyConflict, InsufficientCredits
from ..models import ConsumptionRecord, CreditAccount, EntryKind, LedgerEntry, OfferGroup
from . import sql
from .allocation import allocate
from .common import (
    clean_key,
    holder_pk,
    positive_int,
    resolve_group,
    send_on_commit,
    waits_as_busy,
)
from .ledger import LedgerWriter, active_lots, expire_due_lots, lock_account, save_lots
from .recharge import recharge_if_low
from .reservations import release_expired_holds
from .spending import authorize, check_limit, exceeded, period_starts


@dataclass(frozen=True)
class Consumption:
    """The result of a consumption: the available ``balance`` after it, the ledger
    ``entries`` written, and whether it ``replayed`` an earlier call with the same key."""

    balance: int
    entries: list[LedgerEntry] = field(default_factory=list)
    replayed: bool = False


def insufficient(group: OfferGroup, count: int, available: int) -> InsufficientCredits:
    return InsufficientCredits(
        gettext("Not enough tokens in %(group)s: %(requested)s requested, %(available)s available.")
        % {"group": group.key, "requested": count, "available": available},
        requested=count,
        available=available,
    )


def conflict(key: str, first_count: int) -> IdempotencyConflict:
    return IdempotencyConflict(
        gettext("Idempotency key %(key)r was used for %(count)s token(s) in another request.")
        % {"key": key, "count": first_count},
        field="idempotency_key",
    )


def consume(
    holder: Any,
    offer_group: OfferGroup | str,
    count: int,
    *,
    idempotency_key: str | None = None,
    metadata: dict | None = None,
    member: Any = None,
) -> Consumption:
    """Burn ``count`` tokens of the holder's account in ``offer_group``, atomically.

    Due lots are expired first; tokens are then taken in burn order, one ledger entry per
    lot touched. Not enough tokens raises ``InsufficientCredits`` and writes nothing, unless
    overdraft is allowed for the group. A repeated ``idempotency_key`` returns the first result
    (``replayed=True``); the same key with another group or count raises
    ``IdempotencyConflict``.

    ``member``: the user spending for the holder, recorded on the entries. ``CAN_SPEND``
    refusing them raises ``SpendingNotAllowed``; their ``SpendingLimit`` in the group, if any,
    raises ``SpendingLimitExceeded`` rather than let them spend past it this period.
    """
    count = positive_int(count)
    key = clean_key(idempotency_key)
    uid = holder_pk(holder)
    group = resolve_group(offer_group)
    mid = authorize(member, holder)
    metadata = metadata or {}
    try:
        with waits_as_busy(gettext("The %(group)s account") % {"group": group.key}):
            return _consume(uid, group, count, key, metadata, mid)
    except IntegrityError:
        if key is None:
            raise
        # The same key was recorded concurrently for another account: replay or conflict.
        with transaction.atomic():
            replay = find_replay(uid, key, group, count)
        if replay is None:
            raise
        return replay


def _consume(uid, group, count, key, metadata, mid=None) -> Consumption:
    overdraft_allowed = app_settings.overdraft_allowed(group.key)
    connection = connections[router.db_for_write(CreditAccount)]
    if sql.fast_path(connection):
        args = (connection, uid, group, count, key, metadata, overdraft_allowed, mid)
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
        return consume_portable(uid, group, count, key, metadata, overdraft_allowed, mid)


def _consume_postgresql(connection, uid, group, count, key, metadata, overdraft_allowed, mid):
    """One round trip; ``None`` leaves holds or a new overdraft account to the portable path."""
    now = timezone.now()
    result = sql.consume(
        connection,
        holder_id=uid,
        group_id=group.pk,
        count=count,
        key=key,
        metadata=metadata,
        now=now,
        overdraft=overdraft_allowed,
        member_id=mid,
        period_starts=None if mid is None else period_starts(now),
    )
    status = result["status"]
    if status == "insufficient":
        raise insufficient(group, count, result["available"])
    if status == "limit":
        raise exceeded(group, result["limit"], result["spent"], count)
    if status == "conflict":
        raise conflict(key, result["count"])
    if status not in ("ok", "replay"):
        return None
    entries = sql.entries_from_json(result["entries"], connection.alias)
    if status == "replay":
        return Consumption(balance=result["balance"], entries=entries, replayed=True)
    return _consumed(uid, group, count, result["balance"], entries, result.get("recharge_below"))


def consume_portable(uid, group, count, key, metadata, overdraft_allowed, mid=None) -> Consumption:
    """The ORM path, inside a transaction."""
    account = lock_account(uid, group, create=overdraft_allowed)
    if key is not None:
        replay = find_replay(uid, key, group, count)
        if replay is not None:
            return replay
    if account is None:
        raise insufficient(group, count, 0)
    now = timezone.now()
    lots = active_lots(account)
    # Holds past their time are released by this write; only held lots can have them.
    if any(lot.held for lot in lots) and release_expired_holds(account, now):
        lots = active_lots(account)
    writer = LedgerWriter(account, now)
    burnable, changed = expire_due_lots(writer, lots)
    check_limit(account, mid, count, now)
    takes, shortfall = allocate(burnable, count)
    if shortfall and not overdraft_allowed:
        raise insufficient(group, count, count - shortfall)
    expired = len(writer.entries)
    for lot, take in takes:
        lot.remaining -= take
        changed.append(lot)
        writer.add(
            EntryKind.CONSUME, -take, lot_id=lot.pk, key=key, metadata=metadata, member_id=mid
        )
    if shortfall:
        account.overdraft += shortfall
        writer.add(EntryKind.OVERDRAFT, -shortfall, key=key, metadata=metadata, member_id=mid)
    save_lots(changed)
    writer.save()
    available = account.balance - sum(lot.held for lot in burnable)
    if key is not None:
        ConsumptionRecord.objects.create(
            holder_id=uid,
            account=account,
            idempotency_key=key,
            count=count,
            balance_after=available,
        )
    return _consumed(
        uid, group, count, available, writer.entries[expired:], account.auto_recharge_below
    )


def find_replay(uid, key: str, group: OfferGroup, count: int) -> Consumption | None:
    """The first result of a consumption with ``key``, or ``None``; a different request with
    the same key raises ``IdempotencyConflict``."""
    record = (
        ConsumptionRecord.objects.filter(holder_id=uid, idempotency_key=key)
        .select_related("account")
        .first()
    )
    if record is None:
        return None
    if record.account.offer_group_id != group.pk or record.count != count:
        raise conflict(key, record.count)
    entries = list(
        LedgerEntry.objects.filter(account=record.account, idempotency_key=key).order_by("id")
    )
    return Consumption(balance=record.balance_after, entries=entries, replayed=True)


def _consumed(uid, group, count, balance, entries, recharge_below=None) -> Consumption:
    recharge_if_low(uid, group.pk, balance, recharge_below)
    send_on_commit(
        signals.credits_consumed,
        user_id=uid,
        offer_group=group.key,
        count=count,
        balance=balance,
        entries=entries,
    )
    return Consumption(balance=balance, entries=entries)
