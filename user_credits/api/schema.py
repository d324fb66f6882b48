"""The API documents itself whatever the site's ``REST_FRAMEWORK`` settings say.

drf-spectacular's ``extend_schema`` builds on ``DEFAULT_SCHEMA_CLASS`` when it decorates a view
method, and that is DRF's own ``AutoSchema`` unless the site changed it, which breaks the
schema (``get_operation() takes 3 positional arguments``). This ``extend_schema`` builds on
drf-spectacular's ``AutoSchema`` (or the site's subclass of it), and ``SchemaView`` serves the
schema of this API alone, under the prefix the site mounted it at.
"""

import inspect

from django.urls import include, path
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.settings import patched_settings
from drf_spectacular.utils import extend_schema as spectacular_extend_schema
from drf_spectacular.views import SCHEMA_KWARGS, SpectacularAPIView
from rest_framework.settings import api_settings

#: drf-spectacular settings of this API's schema (the site's others apply).
SCHEMA_SETTINGS = {
    "TITLE": "user_credits API",
    "DESCRIPTION": "Offers, orders, credits, ledger, consumption and holds.",
    # Several models have a "kind" or a "status": name each choice set after its model.
    "ENUM_NAME_OVERRIDES": {
        "OfferKindEnum": "user_credits.models.OfferKind",
        "EntryKindEnum": "user_credits.models.EntryKind",
        "OrderStatusEnum": "user_credits.models.OrderStatus",
        "HoldStatusEnum": "user_credits.models.HoldStatus",
        "LotStatusEnum": "user_credits.models.LotStatus",
        "ConsumeStatusEnum": "user_credits.services.bulk.STATUSES",
        "SubscriptionStatusEnum": "user_credits.models.SubscriptionStatus",
    },
}


def schema_settings():
    from .. import __version__

    return {**SCHEMA_SETTINGS, "VERSION": __version__}


def schema_class():
    """The site's ``DEFAULT_SCHEMA_CLASS`` when it is drf-spectacular's, else ``AutoSchema``."""
    default = api_settings.DEFAULT_SCHEMA_CLASS
    if inspect.isclass(default) and issubclass(default, AutoSchema):
        return default
    return AutoSchema


def extend_schema(**kwargs):
    """drf-spectacular's ``extend_schema``, over drf-spectacular's ``AutoSchema``."""
    decorate = spectacular_extend_schema(**kwargs)

    def decorator(view_method):
        kwargs_schema = getattr(view_method, "kwargs", {}).get("schema")
        if getattr(view_method, "schema", None) is None and kwargs_schema is None:
            view_method.schema = schema_class()
        return decorate(view_method)

    return decorator


def api_patterns(prefix):
    """This API's URL patterns as if mounted at ``prefix`` (e.g. ``"api/credits/"``)."""
    from . import urls  # the URLconf imports this module

    return [path(prefix, include((urls.urlpatterns, urls.app_name)))]


def api_schema(prefix="api/credits/", *, request=None) -> dict:
    """The OpenAPI 3 schema of this API mounted at ``prefix``, as ``schema/`` serves it."""
    with patched_settings(schema_settings()):
        generator = SchemaGenerator(patterns=api_patterns(prefix))
        return generator.get_schema(request=request, public=True)


class SchemaView(SpectacularAPIView):
    """OpenAPI 3 schema of this API (YAML, or JSON with ``?format=json``)."""

    schema = AutoSchema()

    @extend_schema(**SCHEMA_KWARGS)
    def get(self, request, *args, **kwargs):
        # Mounted at "<prefix>schema/": document this API under that prefix, not every DRF
        # view of the site.
        self.patterns = api_patterns(request.path_info.lstrip("/").removesuffix("schema/"))
        self.custom_settings = schema_settings()
        return super().get(request, *args, **kwargs)
