"""Payment providers: start a payment for an order; notifications call the order services."""

from django.apps import apps
from django.utils.module_loading import import_string

from ..conf import app_settings


def get_provider():
    """An instance of the provider named by ``USER_CREDITS['PAYMENT_PROVIDER']``."""
    return import_string(app_settings.PAYMENT_PROVIDER)()


def connect_provider_handlers():
    """Connect the dj-stripe webhook receivers when dj-stripe is installed."""
    if apps.is_installed("djstripe"):
        from .stripe import webhooks  # noqa: F401  (its receiver connects on import)
