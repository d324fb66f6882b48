"""Bulk consumption: many consumptions in one transaction, one round trip on PostgreSQL.

``consume_many(items)`` applies each ``ConsumeItem`` as ``consume`` would, all-or-nothing per
item: an item short of tokens, over its member's limit or reusing a key for another request
gets its status and writes nothing, and the others go on. Results come back in input order.

On PostgreSQL ``user_credits_consume_many`` (``sql``) locks the batch's accounts in id order,
decides each item in memory by the single consumption's rules and writes the batch
set-based; elsewhere (or with ``POSTGRES_FAST_PATH`` off) the accounts are locked in the same
order and ``consume_portable`` runs per item, each in a savepoint. An item whose account has
holds, or needs a new account for an overdraft, goes through the portable path in its turn,
then the fast path continues after it.

Bad input (an unknown holder or group, a count that is not a positive integer, a member who
may not spend) raises before anything is written, naming the item: ``field`` is
``items[3].holder``.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone
from django.utils.translation import gettext

from .. import signals
from ..conf import app_settings
from ..exceptions import (
    IdempotencyConflict,
    InsufficientCredits,
    InvalidArgument,
    SpendingLimitExceeded,
    UnknownOfferGroup,
    UserCreditsError,
)
from ..holders import get_holder_model
from ..models import CreditAccount, LedgerEntry, OfferGroup
from . import sql
from .common import clean_key, holder_pk, positive_int, resolve_group, waits_as_busy
from .consumption import _consumed, consume_portable
from .spending import authorize, period_starts


class ConsumeStatus:
    """What happened to one item of a batch."""

    #: Consumed: ``balance`` is the available balance after it.
    OK = "ok"
    #: The idempotency key was used before for the same request: the first result's balance
    #: and entries, nothing written.
    REPLAYED = "replayed"
    #: Not enough tokens: ``balance`` is the unchanged available balance, nothing written.
    INSUFFICIENT = "insufficient"
    #: The idempotency key was used for another group or count: nothing written.
    CONFLICT = "conflict"
    #: The member's spending limit would be exceeded: nothing written.
    LIMIT = "limit"

    ALL = (OK, REPLAYED, INSUFFICIENT, CONFLICT, LIMIT)


#: The statuses, for the API schema's enum (``ENUM_NAME_OVERRIDES``).
STATUSES = ConsumeStatus.ALL


@dataclass(frozen=True)
class ConsumeItem:
    """One consumption of a batch: the arguments of ``consume``."""

    holder: Any
    offer_group: OfferGroup | str
    count: int
    idempotency_key: str | None = None
    metadata: dict | None = None
    member: Any = None


@dataclass(frozen=True)
class ConsumeResult:
    """The outcome of one item: ``status`` (``ConsumeStatus``), ``balance`` (available after
    ``ok``; the first result's for ``replayed``; the unchanged available for ``insufficient``;
    ``None`` for ``conflict`` and ``limit``), ``entries`` (written, or the first result's),
    and the ``account`` id, ``holder`` (primary key), ``offer_group`` (key) and ``count``, so a
    caller can act on the account after commit.

    ``entries`` is built on first read, without a query: a pipeline that ingests usage seldom
    reads them, and making a thousand model instances is a tenth of a batch's time."""

    status: str
    balance: int | None
    account: int | None = None
    holder: Any = None
    offer_group: str = ""
    count: int = 0
    # What ``entries`` is made of: the entries, or a function building them.
    _entries: list[LedgerEntry] | Callable[[], list[LedgerEntry]] = field(
        default_factory=list, repr=False, compare=False
    )

    @cached_property
    def entries(self) -> list[LedgerEntry]:
        """The ledger entries written (or the first result's, for ``replayed``)."""
        return self._entries() if callable(self._entries) else list(self._entries)

    def __getstate__(self) -> dict:
        # Pickled with its entries, not the function that would build them.
        state = dict(self.__dict__, _entries=self.entries)
        state.pop("entries")
        return state

    @property
    def consumed(self) -> bool:
        """Whether the tokens are spent (now, or by the first request with this key)."""
        return self.status in (ConsumeStatus.OK, ConsumeStatus.REPLAYED)


@dataclass(frozen=True)
class _Item:
    index: int
    uid: Any
    group: OfferGroup
    count: int
    key: str | None
    metadata: dict
    mid: Any
    overdraft: bool

    def as_json(self) -> dict:
        return sql.item_json(
            holder_id=self.uid,
            group_id=self.group.pk,
            count=self.count,
            key=self.key,
            metadata=self.metadata,
            overdraft=self.overdraft,
            member_id=self.mid,
        )

    def result(self, status: str, balance=None, entries=(), account=None) -> ConsumeResult:
        """``entries``: the entries, or a function building them (then ``account`` is given)."""
        if not callable(entries):
            entries = list(entries)
            if account is None and entries:
                account = entries[0].account_id
        return ConsumeResult(
            status=status,
            balance=balance,
            _entries=entries,
            account=account,
            holder=self.uid,
            offer_group=self.group.key,
            count=self.count,
        )


#: How many times a batch is retried after losing a race on an idempotency key.
RETRIES = 3


def consume_many(items) -> list[ConsumeResult]:
    """Consume each ``ConsumeItem`` of ``items`` as ``consume`` would, in one transaction.

    Each item is all-or-nothing on its own; the results are in input order. At most
    ``USER_CREDITS["BATCH_MAX"]`` items. Invalid input raises (``exc.field`` names the item,
    e.g. ``items[2].offer_group``) and writes nothing.
    """
    prepared = _prepare(items)
    if not prepared:
        return []
    connection = connections[router.db_for_write(CreditAccount)]
    for attempt in range(RETRIES):
        try:
            with waits_as_busy(gettext("An account of the batch")):
                with transaction.atomic(using=connection.alias):
                    return _consume_all(connection, prepared)
        except IntegrityError:
            # The same key was recorded meanwhile for another account of the holder by another
            # transaction: the batch was rolled back; run again, the key now replays or
            # conflicts.
            if attempt == RETRIES - 1 or all(item.key is None for item in prepared):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _consume_all(connection, prepared: list[_Item]) -> list[ConsumeResult]:
    results: list[ConsumeResult] = []
    if not sql.fast_path(connection):
        _check_holders(prepared, _known_holders(prepared))
        _lock_accounts(prepared)
        return [_consume_portable(item) for item in prepared]
    now = timezone.now()
    starts = period_starts(now)
    # Entries are built for the signal only if it has receivers (they connect at start-up).
    heard = signals.credits_consumed.has_listeners()
    while len(results) < len(prepared):
        rest = prepared[len(results) :]
        sent = [item.as_json() for item in rest]
        answer = sql.consume_many(connection, sent, now=now, period_starts=starts)
        if answer.get("unknown_holder") is not None:
            raise _unknown_holder(rest[answer["unknown_holder"]])
        # This call's results so far: a replay of an item of the call names it.
        called: list[ConsumeResult] = []
        for item, row in zip(rest, answer["results"], strict=False):
            result = _from_sql(connection, item, row, now, called, heard)
            called.append(result)
            results.append(result)
        if answer.get("stopped"):
            results.append(_consume_portable(prepared[len(results)]))
    return results


def _from_sql(connection, item: _Item, row: dict, now, called, heard: bool) -> ConsumeResult:
    status = row["status"]
    if status == "insufficient":
        return item.result(ConsumeStatus.INSUFFICIENT, row["available"])
    if status == "conflict":
        return item.result(ConsumeStatus.CONFLICT)
    if status == "limit":
        return item.result(ConsumeStatus.LIMIT)
    own = {"idempotency_key": item.key, "metadata": item.metadata, "member_id": item.mid}

    def entries():
        return sql.result_entries(
            row, connection.alias, own=own, now=now, earlier=lambda of: called[of].entries
        )

    if status == "replay":
        return item.result(ConsumeStatus.REPLAYED, row["balance"], entries, row["account"])
    assert status == "ok", status
    result = item.result(ConsumeStatus.OK, row["balance"], entries, row["account"])
    _consumed(
        item.uid,
        item.group,
        item.count,
        row["balance"],
        result.entries if heard else [],  # unheard: the signal is not sent
        row.get("recharge_below"),
    )
    return result


def _consume_portable(item: _Item) -> ConsumeResult:
    try:
        # A savepoint: an item that fails leaves nothing (not even a released hold) behind.
        with transaction.atomic():
            done = consume_portable(
                item.uid, item.group, item.count, item.key, item.metadata, item.overdraft, item.mid
            )
    except SpendingLimitExceeded:
        return item.result(ConsumeStatus.LIMIT)
    except InsufficientCredits as exc:
        return item.result(ConsumeStatus.INSUFFICIENT, exc.available)
    except IdempotencyConflict:
        return item.result(ConsumeStatus.CONFLICT)
    status = ConsumeStatus.REPLAYED if done.replayed else ConsumeStatus.OK
    return item.result(status, done.balance, done.entries)


def _lock_accounts(prepared: list[_Item]) -> None:
    """Lock the batch's existing accounts in id order, as the PL/pgSQL function does.

    The filter may take a holder's other accounts in the batch's groups too: more than needed,
    never fewer, and in the same order for every writer.
    """
    holders = {item.uid for item in prepared}
    groups = {item.group.pk for item in prepared}
    list(
        CreditAccount.objects.select_for_update()
        .filter(holder_id__in=holders, offer_group_id__in=groups)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# --- validation: everything is checked before anything is written ---------------------------


def _at(index: int, exc: UserCreditsError, name: str) -> UserCreditsError:
    """``exc`` again, about item ``index``: its field becomes ``items[index].name``."""
    message = gettext("Item %(index)d: %(error)s") % {"index": index, "error": exc}
    return type(exc)(message, field=f"items[{index}].{exc.field or name}")


def _prepare(items) -> list[_Item]:
    if isinstance(items, str | bytes | dict) or not hasattr(items, "__iter__"):
        raise InvalidArgument(gettext("items must be a list of ConsumeItem."), field="items")
    items = list(items)
    limit = app_settings.BATCH_MAX
    if len(items) > limit:
        raise InvalidArgument(
            gettext("A batch has at most %(max)d items, got %(count)d.")
            % {"max": limit, "count": len(items)},
            field="items",
        )
    pk_field = get_holder_model()._meta.pk
    groups: dict[Any, tuple[OfferGroup, bool]] = {}  # each reference's group and overdraft
    allowed: dict[tuple, Any] = {}
    prepared = []
    for index, item in enumerate(items):
        if not isinstance(item, ConsumeItem):
            raise InvalidArgument(
                gettext("Item %(index)d is not a ConsumeItem.") % {"index": index},
                field=f"items[{index}]",
            )
        name = "holder"
        try:
            uid = holder_pk(item.holder)
            try:
                uid = pk_field.to_python(uid)
            except ValidationError:
                raise InvalidArgument(
                    gettext("holder must be a holder or its primary key."), field="holder"
                ) from None
            name = "offer_group"
            ref = item.offer_group
            cache_key = ref.pk if isinstance(ref, OfferGroup) else ref
            if cache_key not in groups:
                if not isinstance(ref, OfferGroup | str):
                    raise UnknownOfferGroup(
                        gettext("offer_group must be an offer group or its key.")
                    )
                resolved = resolve_group(ref)
                groups[cache_key] = (resolved, app_settings.overdraft_allowed(resolved.key))
            group, overdraft = groups[cache_key]
            name = "count"
            count = positive_int(item.count)
            name = "idempotency_key"
            key = clean_key(item.idempotency_key)
            name = "metadata"
            if item.metadata is not None and not isinstance(item.metadata, dict):
                raise InvalidArgument(gettext("metadata must be an object."), field="metadata")
            metadata = dict(item.metadata or {})  # the caller's dict may change after
            name = "member"
            who = (id(item.member) if hasattr(item.member, "pk") else item.member, uid)
            if who not in allowed:
                allowed[who] = authorize(item.member, item.holder)
            mid = allowed[who]
        except UserCreditsError as exc:
            raise _at(index, exc, name) from exc
        prepared.append(
            _Item(
                index=index,
                uid=uid,
                group=group,
                count=count,
                key=key,
                metadata=metadata,
                mid=mid,
                overdraft=overdraft,
            )
        )
    return prepared


def _known_holders(prepared: list[_Item]) -> set:
    uids = {item.uid for item in prepared}
    return set(get_holder_model()._default_manager.filter(pk__in=uids).values_list("pk", flat=True))


def _check_holders(prepared: list[_Item], known: set) -> None:
    """Raise about the first item whose holder is not ``known``."""
    for item in prepared:
        if item.uid not in known:
            raise _unknown_holder(item)


def _unknown_holder(item: _Item) -> InvalidArgument:
    return InvalidArgument(
        gettext("Item %(index)d: unknown holder %(holder)r.")
        % {"index": item.index, "holder": item.uid},
        field=f"items[{item.index}].holder",
    )
