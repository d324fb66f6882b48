"""Argument resolution shared by the services, and after-commit signals."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.db import OperationalError, transaction
from django.dispatch import Signal

from ..exceptions import AccountBusy, InvalidArgument, InvalidCount, UnknownOfferGroup
from ..models import OfferGroup

logger = logging.getLogger("user_credits")


def user_pk(user: Any, field: str = "user") -> Any:
    """Accept a user instance or its primary key."""
    if user is None:
        raise InvalidArgument(f"{field} is required.", field=field)
    if isinstance(user, get_user_model()):
        if user.pk is None:
            raise InvalidArgument(f"{field} is not saved.", field=field)
        return user.pk
    if getattr(user, "is_anonymous", False):
        raise InvalidArgument("An anonymous user has no credits.", field=field)
    return user


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
