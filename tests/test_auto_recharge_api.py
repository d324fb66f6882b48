"""``auto-recharge/``: the requesting holder's auto-recharges, one per offer group."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from user_credits.models import AutoRecharge, CreditAccount

from .factories import make_group, make_holder, make_offer, person

API = "/api/credits/auto-recharge/"


@pytest.fixture
def pack(db):
    return make_offer("Pack 100", group=make_group("api-calls"), price=Decimal("5"))


@pytest.fixture
def alice(holder):
    client = APIClient()
    client.force_authenticate(person(holder))
    return client


def test_create_list_update_delete(alice, holder, pack):
    body = {"offer_group": "api-calls", "offer": pack.pk, "threshold": 20}
    created = alice.post(API, body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json() | {"created_at": None, "updated_at": None} == {
        "offer_group": "api-calls",
        "offer": pack.pk,
        "offer_name": "Pack 100",
        "threshold": 20,
        "quantity": 1,
        "enabled": True,
        "pending_order": None,
        "failures": 0,
        "last_failure": "",
        "created_at": None,
        "updated_at": None,
    }
    again = alice.post(API, {**body, "threshold": 25}, format="json")
    assert again.status_code == 200 and again.json()["threshold"] == 25
    assert AutoRecharge.objects.count() == 1

    changed = alice.patch(f"{API}api-calls/", {"quantity": 3}, format="json")
    assert changed.status_code == 200
    assert (changed.json()["quantity"], changed.json()["threshold"]) == (3, 25)
    assert [r["offer_group"] for r in alice.get(API).json()] == ["api-calls"]
    assert alice.get(f"{API}api-calls/").json()["quantity"] == 3

    assert alice.delete(f"{API}api-calls/").status_code == 204
    assert alice.get(f"{API}api-calls/").json()["enabled"] is False
    account = CreditAccount.objects.get(holder=holder)
    assert account.auto_recharge_below is None


@pytest.mark.parametrize(
    "change, field",
    [
        ({"threshold": 0}, "threshold"),
        ({"quantity": -1}, "quantity"),
        ({"offer": "other"}, "offer"),
        ({"offer_group": "nope"}, "offer_group"),
        ({"threshold": "many"}, "threshold"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(alice, pack, change, field):
    if change.get("offer") == "other":
        change["offer"] = make_offer(group=make_group("elsewhere")).pk
    body = {"offer_group": "api-calls", "offer": pack.pk, "threshold": 20, **change}
    answer = alice.post(API, body, format="json")
    assert answer.status_code == 400
    assert field in answer.json()["fields"]
    assert not AutoRecharge.objects.exists()


def test_others_recharges_are_not_seen_or_changed(alice, pack):
    from user_credits import services

    services.enable_auto_recharge(make_holder(), "api-calls", pack, threshold=5)
    assert alice.get(API).json() == []
    assert alice.get(f"{API}api-calls/").status_code == 404
    assert alice.patch(f"{API}api-calls/", {"threshold": 9}, format="json").status_code == 404
    assert alice.delete(f"{API}api-calls/").status_code == 404
    assert AutoRecharge.objects.get().threshold == 5
    assert APIClient().get(API).status_code in (401, 403)


def test_setup_needs_a_provider_that_saves_payment_methods(alice):
    answer = alice.post(f"{API}setup/")
    assert answer.status_code == 409
    assert "saves no payment method" in answer.json()["detail"]
