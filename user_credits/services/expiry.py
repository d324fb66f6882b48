"""The expiry sweep and the expiry / low-balance warnings, in bounded batches."""

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from .. import signals
from ..conf import app_settings
from ..exceptions import InvalidArgument
from ..models import (
    CreditAccount,
    CreditLot,
    Hold,
    HoldStatus,
    LotStatus,
    Order,
    OrderEvent,
    OrderStatus,
)
from . import sql
from .common import holder_pk, positive_int, resolve_group, send_on_commit
from .ledger import LedgerWriter, save_lots, save_writers
from .recharge import recharge_accounts_if_low, recharge_if_low
from .reservations import release_expired_holds


@dataclass
class ExpiryReport:
    """What a sweep did. With ``collect=False`` ``expired`` stays empty (a large sweep need
    not hold every lot) and only the counts tell; the warnings are always listed."""

    expired: list = field(default_factory=list)
    expiring: list = field(default_factory=list)
    low: list = field(default_factory=list)
    expired_lots: int = 0
    expired_tokens: int = 0
    expired_orders: int = 0
    expiring_lots: int = 0
    released_holds: int = 0
    low_accounts: int = 0
    renewed_subscriptions: int = 0
    dry_run: bool = False


def _due_lots(now, user_id):
    lots = CreditLot.objects.filter(status=LotStatus.ACTIVE, remaining__gt=0, expires__lte=now)
    return lots if user_id is None else lots.filter(account__holder_id=user_id)


def _as_timedelta(value):
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    raise InvalidArgument(
        gettext("warn_before must be a timedelta or seconds, got %(value)r.") % {"value": value},
        field="warn_before",
    )


def _thresholds(low):
    """``{"group": 10}`` or ``[("group", 10), …]`` → ``[(OfferGroup, 10), …]``."""
    if not low:
        return []
    pairs = low.items() if hasattr(low, "items") else low
    result = []
    for group, minimum in pairs:
        if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 0:
            raise InvalidArgument(
                gettext("The low-balance minimum for %(group)r must be an integer ≥ 0.")
                % {"group": group},
                field="low",
            )
        result.append((resolve_group(group), minimum))
    return result


def expire_credits(
    *,
    holder: Any = None,
    user: Any = None,
    now: datetime | None = None,
    warn_before: timedelta | int | float | None = None,
    low: Mapping[str, int] | Iterable[tuple[str, int]] | None = None,
    batch_size: int | None = None,
    dry_run: bool = False,
    collect: bool = True,
    progress: Callable[[ExpiryReport], None] | None = None,
) -> ExpiryReport:
    """Expire every due lot once, then send the expiry and low-balance warnings once.

    Each batch is one transaction: a crash leaves finished batches complete and the rest for
    the next run. Accounts are locked in id order, so concurrent sweeps (and consumptions)
    never expire a lot twice. ``dry_run`` does everything in a transaction that is rolled
    back: the report is exact and nothing is written or signalled. ``progress``, if given,
    is called with the report after each batch (the command's progress display).
    """
    now = now or timezone.now()
    if batch_size is None:
        batch_size = app_settings.EXPIRE_BATCH_SIZE
    batch_size = positive_int(batch_size, "batch_size")
    # ``user=`` is the name this argument had before holders.
    holder = user if holder is None else holder
    user_id = None if holder is None else holder_pk(holder)
    warn_before = _as_timedelta(warn_before)
    thresholds = _thresholds(low)
    report = ExpiryReport(dry_run=dry_run)
    args = (report, now, user_id, batch_size, collect, progress or (lambda report: None))
    if dry_run:
        with transaction.atomic():
            _sweep(*args, warn_before, thresholds)
            transaction.set_rollback(True)
    else:
        _sweep(*args, warn_before, thresholds)
    return report


def _sweep(report, now, user_id, batch_size, collect, progress, warn_before, thresholds):
    # Free plans renew first, while the ending period's lot is alive (its rollover applies).
    from .subscriptions import renew_due_subscriptions

    report.renewed_subscriptions += renew_due_subscriptions(now, holder=user_id)
    while _release_holds_batch(report, now, user_id, batch_size):
        progress(report)
    while _expire_batch(report, now, user_id, batch_size, collect):
        progress(report)
    while _expire_orders_batch(report, now, user_id, batch_size):
        progress(report)
    if warn_before is not None:
        while _warn_expiring_batch(report, now, now + warn_before, user_id, batch_size):
            progress(report)
    for group, minimum in thresholds:
        _rearm_low(group, user_id)
        while _warn_low_batch(report, group, minimum, user_id, batch_size):
            progress(report)


def _expire_batch(report, now, user_id, batch_size, collect) -> bool:
    connection = connections[router.db_for_write(CreditLot)]
    with transaction.atomic(using=connection.alias):
        if sql.fast_path(connection):
            return _expire_batch_postgresql(connection, report, now, user_id, batch_size, collect)
        return expire_batch_portable(report, now, user_id, batch_size, collect)


def _expire_batch_postgresql(connection, report, now, user_id, batch_size, collect) -> bool:
    rows = sql.expire_batch(connection, now=now, holder_id=user_id, batch_size=batch_size)
    if rows is None:
        return False
    for row in rows:
        send_on_commit(
            signals.credits_expired,
            user_id=row["holder"],
            offer_group=row["group"],
            lot_ids=row["lots"],
            amount=row["amount"],
        )
        report.expired_lots += len(row["lots"])
        report.expired_tokens += row["amount"]
        recharge_if_low(row["holder"], row["group_id"], row["available"], row["recharge_below"])
    if collect and rows:
        report.expired.extend(
            CreditLot.objects.filter(pk__in=[pk for row in rows for pk in row["lots"]]).order_by(
                "pk"
            )
        )
    return True


