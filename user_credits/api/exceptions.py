"""One error shape for the API: ``{"code": …, "detail": …, "fields": {…}}``.

Domain errors (the ``UserCreditsError`` tree) are mapped to HTTP here and only here.
"""

from django.utils.translation import gettext
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from .. import exceptions as domain
from ..errors import error_body

STATUS_BY_ERROR = [
    (domain.InsufficientCredits, status.HTTP_402_PAYMENT_REQUIRED),
    (domain.SpendingNotAllowed, status.HTTP_403_FORBIDDEN),
    (domain.IdempotencyConflict, status.HTTP_409_CONFLICT),
    (domain.InvalidTransition, status.HTTP_409_CONFLICT),
    (domain.UnknownOfferGroup, status.HTTP_400_BAD_REQUEST),
    (domain.InvalidOrder, status.HTTP_400_BAD_REQUEST),
    (domain.InvalidArgument, status.HTTP_400_BAD_REQUEST),
    (domain.PaymentMismatch, status.HTTP_400_BAD_REQUEST),
    (domain.PaymentProviderError, status.HTTP_502_BAD_GATEWAY),
    (domain.AccountBusy, status.HTTP_503_SERVICE_UNAVAILABLE),
]

FIELD_OF_ERROR = {domain.UnknownOfferGroup: "offer_group", domain.InvalidCount: "count"}


def _domain_response(exc):
    # Every error about one field names it under ``fields``, whatever its class.
    field = getattr(exc, "field", None) or FIELD_OF_ERROR.get(type(exc))
    fields = {field: [str(exc)]} if field else None
    for error_class, http_status in STATUS_BY_ERROR:
        if isinstance(exc, error_class):
            body = error_body(exc.code, str(exc), fields)
            if isinstance(exc, domain.InsufficientCredits):
                body.update(requested=exc.requested, available=exc.available)
            if isinstance(exc, domain.SpendingLimitExceeded):
                body.update(limit=exc.limit, spent=exc.spent)
            headers = {"Retry-After": "1"} if isinstance(exc, domain.AccountBusy) else None
            return Response(body, status=http_status, headers=headers)
    return Response(error_body(exc.code, str(exc), fields), status=status.HTTP_400_BAD_REQUEST)


def exception_handler(exc, context):
    """Domain errors map to their status; everything else is DRF's own answer (404, 403,
    401 with ``WWW-Authenticate``, 429 with ``Retry-After``…) reshaped into our error body."""
    if isinstance(exc, domain.UserCreditsError):
        set_rollback()
        return _domain_response(exc)
    response = drf_exception_handler(exc, context)
    if response is not None:
        response.data = _reshape(response.data)
    return response


def _reshape(data):
    if isinstance(data, list):  # a ValidationError raised with a list of messages
        return error_body("invalid", " ".join(str(d) for d in data))
    if set(data) == {"detail"}:
        detail = data["detail"]
        return error_body(getattr(detail, "code", None) or "error", str(detail))
    # A ValidationError about fields.
    fields = {k: v for k, v in data.items() if k != "non_field_errors"}
    general = data.get("non_field_errors")
    message = str(general[0]) if general else gettext("Invalid input.")
    return error_body("invalid", message, fields or None)
