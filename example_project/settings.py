"""Settings of the example site: SQLite by default, PostgreSQL when DATABASE_URL is set."""

import os
from pathlib import Path

import dj_database_url
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "user_credits",
    "example_project.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The visitor's language: the one chosen with the switch (set_language), else the
    # browser's Accept-Language among LANGUAGES.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

WSGI_APPLICATION = "example_project.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=60
    )
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("fr", _("French"))]
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/pricing/"

# No REST_FRAMEWORK setting: the API needs none. DRF's default authentication (session and
# basic auth) is what the README's curl calls use.

# Stripe through dj-stripe: set test keys in the environment to pay with Stripe Checkout.
# Without them the site pays through the manual provider and needs neither dj-stripe's app
# nor its migrations (1–2 minutes to apply).
STRIPE_TEST_SECRET_KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")
if STRIPE_TEST_SECRET_KEY:
    INSTALLED_APPS.insert(INSTALLED_APPS.index("user_credits"), "djstripe")
    STRIPE_TEST_PUBLIC_KEY = os.environ.get("STRIPE_TEST_PUBLIC_KEY", "")
    STRIPE_LIVE_MODE = False
    DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
    DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"

USER_CREDITS = {
    "PAYMENT_PROVIDER": (
        "user_credits.payments.stripe.StripeProvider"
        if STRIPE_TEST_SECRET_KEY
        else "user_credits.payments.manual.ManualProvider"
    ),
    "CHECKOUT_SUCCESS_URL": "http://127.0.0.1:8000/credits/?order={order_id}",
    "CHECKOUT_CANCEL_URL": "http://127.0.0.1:8000/pricing/",
    # Where a metered 402 (the playground's, when the tokens run out) sends the buyer.
    "UPGRADE_URL": "/pricing/",
}
