"""Test settings with a custom holder model: the example's ``Workspace`` (a team) owns the
credits, its owner and members spend them (``DESIGN.md`` §6).

``DJANGO_SETTINGS_MODULE=tests.settings_workspaces pytest`` runs the whole suite so; the tests
get their holders from ``tests.factories.make_holder`` (a user under ``tests.settings``, a
workspace owned by that user here).
"""

from .settings import *  # noqa: F403
from .settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "example_project.workspaces"]

USER_CREDITS_HOLDER_MODEL = "workspaces.Workspace"
DJSTRIPE_SUBSCRIBER_MODEL = USER_CREDITS_HOLDER_MODEL
USER_CREDITS = {
    "HOLDER_FROM_REQUEST": "example_project.workspaces.hooks.current_workspace",
    "CAN_SPEND": "example_project.workspaces.hooks.is_member",
}
