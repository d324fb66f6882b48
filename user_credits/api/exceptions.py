"""One error shape for the API: ``{"code": …, "detail": …, "fields": {…}}``.

Domain errors (the ``UserCreditsError`` tree) are mapped to HTTP here and only here.
"""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from .. import exceptions as domain
from ..errors import error_body

STATUS_BY_ERROR = [
    (domain.InsufficientCredits, status.HTTP_402_PAYMENT_REQUIRED),
    (domain.IdempotencyConflict, status.HTTP_409_CONFLICT),
    (domain.InvalidTransition, status.HTTP_409_CONFLICT),
    (domain.UnknownOfferGroup, status.HTTP_400_BAD_REQUEST),
    (domain.InvalidOrder, status.HTTP_400_BAD_REQUEST),
    (domain.InvalidArgument, status.HTTP_400_BAD_REQUEST),
    (domain.PaymentMismatch, status.HTTP_400_BAD_REQUEST),
    (domain.PaymentProviderError, status.HTTP_502_BAD_GATEWAY),
]

FIELD_OF_ERROR = {domain.UnknownOfferGroup: "offer_group", domain.InvalidCount: "count"}


def _domain_response(exc):
    for error_class, http_status in STATUS_BY_ERROR:
        if isinstance(exc, error_class):
            field = getattr(exc, "field", None) or FIELD_OF_ERROR.get(type(exc))
            fields = {field: [str(exc)]} if field else None
            body = error_body(exc.code, str(exc), fields)
            if isinstance(exc, domain.InsufficientCredits):
                body.update(requested=exc.requested, available=exc.available)
            return Response(body, status=http_status)
    return Response(error_body(exc.code, str(exc)), status=status.HTTP_400_BAD_REQUEST)


def exception_handler(exc, context):
    if isinstance(exc, domain.UserCreditsError):
        set_rollback()
        return _domain_response(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    set_rollback()
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = {k: v for k, v in detail.items() if k != "non_field_errors"}
            general = detail.get("non_field_errors")
            message = str(general[0]) if general else "Invalid input."
            return Response(
                error_body("invalid", message, fields or None),
                status=exc.status_code,
                headers=headers,
            )
        return Response(
            error_body(
                "invalid",
                " ".join(str(d) for d in detail) if isinstance(detail, list) else str(detail),
            ),
            status=exc.status_code,
            headers=headers,
        )
    code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
    return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
