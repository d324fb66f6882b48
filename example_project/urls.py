from django.apps import apps
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the header's switch
    path("api/credits/", include("user_credits.api.urls")),
    # The API explorers, over the app's own schema view (api/credits/schema/).
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="user_credits_api:schema"),
        name="swagger-ui",
    ),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="user_credits_api:schema"),
        name="redoc",
    ),
    path("", include("example_project.shop.urls")),
]
if apps.is_installed("djstripe"):  # with Stripe keys (see settings)
    urlpatterns.insert(1, path("stripe/", include("djstripe.urls", namespace="djstripe")))
