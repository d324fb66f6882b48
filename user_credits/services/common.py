"""Argument resolution shared by the services, and after-commit signals."""

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.db import OperationalError, router, transaction
from django.db.models import Exists, Model, OuterRef
from django.dispatch import Signal
from django.utils.functional import SimpleLazyObject
from django.utils.translation import gettext

from ..exceptions import AccountBusy, InvalidArgument, InvalidCount, UnknownOfferGroup
from ..holders import get_holder_model
from ..models import LedgerEntry, OfferGroup

logger = logging.getLogger("user_credits")


def holder_pk(holder: Any, field: str = "holder") -> Any:
    """Accept a holder (an instance of ``USER_CREDITS_HOLDER_MODEL``; a user when holders are
    users) or its primary key. An instance of another model raises ``InvalidArgument``."""
    if holder is None:
        raise InvalidArgument(gettext("%(field)s is required.") % {"field": field}, field=field)
    if getattr(holder, "is_anonymous", False):
        raise InvalidArgument(gettext("An anonymous user has no credits."), field=field)
    if isinstance(holder, Model):
        model = get_holder_model()
        if not isinstance(holder, model):
            raise InvalidArgument(
                gettext(
                    "%(field)s must be a %(model)s (USER_CREDITS_HOLDER_MODEL), not a %(given)s."
                )
                % {"field": field, "model": model._meta.label, "given": type(holder)._meta.label},
                field=field,
            )
        if holder.pk is None:
            raise InvalidArgument(
                gettext("%(field)s is not saved.") % {"field": field}, field=field
            )
        return holder.pk
    if isinstance(holder, bool) or not isinstance(holder, int | str | uuid.UUID):
        raise InvalidArgument(
            gettext("%(field)s must be a holder or its primary key.") % {"field": field},
            field=field,
        )
    return holder


def member_pk(member: Any) -> Any:
    """A member (a user acting for the holder) or its primary key; ``None`` stays ``None``."""
    if member is None:
        return None
    if getattr(member, "is_anonymous", False):
        raise InvalidArgument(gettext("An anonymous user cannot spend credits."), field="member")
    if isinstance(member, Model):
        if not isinstance(member, get_user_model()):
            raise InvalidArgument(gettext("member must be a user."), field="member")
        if member.pk is None:
            raise InvalidArgument(gettext("member is not saved."), field="member")
        return member.pk
    if isinstance(member, bool) or not isinstance(member, int | str | uuid.UUID):
        raise InvalidArgument(gettext("member must be a user or its primary key."), field="member")
    return member


#: ``(database alias, key) → id`` of the groups whose key can no longer mean another row.
#:
#: Why a per-process dict is never stale, across processes and without invalidation: a key is
#: cached only once it is known, from committed data, that its group has a ledger entry.
#: Ledger entries are never deleted (the ledger is append-only), so the entry's account exists
#: for good; an account protects its group from deletion (a foreign key, ``PROTECT``) and
#: from a key change (``OfferGroup.save`` and ``clean`` refuse one while the group has
#: accounts). So once cached, ``key → id`` is true for the life of the database. A group
#: without entries is looked up on every call (a new group's key may still change); its
#: accounts have no tokens to spend anyway. Only the key and id are cached: ``name`` may
#: change at any time, so the returned instance loads it on first access (one query).
#: Restoring an older dump or deleting ledger rows by hand breaks the premise: restart the
#: processes, or call ``clear_group_cache()``.
_settled_groups: dict[tuple[str, str], int] = {}


def clear_group_cache() -> None:
    """Forget the cached group ids (after a database restore, or between tests)."""
    _settled_groups.clear()


def resolve_group(offer_group: OfferGroup | str) -> OfferGroup:
    """Accept an ``OfferGroup`` or its ``key``; a key of a group in use costs no query."""
    if isinstance(offer_group, OfferGroup):
        return offer_group
    using = router.db_for_read(OfferGroup)
    if isinstance(offer_group, str):
        pk = _settled_groups.get((using, offer_group))
        if pk is not None:
            return OfferGroup.from_db(using, ("id", "key"), (pk, offer_group))
    has_entries = Exists(LedgerEntry.objects.filter(account__offer_group=OuterRef("pk")))
    try:
        group = OfferGroup.objects.using(using).annotate(settled=has_entries).get(key=offer_group)
    except OfferGroup.DoesNotExist:
        raise UnknownOfferGroup(
            gettext("Unknown offer group %(key)r.") % {"key": offer_group}
        ) from None
    if group.__dict__.pop("settled") and isinstance(offer_group, str):
        # Only once what was read is committed: a rolled-back group must not be remembered.
        entry = (using, offer_group)
        transaction.on_commit(lambda: _settled_groups.setdefault(entry, group.pk), using=using)
    return group


def positive_int(value: Any, name: str = "count") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidCount(
            gettext("%(field)s must be a positive integer, got %(value)r.")
            % {"field": name, "value": value},
            field=name,
        )
    return value


def clean_key(idempotency_key: Any) -> str | None:
    """An idempotency key as stored: 1 to 255 characters, or ``None``."""
    if idempotency_key is None:
        return None
    key = str(idempotency_key)
    if not key or len(key) > 255:
        raise InvalidArgument(
            gettext("idempotency_key must be 1 to 255 characters."), field="idempotency_key"
        )
    return key


def send_on_commit(signal: Signal, **kwargs: Any) -> None:
    """Send ``signal`` once the current transaction commits; a failing receiver is logged.

    A signal about a holder's credits (sent with ``user_id=``, its name before holders) also
    gets ``holder_id=`` (the same primary key) and ``holder=``, the holder itself, read from
    the database only if a receiver uses it."""
    if not signal.has_listeners():
        # Nothing would hear it (a receiver connects at start-up, not between a write and its
        # commit): a batch of a thousand consumptions queues nothing.
        return
    if "user_id" in kwargs:
        kwargs.setdefault("holder_id", kwargs["user_id"])
        kwargs.setdefault("holder", lazy_holder(kwargs["user_id"]))

    def send():
        for receiver, result in signal.send_robust(sender="user_credits", **kwargs):
            if isinstance(result, Exception):
                logger.error(
                    "Receiver %r of a user_credits signal failed", receiver, exc_info=result
                )

    transaction.on_commit(send)


def lazy_holder(pk: Any) -> SimpleLazyObject:
    """The holder whose primary key is ``pk``, fetched on first use."""
    return SimpleLazyObject(lambda: get_holder_model()._default_manager.get(pk=pk))


def acting_user(by: Any) -> dict:
    """``{"by": pk, "by_name": str(user)}`` for the record of a manual write; ``{}`` if none."""
    if by is None:
        return {}
    return {"by": by.pk, "by_name": str(by)}


#: SQLSTATEs of a wait that ran out of time: lock_not_available (``lock_timeout``) and
#: query_canceled (``statement_timeout``).
WAIT_TIMEOUTS = frozenset({"55P03", "57014"})


@contextmanager
def waits_as_busy(what: str) -> Iterator[None]:
    """Turn a lock or statement timeout while writing ``what`` (an account) into
    ``AccountBusy``."""
    try:
        yield
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) not in WAIT_TIMEOUTS:
            raise
        raise AccountBusy(
            gettext(
                "%(account)s is busy; nothing was written. Retry with the same idempotency key."
            )
            % {"account": what}
        ) from exc
