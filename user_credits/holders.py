"""Who pays for a request, and who may spend a holder's credits.

Two hooks, each a dotted path in ``USER_CREDITS`` (as dj-stripe's subscriber callback):

- ``HOLDER_FROM_REQUEST``: ``callable(request) -> holder | None``; default ``request.user``
  when authenticated. ``None`` (or an anonymous user) means the request has no holder: it is
  refused as unauthenticated before anything is charged.
- ``CAN_SPEND``: ``callable(user, holder) -> bool``; default: the user is the holder. Asked when
  the request has an authenticated user; a holder that the request hook returns for an
  anonymous request (an API key, say) was authenticated by that hook.

Metering, and later the API and pages, go through ``holder_from_request`` and ``can_spend``
only, so a site that makes teams or API keys pay changes two settings, not its views.
"""

from functools import lru_cache

from django.apps import apps
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.utils.module_loading import import_string
from django.utils.translation import gettext

from .conf import app_settings


def holder_model_name() -> str:
    """``settings.USER_CREDITS_HOLDER_MODEL`` (``"app_label.Model"``), default the user model.

    The model that owns accounts, orders, holds and consumption records. Set it before the
    first ``migrate``: the foreign keys are created to it (with the default, to the user
    model, as before).
    """
    return getattr(settings, "USER_CREDITS_HOLDER_MODEL", None) or settings.AUTH_USER_MODEL


def get_holder_model() -> type[Model]:
    return apps.get_model(holder_model_name(), require_ready=False)


def holder_is_user() -> bool:
    """Whether holders are users (the default): a user is then their own holder."""
    return get_holder_model() is apps.get_model(settings.AUTH_USER_MODEL, require_ready=False)


def request_user(request):
    """The default holder: the request's authenticated user, else ``None``."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return user


def user_is_holder(user, holder) -> bool:
    """The default spending rule: a user spends their own credits only."""
    if user is None or holder is None:
        return False
    if isinstance(holder, Model):
        return holder == user
    return holder == user.pk


@lru_cache(maxsize=16)
def _hook(path):
    return import_string(path)


def holder_from_request(request):
    """The holder that pays for ``request`` (``None``: nobody, the request is anonymous)."""
    holder = _hook(app_settings.HOLDER_FROM_REQUEST)(request)
    if holder is None or getattr(holder, "is_anonymous", False):
        return None
    return holder


def member_from_request(request):
    """The authenticated user acting for the holder, else ``None``."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return user


def can_spend(user, holder) -> bool:
    return bool(_hook(app_settings.CAN_SPEND)(user, holder))


def requester_holder(request, *, required: bool = True):
    """The holder whose own data ``request`` reads or spends: ``HOLDER_FROM_REQUEST``'s answer,
    once ``CAN_SPEND`` allows the authenticated user. ``None`` for no holder when not
    ``required``; else a refused user gets ``PermissionDenied`` (403) and no holder
    ``NotAuthenticated``-like ``PermissionDenied``."""
    holder = holder_from_request(request)
    if holder is None:
        if required:
            raise PermissionDenied(gettext("This request has no credits holder."))
        return None
    user = member_from_request(request)
    if user is not None and not can_spend(user, holder):
        raise PermissionDenied(gettext("You may not use these credits."))
    return holder
