from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from . import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="pricing", permanent=False)),
    path("pricing/", views.pricing, name="pricing"),
    path("buy/<int:offer_id>/", views.buy, name="buy"),
    path("orders/<int:order_id>/simulate/", views.simulate_payment, name="simulate_payment"),
    path(
        "demo/orders/<int:order_id>/simulate-payment/",
        views.SimulatePaymentAPI.as_view(),
        name="simulate_payment_api",
    ),
    path("credits/", views.credits, name="credits"),
    path("credits/ledger/", views.ledger, name="ledger"),
    path("credits/auto-recharge/", views.auto_recharge, name="auto_recharge"),
    path("playground/", views.playground, name="playground"),
    path("subscribe/<int:offer_id>/", views.subscribe, name="subscribe"),
    path(
        "plans/<int:subscription_id>/simulate-payment/",
        views.simulate_subscription_payment,
        name="simulate_subscription_payment",
    ),
    path(
        "plans/<int:subscription_id>/simulate-renewal/",
        views.simulate_renewal,
        name="simulate_renewal",
    ),
    path("plans/<int:subscription_id>/cancel/", views.cancel_plan, name="cancel_plan"),
    path("plans/<int:subscription_id>/resume/", views.resume_plan, name="resume_plan"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="shop/login.html"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="pricing"), name="logout"),
]
