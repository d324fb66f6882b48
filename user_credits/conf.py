"""The ``USER_CREDITS`` settings dict, read over defaults.

Read settings only through ``app_settings``: unknown keys raise, and values are reloaded when
``override_settings`` changes ``USER_CREDITS``.
"""

from django.conf import settings
from django.core.signals import setting_changed

from .exceptions import ConfigurationError

DEFAULTS = {
    # Allow consumption beyond the balance; the shortfall is settled by the next grant.
    "ALLOW_OVERDRAFT": False,
    # Per offer group override of ALLOW_OVERDRAFT: {"group-key": True}.
    "OVERDRAFT_GROUPS": {},
    # Dotted path of the payment provider class.
    "PAYMENT_PROVIDER": "user_credits.payments.manual.ManualProvider",
    # Stripe provider: "payment_intent" (returns a client secret) or "checkout" (returns a URL).
    "STRIPE_FLOW": "checkout",
    # Where Stripe Checkout sends the buyer back; "{order_id}" is replaced.
    "CHECKOUT_SUCCESS_URL": "http://localhost:8000/orders/{order_id}/",
    "CHECKOUT_CANCEL_URL": "http://localhost:8000/pricing/",
    # Rows handled per transaction by expire_credits.
    "EXPIRE_BATCH_SIZE": 1000,
    # How long a hold lives before it is released (seconds).
    "HOLD_TTL": 900,
    # On PostgreSQL, consume and expire through the PL/pgSQL functions (one round trip).
    # False uses the portable path, as on other databases.
    "POSTGRES_FAST_PATH": True,
    # Dotted path of callable(request) -> holder or None: who pays for a request.
    "HOLDER_FROM_REQUEST": "user_credits.holders.request_user",
    # Dotted path of callable(user, holder) -> bool: may this user spend the holder's credits.
    "CAN_SPEND": "user_credits.holders.user_is_holder",
    # Where a 402 from a metered view sends the buyer (a URL or path; None: nowhere).
    "UPGRADE_URL": None,
    # Seconds a subscription period's tokens outlive the period: a renewal paid within this
    # grace finds the previous period's lot alive (its rollover still applies).
    "RENEWAL_GRACE": 3600,
    # Charge metered responses with a 4xx status too (a 5xx or an exception never is).
    "CHARGE_CLIENT_ERRORS": False,
    # Most items in one consume_many call (and one POST consume/batch/).
    "BATCH_MAX": 1000,
    # Failed auto-recharges in a row after which an auto-recharge disables itself.
    "AUTO_RECHARGE_MAX_FAILURES": 3,
    # Dotted path of callable(holder_id, offer_group_id) that runs
    # services.start_auto_recharge elsewhere (a task queue); None: in this process, right
    # after the write commits.
    "AUTO_RECHARGE_RUNNER": None,
}


class AppSettings:
    def __init__(self, defaults=None):
        self.defaults = defaults or DEFAULTS
        self._cached = None

    @property
    def user_settings(self):
        return getattr(settings, "USER_CREDITS", None) or {}

    def unknown_keys(self):
        return sorted(set(self.user_settings) - set(self.defaults))

    def _load(self):
        unknown = self.unknown_keys()
        if unknown:
            raise ConfigurationError(
                f"Unknown USER_CREDITS setting(s): {', '.join(unknown)}. "
                f"Known settings: {', '.join(sorted(self.defaults))}."
            )
        return {**self.defaults, **self.user_settings}

    def __getattr__(self, name):
        if name not in self.defaults:
            raise AttributeError(f"Unknown USER_CREDITS setting: {name!r}")
        if self._cached is None:
            self._cached = self._load()
        return self._cached[name]

    def overdraft_allowed(self, group_key: str) -> bool:
        return bool(self.OVERDRAFT_GROUPS.get(group_key, self.ALLOW_OVERDRAFT))

    def reload(self):
        self._cached = None


app_settings = AppSettings()


def _reload_app_settings(*, setting, **kwargs):
    if setting == "USER_CREDITS":
        app_settings.reload()


setting_changed.connect(_reload_app_settings)
