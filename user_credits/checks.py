"""System checks: ``user_credits.E001``… errors and ``user_credits.W001``… warnings."""

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.urls import URLResolver, get_resolver
from django.utils.module_loading import import_string


class Codes:
    USE_TZ = "user_credits.E001"
    UNKNOWN_SETTING = "user_credits.E002"
    PROVIDER_IMPORT = "user_credits.E003"
    DJSTRIPE_MISSING = "user_credits.E004"
    BATCH_SIZE = "user_credits.E005"
    STRIPE_FLOW = "user_credits.E006"
    API_APPS = "user_credits.E007"
    HOOK_IMPORT = "user_credits.E008"
    DJSTRIPE_FK = "user_credits.W001"
    DJSTRIPE_URLS = "user_credits.W002"
    STRIPE_KEY = "user_credits.W003"
    RECURRING_PRICE = "user_credits.W004"


#: The apps the REST API (``user_credits.api.urls``) needs in INSTALLED_APPS.
API_APPS = ("rest_framework", "django_filters", "drf_spectacular")
#: Providers under this module need dj-stripe; importing them without it fails.
STRIPE_PROVIDERS = "user_credits.payments.stripe"


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs):
    """The settings the app reads: each concern checked by a function of its own."""
    from .conf import app_settings

    errors = _check_time_zone()
    unknown = app_settings.unknown_keys()
    if unknown:
        errors.append(
            Error(
                f"Unknown USER_CREDITS setting(s): {', '.join(unknown)}.",
                hint="Check the spelling against the settings table in the README.",
                id=Codes.UNKNOWN_SETTING,
            )
        )
        return errors  # the other settings cannot be read
    return errors + _check_values(app_settings) + _check_provider(app_settings)


def _check_time_zone():
    if settings.USE_TZ:
        return []
    return [
        Error(
            "user_credits needs USE_TZ = True.",
            hint="Lot starts and expiries are compared across time zones; set USE_TZ = True.",
            id=Codes.USE_TZ,
        )
    ]


def _check_values(app_settings):
    errors = []
    batch = app_settings.EXPIRE_BATCH_SIZE
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        errors.append(
            Error(
                "USER_CREDITS['EXPIRE_BATCH_SIZE'] must be a positive integer.",
                id=Codes.BATCH_SIZE,
            )
        )
    if app_settings.STRIPE_FLOW not in ("checkout", "payment_intent"):
        errors.append(
            Error(
                "USER_CREDITS['STRIPE_FLOW'] must be 'checkout' or 'payment_intent'.",
                id=Codes.STRIPE_FLOW,
            )
        )
    for name in ("HOLDER_FROM_REQUEST", "CAN_SPEND"):
        hook = getattr(app_settings, name)
        try:
            import_string(hook)
        except ImportError as exc:
            errors.append(
                Error(
                    f"USER_CREDITS[{name!r}] cannot be imported: {hook!r} ({exc}).",
                    hint="Give the dotted path of a function, e.g. 'myapp.credits.holder'.",
                    id=Codes.HOOK_IMPORT,
                )
            )
    return errors


DJSTRIPE_MISSING = Error(
    "The Stripe payment provider needs dj-stripe in INSTALLED_APPS.",
    hint="Add 'djstripe' to INSTALLED_APPS, set DJSTRIPE_FOREIGN_KEY_TO_FIELD = 'id' and "
    "the Stripe keys, and include 'djstripe.urls' (the README's Stripe section).",
    id=Codes.DJSTRIPE_MISSING,
)


def _check_provider(app_settings):
    path = app_settings.PAYMENT_PROVIDER
    if path.startswith(STRIPE_PROVIDERS) and not apps.is_installed("djstripe"):
        return [DJSTRIPE_MISSING]  # importing it would fail on dj-stripe's models
    try:
        provider = import_string(path)
    except (ImportError, RuntimeError) as exc:
        return [
            Error(
                f"USER_CREDITS['PAYMENT_PROVIDER'] cannot be imported: {path!r} ({exc}).",
                hint="Use 'user_credits.payments.manual.ManualProvider' or "
                "'user_credits.payments.stripe.StripeProvider'.",
                id=Codes.PROVIDER_IMPORT,
            )
        ]
    if not getattr(provider, "requires_djstripe", False):
        return []
    if not apps.is_installed("djstripe"):
        return [DJSTRIPE_MISSING]
    return _check_stripe_settings()


