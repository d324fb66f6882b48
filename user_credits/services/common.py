"""Helpers shared by the services: argument resolution and after-commit signals."""

import logging

from django.contrib.auth import get_user_model
from django.db import transaction

from ..exceptions import InvalidCount, UnknownOfferGroup
from ..models import OfferGroup

logger = logging.getLogger("user_credits")


def user_pk(user):
    """Accept a user instance or its primary key."""
    if user is None:
        raise ValueError("a user is required")
    if isinstance(user, get_user_model()):
        if user.pk is None:
            raise ValueError("the user is not saved")
        return user.pk
    if getattr(user, "is_anonymous", False):
        raise ValueError("an anonymous user has no credits")
    return user


def resolve_group(offer_group) -> OfferGroup:
    """Accept an ``OfferGroup`` or its ``key``."""
    if isinstance(offer_group, OfferGroup):
        return offer_group
    try:
        return OfferGroup.objects.get(key=offer_group)
    except OfferGroup.DoesNotExist:
        raise UnknownOfferGroup(f"Unknown offer group {offer_group!r}.") from None


def positive_int(value, name="count") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidCount(f"{name} must be a positive integer, got {value!r}.")
    return value


def send_on_commit(signal, **kwargs):
    """Send ``signal`` once the current transaction commits; a failing receiver is logged."""

    def send():
        for receiver, result in signal.send_robust(sender="user_credits", **kwargs):
            if isinstance(result, Exception):
                logger.error(
                    "Receiver %r of a user_credits signal failed", receiver, exc_info=result
                )

    transaction.on_commit(send)
