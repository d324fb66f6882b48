"""Test settings: SQLite in memory by default; PostgreSQL when DATABASE_URL is set."""

import os

import dj_database_url

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = os.environ.get("TEST_TIME_ZONE", "UTC")

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
    "djstripe",
    "user_credits",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # Accept-Language picks the catalog
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
USER_CREDITS_SCREENSHOTS = os.environ.get("USER_CREDITS_SCREENSHOTS", "")

ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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

# An empty DATABASE_URL (tox's SQLite environments) means the default.
DATABASES = {
    "default": dj_database_url.parse(os.environ.get("DATABASE_URL") or "sqlite://:memory:")
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Threads in live-server tests share the in-memory database.
    DATABASES["default"]["TEST"] = {"NAME": "file:user_credits_tests?mode=memory&cache=shared"}
if os.environ.get("USER_CREDITS_TEST_PGBOUNCER"):
    # DATABASE_URL points at PgBouncer in transaction pooling mode (.ci/run): a server-side
    # cursor would outlive the transaction that owns its server connection.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# No REST_FRAMEWORK setting: the API needs none (DRF's defaults authenticate by session and
# basic auth; the API's views set their own schema class, permissions and pagination).

STRIPE_LIVE_MODE = False
STRIPE_TEST_SECRET_KEY = "sk_test_usercreditstests0000000000"
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"

USER_CREDITS = {}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"djstripe": {"handlers": ["null"], "propagate": False}},
}
