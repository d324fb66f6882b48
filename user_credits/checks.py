"""System checks: ``user_credits.E001``… errors and ``user_credits.W001``… warnings."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string


class Codes:
    USE_TZ = "user_credits.E001"
    UNKNOWN_SETTING = "user_credits.E002"
    PROVIDER_IMPORT = "user_credits.E003"
    DJSTRIPE_MISSING = "user_credits.E004"
    BATCH_SIZE = "user_credits.E005"
    STRIPE_FLOW = "user_credits.E006"
    HOOK_IMPORT = "user_credits.E007"
    DJSTRIPE_FK = "user_credits.W001"


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs):
    from .conf import app_settings

    errors = []
    if not settings.USE_TZ:
        errors.append(
            Error(
                "user_credits needs USE_TZ = True.",
                hint="Lot starts and expiries are compared across time zones; set USE_TZ = True.",
                id=Codes.USE_TZ,
            )
        )
    unknown = app_settings.unknown_keys()
    if unknown:
        errors.append(
            Error(
                f"Unknown USER_CREDITS setting(s): {', '.join(unknown)}.",
                hint="Check the spelling against the settings table in the README.",
                id=Codes.UNKNOWN_SETTING,
            )
        )
        return errors

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

    path = app_settings.PAYMENT_PROVIDER
    try:
        provider = import_string(path)
    except ImportError as exc:
        errors.append(
            Error(
                f"USER_CREDITS['PAYMENT_PROVIDER'] cannot be imported: {path!r} ({exc}).",
                hint="Use 'user_credits.payments.manual.ManualProvider' or "
                "'user_credits.payments.stripe.StripeProvider'.",
                id=Codes.PROVIDER_IMPORT,
            )
        )
        return errors
    if getattr(provider, "requires_djstripe", False):
        from django.apps import apps

        if not apps.is_installed("djstripe"):
            errors.append(
                Error(
                    "The Stripe payment provider needs dj-stripe in INSTALLED_APPS.",
                    hint="Add 'djstripe' to INSTALLED_APPS and include 'djstripe.urls'.",
                    id=Codes.DJSTRIPE_MISSING,
                )
            )
        elif getattr(settings, "DJSTRIPE_FOREIGN_KEY_TO_FIELD", "id") != "id":
            errors.append(
                Warning(
                    "DJSTRIPE_FOREIGN_KEY_TO_FIELD should be 'id'.",
                    hint="Set DJSTRIPE_FOREIGN_KEY_TO_FIELD = 'id' as dj-stripe recommends.",
                    id=Codes.DJSTRIPE_FK,
                )
            )
    return errors
