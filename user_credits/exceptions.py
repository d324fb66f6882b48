"""The exception tree. Every error raised on purpose is a ``UserCreditsError``.

Leaves mix in a standard type so that code unaware of this app still handles them sensibly.
"""

from django.core.exceptions import ImproperlyConfigured, PermissionDenied


class UserCreditsError(Exception):
    """Root of every error this app raises on purpose.

    ``field`` names the argument (or API field) an error is about, when there is one.
    """

    code = "user_credits_error"

    def __init__(self, message="", *, field=None):
        super().__init__(message)
        self.field = field


class ConfigurationError(UserCreditsError, ImproperlyConfigured):
    """The ``USER_CREDITS`` setting is wrong (an unknown key, a bad value)."""

    code = "configuration_error"


class InvalidOrder(UserCreditsError, ValueError):
    """An order cannot be created as asked (quantity, currency, start, inactive offer)."""

    code = "invalid_order"


class InvalidTransition(UserCreditsError, ValueError):
    """An order is not in a status that allows the requested change (e.g. refund unpaid)."""

    code = "invalid_transition"


class InvalidArgument(UserCreditsError, ValueError):
    """An argument of a service is out of its domain (a past expiry, an unknown category)."""

    code = "invalid_argument"


class InvalidCount(InvalidArgument):
    """A token count is not a positive integer."""

    code = "invalid_count"


class UnknownOfferGroup(UserCreditsError, LookupError):
    """No offer group has this key."""

    code = "unknown_offer_group"

    def __init__(self, message, *, field="offer_group"):
        super().__init__(message, field=field)


class InsufficientCredits(UserCreditsError, ValueError):
    """Not enough available tokens (and no overdraft allowed): nothing was written.
    ``requested`` and ``available`` tell by how much."""

    code = "insufficient_credits"

    def __init__(self, message, *, requested=0, available=0):
        super().__init__(message, field=None)
        self.requested = requested
        self.available = available


class SpendingLimitExceeded(InsufficientCredits):
    """The member's spending limit for the period would be exceeded: nothing was written.
    ``limit``, ``spent`` (consumed this period plus held by the member's active holds) and
    ``requested`` tell by how much."""

    code = "spending_limit_exceeded"

    def __init__(self, message, *, limit, spent, requested):
        super().__init__(message, requested=requested, available=max(limit - spent, 0))
        self.limit = limit
        self.spent = spent


class SpendingNotAllowed(UserCreditsError, PermissionDenied):
    """``CAN_SPEND`` refused this member the holder's credits: nothing was written."""

    code = "spending_not_allowed"

    def __init__(self, message, *, field="member"):
        super().__init__(message, field=field)


class AccountBusy(UserCreditsError):
    """The account stayed locked by other writes longer than the database allows a wait
    (PostgreSQL's ``lock_timeout`` or ``statement_timeout``). Nothing was written: retry
    later, with the same idempotency key."""

    code = "account_busy"
    retryable = True


class IdempotencyConflict(UserCreditsError, ValueError):
    """An idempotency key was reused for a different request."""

    code = "idempotency_conflict"


class PaymentMismatch(UserCreditsError, ValueError):
    """A payment or refund amount or currency does not fit the order."""

    code = "payment_mismatch"


class PaymentProviderError(UserCreditsError):
    """The payment provider refused or failed to start a payment."""

    code = "payment_provider_error"


class PaymentDeclined(PaymentProviderError):
    """An off-session payment was refused: a decline, or the bank asks the buyer to
    authenticate (``reason``: the provider's code, e.g. ``card_declined``,
    ``authentication_required``, ``no_payment_method``)."""

    code = "payment_declined"

    def __init__(self, message, *, reason=""):
        super().__init__(message)
        self.reason = reason
