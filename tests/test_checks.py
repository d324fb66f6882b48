import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.urls import include, path

from user_credits.checks import Codes, check_settings, check_urls
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


# --- what the mounted URLs need ------------------------------------------------------------

# This module is also a URLconf (ROOT_URLCONF="tests.test_checks"): the API nested one level
# down, dj-stripe's URLs not mounted.
urlpatterns = [path("v1/", include([path("credits/", include("user_credits.api.urls"))]))]
STRIPE = {"PAYMENT_PROVIDER": "user_credits.payments.stripe.StripeProvider"}


def url_ids():
    return {message.id for message in check_urls()}


def test_the_api_mounted_without_its_apps_is_an_error_with_a_hint():
    from django.conf import settings

    apps = [a for a in settings.INSTALLED_APPS if a not in ("django_filters", "drf_spectacular")]
    with override_settings(INSTALLED_APPS=apps):
        (message,) = [m for m in check_urls() if m.id == Codes.API_APPS]
        assert "django_filters, drf_spectacular are not in INSTALLED_APPS" in message.msg
        assert "'rest_framework', 'django_filters', 'drf_spectacular'" in message.hint
        with override_settings(ROOT_URLCONF="tests.test_checks"):  # mounted one level down
            assert Codes.API_APPS in url_ids()
        with override_settings(ROOT_URLCONF="example_project.shop.urls"):  # not mounted
            assert url_ids() == set()
    assert url_ids() == set()


def test_stripe_provider_without_djstripe_urls_or_key_warns():
    with override_settings(USER_CREDITS=STRIPE):
        assert url_ids() == set() and ids() == set()  # tests.urls mounts djstripe.urls
        with override_settings(ROOT_URLCONF="tests.test_checks"):
            (message,) = check_urls()
            assert message.id == Codes.DJSTRIPE_URLS and "djstripe.urls" in message.hint
        with override_settings(STRIPE_TEST_SECRET_KEY=""):
            (message,) = check_settings()
            assert message.id == Codes.STRIPE_KEY and "STRIPE_TEST_SECRET_KEY" in message.msg
        with override_settings(STRIPE_LIVE_MODE=True):
            assert Codes.STRIPE_KEY in ids()
    with override_settings(ROOT_URLCONF="tests.test_checks"):  # the manual provider
        assert url_ids() == set()


def test_stripe_provider_without_djstripe_is_reported_not_a_crash(tmp_path):
    """In a process that never imported dj-stripe, naming the Stripe provider without it
    installed gives E004 and its hint (importing the provider would fail on dj-stripe's
    models)."""
    (tmp_path / "bare_settings.py").write_text(
        "SECRET_KEY = 'x'\nUSE_TZ = True\nROOT_URLCONF = 'bare_settings'\nurlpatterns = []\n"
        "INSTALLED_APPS = ['django.contrib.auth', 'django.contrib.contenttypes', "
        "'user_credits']\n"
        "USER_CREDITS = {'PAYMENT_PROVIDER': 'user_credits.payments.stripe.StripeProvider'}\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bare_settings", "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "django", "check"], env=env, capture_output=True, text=True
    )
    assert run.returncode == 1, run.stderr
    assert "user_credits.E004" in run.stderr and "Traceback" not in run.stderr
    assert "Add 'djstripe' to INSTALLED_APPS" in run.stderr
