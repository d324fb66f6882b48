"""The example site in "workspaces" mode: credits belong to a ``Workspace`` (a team), bought by
one of its members and spent by all of them, each within their spending limit.

``DJANGO_SETTINGS_MODULE=example_project.settings_workspaces python manage.py migrate`` on a
fresh database (the holder model is chosen before the first ``migrate``), then
``python manage.py setup_workspaces`` for a demo team.
"""

import os

from .settings import *  # noqa: F403
from .settings import BASE_DIR, INSTALLED_APPS, USER_CREDITS

INSTALLED_APPS = [*INSTALLED_APPS, "example_project.workspaces"]

if not os.environ.get("DATABASE_URL"):
    DATABASES = {  # its own file: the holder model cannot change under existing data
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("WORKSPACES_DB") or BASE_DIR / "db-workspaces.sqlite3",
        }
    }

USER_CREDITS_HOLDER_MODEL = "workspaces.Workspace"
# With Stripe, the customer of an order is its holder: dj-stripe's subscriber is the same model.
DJSTRIPE_SUBSCRIBER_MODEL = USER_CREDITS_HOLDER_MODEL
USER_CREDITS = {
    **USER_CREDITS,
    "HOLDER_FROM_REQUEST": "example_project.workspaces.hooks.current_workspace",
    "CAN_SPEND": "example_project.workspaces.hooks.is_member",
}
