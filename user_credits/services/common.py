"""Argument resolution shared by the services, and after-commit signals."""

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.db import OperationalError, transaction
from django.db.models import Model
from django.dispatch import Signal

from ..exceptions import AccountBusy, InvalidArgument, InvalidCount, UnknownOfferGroup
from ..holders import get_holder_model
from ..models import OfferGroup

logger = logging.getLogger("user_credits")


def holder_pk(holder: Any, field: str = "holder") -> Any:
    """Accept a holder (an instance of ``USER_CREDITS_HOLDER_MODEL``; a user when holders are
    users) or its primary key. An instance of another model raises ``InvalidArgument``."""
    if holder is None:
        raise InvalidArgument(f"{field} is required.", field=field)
    if getattr(holder, "is_anonymous", False):
        raise InvalidArgument("An anonymous user has no credits.", field=field)
    if isinstance(holder, Model):
        model = get_holder_model()
        if not isinstance(holder, model):
            raise InvalidArgument(
                f"{field} must be a {model._meta.label} (USER_CREDITS_HOLDER_MODEL), "
                f"not a {type(holder)._meta.label}.",
                field=field,
            )
        if holder.pk is None:
            raise InvalidArgument(f"{field} is not saved.", field=field)
        return holder.pk
    if isinstance(holder, bool) or not isinstance(holder, int | str | uuid.UUID):
        raise InvalidArgument(f"{field} must be a holder or its primary key.", field=field)
    return holder


def member_pk(member: Any) -> Any:
    """A member (a user acting for the holder) or its primary key; ``None`` stays ``None``."""
    if member is None:
        return None
    if getattr(member, "is_anonymous", False):
        raise InvalidArgument("An anonymous user cannot spend credits.", field="member")
    if isinstance(member, Model):
        if not isinstance(member, get_user_model()):
            raise InvalidArgument("member must be a user.", field="member")
        if member.pk is None:
            raise InvalidArgument("member is not saved.", field="member")
        return member.pk
    if isinstance(member, bool) or not isinstance(member, int | str | uuid.UUID):
        raise InvalidArgument("member must be a user or its primary key.", field="member")
    return member


def resolve_group(offer_group: OfferGroup | str) -> OfferGroup:
    """Accept an ``OfferGroup`` or its ``key``."""
    if isinstance(offer_group, OfferGroup):
        return offer_group
    try:
        return OfferGroup.objects.get(key=offer_group)
    except OfferGroup.DoesNotExist:
        raise UnknownOfferGroup(f"Unknown offer group {offer_group!r}.") from None


def positive_int(value: Any, name: str = "count") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidCount(f"{name} must be a positive integer, got {value!r}.", field=name)
    return value


def clean_key(idempotency_key: Any) -> str | None:
    """An idempotency key as stored: 1 to 255 characters, or ``None``."""
    if idempotency_key is None:
        return None
    key = str(idempotency_key)
    if not key or len(key) > 255:
        raise InvalidArgument(
            "idempotency_key must be 1 to 255 characters.", field="idempotency_key"
        )
    return key


def send_on_commit(signal: Signal, **kwargs: Any) -> None:
    """Send ``signal`` once the current transaction commits; a failing receiver is logged."""

    def send():
        for receiver, result in signal.send_robust(sender="user_credits", **kwargs):
            if isinstance(result, Exception):
                logger.error(
                    "Receiver %r of a user_credits signal failed", receiver, exc_info=result
                )

    transaction.on_commit(send)


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
            f"{what} is busy; nothing was written. Retry with the same idempotency key."
        ) from exc