def expire_batch_portable(report, now, user_id, batch_size, collect) -> bool:
    """One batch through the ORM, inside a transaction: lock the accounts of the next due
    lots in id order, then expire their due lots (read again under the locks)."""
    account_ids = sorted(
        set(
            _due_lots(now, user_id)
            .order_by("account_id")
            .values_list("account_id", flat=True)[:batch_size]
        )
    )
    if not account_ids:
        return False
    writers = {
        account.pk: LedgerWriter(account, now)
        for account in CreditAccount.objects.select_for_update(of=("self",))
        .filter(pk__in=account_ids)
        .select_related("offer_group")
        .order_by("pk")
    }
    # Read again under the locks: a concurrent sweep or consume may have expired them.
    lots = list(
        _due_lots(now, user_id).filter(account_id__in=account_ids).order_by("account_id", "id")
    )
    expired_by_account = defaultdict(list)
    for lot in lots:
        expired_by_account[lot.account_id].append((lot.pk, lot.remaining))
        writers[lot.account_id].expire(lot)
    save_lots(lots)
    save_writers(writers.values())
    recharge_accounts_if_low(writer.account for writer in writers.values())
    for pk, expired in expired_by_account.items():
        account = writers[pk].account
        amount = sum(tokens for _, tokens in expired)
        send_on_commit(
            signals.credits_expired,
            user_id=account.holder_id,
            offer_group=account.offer_group.key,
            lot_ids=[lot_id for lot_id, _ in expired],
            amount=amount,
        )
        report.expired_tokens += amount
    report.expired_lots += len(lots)
    if collect:
        report.expired.extend(lots)
    return True


def _release_holds_batch(report, now, user_id, batch_size) -> bool:
    """Holds past their ttl free their tokens (accounts locked in id order)."""
    with transaction.atomic():
        holds = Hold.objects.filter(status=HoldStatus.ACTIVE, expires_at__lte=now)
        if user_id is not None:
            holds = holds.filter(holder_id=user_id)
        account_ids = sorted(set(holds.values_list("account_id", flat=True)[:batch_size]))
        if not account_ids:
            return False
        for account in (
            CreditAccount.objects.select_for_update().filter(pk__in=account_ids).order_by("pk")
        ):
            report.released_holds += release_expired_holds(account, now)
        return True


def _expire_orders_batch(report, now, user_id, batch_size) -> bool:
    """Paid orders whose period is over become ``expired`` (their lots are swept first)."""
    with transaction.atomic():
        due = Order.objects.filter(status__in=OrderStatus.active(), expires__lte=now)
        if user_id is not None:
            due = due.filter(holder_id=user_id)
        ids = list(
            due.select_for_update(skip_locked=True)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return False
        updated = Order.objects.filter(pk__in=ids, status__in=OrderStatus.active()).update(
            status=OrderStatus.EXPIRED, updated_at=now
        )
        OrderEvent.objects.bulk_create(
            OrderEvent(order_id=pk, status=OrderStatus.EXPIRED, message="Period ended.")
            for pk in ids
        )
        report.expired_orders += updated
        return True


def _warn_expiring_batch(report, now, horizon, user_id, batch_size) -> bool:
    with transaction.atomic():
        lots = CreditLot.objects.filter(
            status=LotStatus.ACTIVE,
            remaining__gt=0,
            expires__gt=now,
            expires__lte=horizon,
            expiry_warned_at__isnull=True,
        )
        if user_id is not None:
            lots = lots.filter(account__holder_id=user_id)
        lots = list(
            lots.select_for_update(skip_locked=True, of=("self",))
            .select_related("account__offer_group")
            .order_by("pk")[:batch_size]
        )
        if not lots:
            return False
        CreditLot.objects.filter(pk__in=[lot.pk for lot in lots]).update(expiry_warned_at=now)
        for lot in lots:
            lot.expiry_warned_at = now
            send_on_commit(
                signals.credits_expiring,
                user_id=lot.account.holder_id,
                offer_group=lot.account.offer_group.key,
                lot=lot,
            )
        report.expiring_lots += len(lots)
        report.expiring.extend(lots)
        return True


def _low_accounts(group, user_id):
    accounts = CreditAccount.objects.filter(offer_group=group)
    return accounts if user_id is None else accounts.filter(holder_id=user_id)


def _rearm_low(group, user_id):
    """An account back above the threshold it was warned about may be warned again later."""
    _low_accounts(group, user_id).filter(
        low_warned_threshold__isnull=False, balance__gt=F("low_warned_threshold")
    ).update(low_warned_threshold=None)


def _warn_low_batch(report, group, minimum, user_id, batch_size) -> bool:
    with transaction.atomic():
        accounts = list(
            _low_accounts(group, user_id)
            .filter(balance__lte=minimum)
            .exclude(low_warned_threshold=minimum)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("pk")[:batch_size]
        )
        if not accounts:
            return False
        CreditAccount.objects.filter(pk__in=[a.pk for a in accounts]).update(
            low_warned_threshold=minimum
        )
        for account in accounts:
            account.low_warned_threshold = minimum
            account.offer_group = group
            send_on_commit(
                signals.credits_low,
                user_id=account.holder_id,
                offer_group=group.key,
                account=account,
                balance=account.balance,
                threshold=minimum,
            )
        report.low_accounts += len(accounts)
        report.low.extend(accounts)
        return True
