from django.apps import apps
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/credits/", include("user_credits.api.urls")),
    path("", include("example_project.shop.urls")),
]
if apps.is_installed("djstripe"):  # with Stripe keys (see settings)
    urlpatterns.insert(1, path("stripe/", include("djstripe.urls", namespace="djstripe")))
