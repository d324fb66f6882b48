"""The error body shared by the REST API and the metered views: ``{"code", "detail", …}``.

No DRF import here: plain Django views (``user_credits.metering``) build the same bodies.
"""

from .conf import app_settings


def error_body(code, detail, fields=None):
    body = {"code": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return body


def payment_required_body(exc):
    """The 402 body of an ``InsufficientCredits``: what was asked, what is there, where to buy."""
    body = error_body(exc.code, str(exc))
    body.update(
        requested=exc.requested, available=exc.available, upgrade_url=app_settings.UPGRADE_URL
    )
    return body