def _check_stripe_settings():
    errors = []
    if getattr(settings, "DJSTRIPE_FOREIGN_KEY_TO_FIELD", "id") != "id":
        errors.append(
            Warning(
                "DJSTRIPE_FOREIGN_KEY_TO_FIELD should be 'id'.",
                hint="Set DJSTRIPE_FOREIGN_KEY_TO_FIELD = 'id' as dj-stripe recommends.",
                id=Codes.DJSTRIPE_FK,
            )
        )
    # The key the provider starts payments with (dj-stripe's default API key).
    live = getattr(settings, "STRIPE_LIVE_MODE", False)
    key_name = "STRIPE_LIVE_SECRET_KEY" if live else "STRIPE_TEST_SECRET_KEY"
    if not (getattr(settings, "STRIPE_SECRET_KEY", "") or getattr(settings, key_name, "")):
        errors.append(
            Warning(
                f"The Stripe payment provider has no secret key: {key_name} is not set "
                f"(STRIPE_LIVE_MODE = {live}); starting a payment will fail.",
                hint=f"Set {key_name} (e.g. from the environment), or use the manual provider.",
                id=Codes.STRIPE_KEY,
            )
        )
    return errors


def _mounted(patterns, app_name):
    """Whether ``patterns`` include a URLconf of ``app_name`` (at any depth)."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if app_name in (pattern.app_name, pattern.namespace):
                return True
            if _mounted(pattern.url_patterns, app_name):
                return True
    return False


@register(Tags.urls)
def check_urls(app_configs=None, **kwargs):
    """What the mounted URLs need: the API's apps; Stripe's webhook URLs for its provider."""
    if not getattr(settings, "ROOT_URLCONF", None):
        return []
    from .conf import app_settings

    errors = []
    patterns = get_resolver().url_patterns
    missing = [app for app in API_APPS if not apps.is_installed(app)]
    if missing and _mounted(patterns, "user_credits_api"):
        errors.append(
            Error(
                f"The user_credits REST API is mounted but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not in INSTALLED_APPS.",
                hint=f"Add {', '.join(repr(app) for app in API_APPS)} to INSTALLED_APPS.",
                id=Codes.API_APPS,
            )
        )
    provider = app_settings.PAYMENT_PROVIDER if not app_settings.unknown_keys() else ""
    if (
        provider.startswith(STRIPE_PROVIDERS)
        and apps.is_installed("djstripe")
        and not _mounted(patterns, "djstripe")
    ):
        errors.append(
            Warning(
                "The Stripe payment provider is set but dj-stripe's URLs are not mounted: "
                "Stripe's events cannot reach the site, so no order would ever be paid.",
                hint='Add path("stripe/", include("djstripe.urls", namespace="djstripe")) to '
                "the site's urlpatterns.",
                id=Codes.DJSTRIPE_URLS,
            )
        )
    return errors


@register(Tags.database)
def check_recurring_prices(app_configs=None, databases=None, **kwargs):
    """A recurring paid offer sold through Stripe needs its Stripe Price (runs with
    ``check --database default`` and ``migrate``: it reads the offers)."""
    from django.db import DatabaseError

    from .conf import app_settings

    if not databases or not str(app_settings.PAYMENT_PROVIDER).startswith(STRIPE_PROVIDERS):
        return []
    from .models import Billing, Offer

    try:
        missing = list(
            Offer.objects.filter(
                billing=Billing.RECURRING, is_active=True, price__gt=0, stripe_price_id=""
            ).values_list("pk", "name")
        )
    except DatabaseError:  # not migrated yet
        return []
    return [
        Warning(
            f"Recurring offer {name!r} (#{pk}) has no Stripe price: it cannot be subscribed to.",
            hint="Run python manage.py user_credits_sync_prices (or the offers' admin action).",
            obj=f"Offer #{pk}",
            id=Codes.RECURRING_PRICE,
        )
        for pk, name in missing
    ]
