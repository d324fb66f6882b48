"""Account locks, lot writes and the one ledger-entry builder.

Every write locks the ``CreditAccount`` row first; lots and ledger entries of an account are
only written under that lock, so absolute values can be written back safely. Every ledger
entry is built by ``LedgerWriter.add``, which keeps the account's balance and each entry's
``balance_after`` in step.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from .. import chain, signals
from ..models import CreditAccount, CreditLot, EntryKind, LedgerEntry, LotStatus, OfferGroup
from .allocation import BURN_ORDER
from .common import send_on_commit
from .reservations import drop_held_tokens

# --- locks -----------------------------------------------------------------------------------


def lock_account(user_id: Any, group: OfferGroup, *, create: bool = True) -> CreditAccount | None:
    """Lock (and with ``create`` make) the user's account in ``group``. Call inside atomic."""
    locked = CreditAccount.objects.select_for_update()
    account = locked.filter(holder_id=user_id, offer_group=group).first()
    if account is None and create:
        try:
            with transaction.atomic():
                # The new row stays locked by this transaction until it ends.
                account = CreditAccount.objects.create(holder_id=user_id, offer_group=group)
        except IntegrityError:  # created meanwhile by another transaction: wait for it
            account = locked.get(holder_id=user_id, offer_group=group)
    if account is not None:
        account.offer_group = group
    return account


def lock_accounts(user_id: Any, groups: Iterable[OfferGroup]) -> dict[int, CreditAccount]:
    """Lock several of a user's accounts, always in group id order (no deadlock)."""
    unique = {g.pk: g for g in groups}
    return {pk: lock_account(user_id, unique[pk]) for pk in sorted(unique)}


# --- the ledger ------------------------------------------------------------------------------


class LedgerWriter:
    """The ledger entries of one locked account, built in order and saved together.

    ``add`` moves ``account.balance`` by the entry's amount, stamps the entry with the balance
    after it and links it to the account's hash chain (``seq``, ``digest``); ``save`` writes the
    entries and the account's balance, overdraft and chain end.
    """

    def __init__(self, account: CreditAccount, now: datetime):
        self.account = account
        self.now = now
        self.entries: list[LedgerEntry] = []

    def add(
        self,
        kind: str,
        amount: int,
        *,
        lot_id: int | None = None,
        key: str | None = None,
        metadata: dict | None = None,
        member_id: Any = None,
    ) -> LedgerEntry:
        account = self.account
        account.balance += amount
        account.last_seq += 1
        entry = LedgerEntry(
            account=account,
            lot_id=lot_id,
            kind=kind,
            amount=amount,
            balance_after=account.balance,
            idempotency_key=key,
            metadata=metadata or {},
            created_at=self.now,
            seq=account.last_seq,
            member_id=member_id,
        )
        entry.digest = account.last_digest = chain.link(account.last_digest, entry)
        self.entries.append(entry)
        return entry

    def expire(self, lot: CreditLot) -> None:
        """Empty a due lot in memory (its held tokens leave their holds) with an ``expire``
        entry; the caller saves the lot."""
        self.add(EntryKind.EXPIRE, -lot.remaining, lot_id=lot.pk)
        if lot.held:
            drop_held_tokens(lot, lot.held)
        lot.remaining, lot.held, lot.status = 0, 0, LotStatus.EXPIRED

    def save(self) -> list[LedgerEntry]:
        LedgerEntry.objects.bulk_create(self.entries)
        account = self.account
        CreditAccount.objects.filter(pk=account.pk).update(
            **{field: getattr(account, field) for field in ACCOUNT_LEDGER_FIELDS}
        )
        return self.entries


#: What a ledger write changes on its account.
ACCOUNT_LEDGER_FIELDS = ("balance", "overdraft", "last_seq", "last_digest")


def save_writers(writers: Iterable[LedgerWriter]) -> None:
    """Save the entries and accounts of several writers, two statements in all."""
    writers = [writer for writer in writers if writer.entries]
    LedgerEntry.objects.bulk_create([entry for writer in writers for entry in writer.entries])
    CreditAccount.objects.bulk_update(
        [writer.account for writer in writers], list(ACCOUNT_LEDGER_FIELDS)
    )


# --- lots ------------------------------------------------------------------------------------


def live_lots_q(now: datetime, prefix: str = "") -> Q:
    """Lots that count in a balance at ``now``: active, with tokens, not past their expiry."""
    p = prefix
    return Q(**{f"{p}status": LotStatus.ACTIVE, f"{p}remaining__gt": 0}) & (
        Q(**{f"{p}expires__isnull": True}) | Q(**{f"{p}expires__gt": now})
    )


def active_lots(account: CreditAccount) -> list[CreditLot]:
    """The account's lots with tokens, in burn order (due ones included)."""
    return list(
        CreditLot.objects.filter(
            account=account, status=LotStatus.ACTIVE, remaining__gt=0
        ).order_by(*BURN_ORDER)
    )


def expire_due_lots(
    writer: LedgerWriter, lots: list[CreditLot]
) -> tuple[list[CreditLot], list[CreditLot]]:
    """Expire the due lots among ``lots`` in memory (entries in ``writer``). Returns
    ``(burnable, expired)``, each in the order given; the caller saves them (``save_lots``)."""
    burnable, expired = [], []
    for lot in lots:
        if lot.expires is None or lot.expires > writer.now:
            burnable.append(lot)
        else:
            writer.expire(lot)
            expired.append(lot)
    return burnable, expired


def save_lots(lots: list[CreditLot]) -> None:
    """Write back the tokens and status of lots changed in memory."""
    if len(lots) == 1:
        lot = lots[0]
        CreditLot.objects.filter(pk=lot.pk).update(
            remaining=lot.remaining, status=lot.status, held=lot.held
        )
    elif lots:
        CreditLot.objects.bulk_update(lots, ["remaining", "status", "held"])


def add_lot(
    account: CreditAccount,
    *,
    tokens: int,
    starts: datetime,
    expires: datetime | None,
    category: str,
    now: datetime,
    order=None,
    reason: str = "",
    priority: int = 50,
    metadata: dict | None = None,
) -> CreditLot:
    """Grant ``tokens`` to a locked account; an outstanding overdraft is settled first.

    ``metadata`` is added to the grant entry's (e.g. who granted by hand)."""
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
    account.overdraft -= settled
    metadata = {**(metadata or {}), **({"order": order.pk} if order is not None else {})}
    if reason:
        metadata["reason"] = reason
    if settled:
        metadata["settled_overdraft"] = settled
    writer = LedgerWriter(account, now)
    writer.add(EntryKind.GRANT, tokens, lot_id=lot.pk, metadata=metadata)
    writer.save()
    announce_grant(account, lot)
    return lot


def announce_grant(account: CreditAccount, lot: CreditLot) -> None:
    """``credits_granted`` for a lot given to an account, once the transaction commits."""
    send_on_commit(
        signals.credits_granted,
        user_id=account.holder_id,
        offer_group=account.offer_group.key,
        lot=lot,
    )
