"""``subscriptions/`` in the API and subscriptions in the admin."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from user_credits import services
from user_credits.models import Billing, Subscription, SubscriptionStatus

from .factories import make_offer, make_user, person, table_snapshot

pytestmark = pytest.mark.django_db
BASE = "/api/credits/subscriptions/"


def plan(price="20"):
    return make_offer(price=Decimal(price), token_count=50, billing=Billing.RECURRING)


@pytest.fixture
def api(holder):
    client = APIClient()
    client.force_authenticate(person(holder))
    return client


def paid_period(sub):
    services.renew_subscription(
        sub,
        period_start=datetime(2030, 1, 1, tzinfo=UTC),
        period_end=datetime(2030, 2, 1, tzinfo=UTC),
        reference="in_api",
    )


def test_list_and_retrieve_own_only(api, holder, other_holder):
    mine = services.subscribe(holder, plan())
    theirs = services.subscribe(other_holder, plan())
    body = api.get(BASE).json()
    assert [s["id"] for s in body["results"]] == [mine.pk]
    assert body["results"][0]["status"] == "incomplete"
    assert api.get(f"{BASE}{mine.pk}/").json()["offer"] == mine.offer_id
    assert api.get(f"{BASE}{theirs.pk}/").status_code == 404
    assert APIClient().get(BASE).status_code in (401, 403)


def test_subscribe_free_plan_and_refusals(api, holder):
    free = plan(price="0")
    response = api.post(BASE, {"offer": free.pk}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "active" and response.json()["payment"] is None
    before = table_snapshot()
    again = api.post(BASE, {"offer": free.pk}, format="json")
    assert again.status_code == 400 and "offer" in again.json()["fields"]
    one_time = api.post(BASE, {"offer": make_offer().pk}, format="json")
    assert one_time.status_code == 400 and "offer" in one_time.json()["fields"]
    assert table_snapshot() == before


def test_cancel_resume_and_cancel_now(api, holder):
    sub = services.subscribe(holder, plan())
    paid_period(sub)
    body = api.post(f"{BASE}{sub.pk}/cancel/", {}, format="json").json()
    assert body["status"] == "active" and body["cancel_at_period_end"] is True
    body = api.post(f"{BASE}{sub.pk}/resume/").json()
    assert body["cancel_at_period_end"] is False
    assert api.post(f"{BASE}{sub.pk}/resume/").status_code == 409
    body = api.post(f"{BASE}{sub.pk}/cancel/", {"at_period_end": False}, format="json").json()
    assert body["status"] == "canceled"
    assert api.post(f"{BASE}{sub.pk}/cancel/", {}, format="json").status_code == 409


def test_cannot_cancel_someone_elses(api, other_holder):
    sub = services.subscribe(other_holder, plan())
    assert api.post(f"{BASE}{sub.pk}/cancel/", {}, format="json").status_code == 404
    sub.refresh_from_db()
    assert sub.status == SubscriptionStatus.INCOMPLETE


def test_admin_lists_subscriptions_with_periods_and_cancels(client, holder):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    sub = services.subscribe(holder, plan())
    paid_period(sub)
    listed = client.get(reverse("admin:user_credits_subscription_changelist"))
    assert listed.status_code == 200 and sub.offer.name in listed.text
    page = client.get(reverse("admin:user_credits_subscription_change", args=[sub.pk]))
    assert page.status_code == 200 and "in_api" in page.text  # the period's order inline
    client.post(
        reverse("admin:user_credits_subscription_changelist"),
        {"action": "cancel_now", "_selected_action": [sub.pk]},
    )
    assert Subscription.objects.get(pk=sub.pk).status == SubscriptionStatus.CANCELED
