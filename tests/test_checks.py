import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from user_credits.checks import Codes, check_settings
from user_credits.conf import app_settings
from user_credits.exceptions import ConfigurationError, UserCreditsError


def ids():
    """Our checks' ids, as ``manage.py check`` reports them."""
    return {message.id for message in check_settings()}


@pytest.mark.django_db
def test_a_sound_configuration_has_no_message():
    assert ids() == set()
    assert not [m for m in run_checks() if m.id.startswith("user_credits.")]


def test_settings_over_defaults_and_override_settings():
    assert app_settings.EXPIRE_BATCH_SIZE == 1000
    with override_settings(USER_CREDITS={"EXPIRE_BATCH_SIZE": 10, "ALLOW_OVERDRAFT": True}):
        assert app_settings.EXPIRE_BATCH_SIZE == 10
        assert app_settings.overdraft_allowed("any")
    assert app_settings.EXPIRE_BATCH_SIZE == 1000
    assert not app_settings.overdraft_allowed("any")
    with override_settings(USER_CREDITS={"OVERDRAFT_GROUPS": {"calls": True}}):
        assert app_settings.overdraft_allowed("calls") and not app_settings.overdraft_allowed("x")


def test_unknown_key_raises_and_is_reported():
    with override_settings(USER_CREDITS={"EXPIRE_BATCH": 5}):
        with pytest.raises(ConfigurationError, match="EXPIRE_BATCH") as exc:
            app_settings.EXPIRE_BATCH_SIZE  # noqa: B018
        assert isinstance(exc.value, ImproperlyConfigured)
        assert isinstance(exc.value, UserCreditsError)
        assert ids() == {Codes.UNKNOWN_SETTING}
    with pytest.raises(AttributeError):
        app_settings.NOT_A_SETTING  # noqa: B018


@pytest.mark.parametrize(
    "overrides, code",
    [
        ({"USE_TZ": False}, Codes.USE_TZ),
        ({"USER_CREDITS": {"PAYMENT_PROVIDER": "nowhere.Provider"}}, Codes.PROVIDER_IMPORT),
        ({"USER_CREDITS": {"EXPIRE_BATCH_SIZE": 0}}, Codes.BATCH_SIZE),
        ({"USER_CREDITS": {"STRIPE_FLOW": "paypal"}}, Codes.STRIPE_FLOW),
        ({"USER_CREDITS": {"HOLDER_FROM_REQUEST": "nowhere.holder"}}, Codes.HOOK_IMPORT),
        ({"USER_CREDITS": {"CAN_SPEND": "user_credits.holders.nothing"}}, Codes.HOOK_IMPORT),
        (
            {
                "USER_CREDITS": {"PAYMENT_PROVIDER": "user_credits.payments.stripe.StripeProvider"},
                "DJSTRIPE_FOREIGN_KEY_TO_FIELD": "djstripe_id",
            },
            Codes.DJSTRIPE_FK,
        ),
    ],
)
def test_each_check_fires(overrides, code):
    with override_settings(**overrides):
        assert code in ids()


def test_stripe_provider_without_djstripe():
    from django.conf import settings

    apps = [a for a in settings.INSTALLED_APPS if a != "djstripe"]
    stripe = {"PAYMENT_PROVIDER": "user_credits.payments.stripe.StripeProvider"}
    with override_settings(INSTALLED_APPS=apps, USER_CREDITS=stripe):
        assert Codes.DJSTRIPE_MISSING in ids()
