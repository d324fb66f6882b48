"""Mount with ``path("api/credits/", include("user_credits.api.urls"))``."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from . import views
from .recharge import AutoRechargeViewSet
from .schema import SchemaView
from .subscriptions import SubscriptionViewSet

app_name = "user_credits_api"

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("offers", views.OfferViewSet, basename="offer")
router.register("orders", views.OrderViewSet, basename="order")
router.register("ledger", views.LedgerViewSet, basename="ledger")
router.register("holds", views.HoldViewSet, basename="hold")
router.register("subscriptions", SubscriptionViewSet, basename="subscription")
router.register("auto-recharge", AutoRechargeViewSet, basename="auto-recharge")

urlpatterns = [
    *router.urls,
    path("credits/", views.CreditsView.as_view(), name="credits"),
    path("consume/", views.ConsumeView.as_view(), name="consume"),
    path("grants/", views.GrantView.as_view(), name="grants"),
    path("schema/", SchemaView.as_view(), name="schema"),
    path("consume/batch/", views.ConsumeBatchView.as_view(), name="consume-batch"),
]
