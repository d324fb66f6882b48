"""The bad-input matrix: each case answers its documented 4xx code and changes nothing."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from user_credits import services

from .factories import buy, make_group, make_holder, make_offer, make_user, person, table_snapshot

pytestmark = pytest.mark.django_db
API = "/api/credits/"
LATER = (timezone.now() + timedelta(days=3)).isoformat()
PAST = "2001-01-01T00:00:00Z"


@pytest.fixture
def world(catalog):
    alice, bob = make_holder("alice"), make_holder("bob")
    robot = make_user("robot")
    robot.user_permissions.add(Permission.objects.get(codename="consume_credits"))
    staff = make_user("staff", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="add_creditlot"))
    group = make_group("g")
    services.grant(alice, group, 10)
    services.consume(alice, group, 1, idempotency_key="used")
    limited = make_offer("Limited", group=group, quantity_limit=3, currency="eur")
    return {
        "alice": alice,
        "bob": bob,
        "robot": robot,
        "staff": staff,
        "limited": limited.pk,
        "inactive": make_offer("Old", group=group, is_active=False).pk,
        "vip": catalog["VIP EventTalk"].pk,
        "pending": services.create_order(alice, limited).pk,
        "bobs": services.create_order(bob, limited).pk,
        "paid": buy(alice, make_offer("Paid", group=group, price=Decimal("2"))).pk,
    }


def consume(body, key="k-new"):
    return (
        "robot",
        "post",
        "consume/",
        {"holder": "ALICE", "offer_group": "g", "count": 1, **body},
        {"HTTP_IDEMPOTENCY_KEY": key} if key else {},
    )


def order(body):
    return ("alice", "post", "orders/", {"offer": "LIMITED", **body}, {})


def grant(body):
    base = {"holder": "ALICE", "offer_group": "g", "tokens": 5, "reason": "r"}
    return ("staff", "post", "grants/", {**base, **body}, {})


CASES = {
    "count zero": (consume({"count": 0}), 400),
    "count negative": (consume({"count": -1}), 400),
    "count huge": (consume({"count": 10**13}), 400),
    "count float": (consume({"count": 1.5}), 400),
    "count integral float": (consume({"count": 2.0}), 400),
    "count string": (consume({"count": "3"}), 400),
    "count boolean": (consume({"count": True}), 400),
    "count null": (consume({"count": None}), 400),
    "count missing": (
        (
            "robot",
            "post",
            "consume/",
            {"holder": "ALICE", "offer_group": "g"},
            {"HTTP_IDEMPOTENCY_KEY": "k"},
        ),
        400,
    ),
    "user missing": (
        (
            "robot",
            "post",
            "consume/",
            {"offer_group": "g", "count": 1},
            {"HTTP_IDEMPOTENCY_KEY": "k"},
        ),
        400,
    ),
    "user unknown": (consume({"holder": 999_999}), 400),
    "user string": (consume({"holder": "alice"}), 400),
    "group unknown": (consume({"offer_group": "nope"}), 400),
    "group empty": (consume({"offer_group": ""}), 400),
    "group overlong": (consume({"offer_group": "g" * 300}), 400),
    "group odd unicode": (consume({"offer_group": "g\u0000😀\u202e"}), 400),
    "metadata not an object": (consume({"metadata": ["a"]}), 400),
    "extra field": (consume({"price": 0}), 400),
    "no idempotency key": (consume({}, key=None), 400),
    "idempotency key overlong": (consume({}, key="k" * 300), 400),
    "key reused for another payload": (consume({"count": 2}, key="used"), 409),
    "not enough tokens": (consume({"count": 500}), 402),
    "offer unknown": (order({"offer": 999_999}), 400),
    "offer inactive": (order({"offer": "INACTIVE"}), 400),
    "offer not unlocked": (order({"offer": "VIP"}), 400),
    "offer string": (order({"offer": "one"}), 400),
    "quantity zero": (order({"quantity": 0}), 400),
    "quantity over the limit": (order({"quantity": 4}), 400),
    "quantity float": (order({"quantity": 1.5}), 400),
    "quantity huge": (order({"quantity": 10**9}), 400),
    "start in the past": (order({"starts": PAST}), 400),
    "start not a date": (order({"starts": "next tuesday"}), 400),
    "wrong currency": (order({"currency": "usd"}), 400),
    "currency overlong": (order({"currency": "euro"}), 400),
    "order extra field": (order({"total": "0.00"}), 400),
    "pay someone else's order": (("alice", "post", "orders/BOBS/pay/", None, {}), 404),
    "read someone else's order": (("alice", "get", "orders/BOBS/", None, {}), 404),
    "pay a paid order": (("alice", "post", "orders/PAID/pay/", None, {}), 409),
    "order id not a number": (("alice", "get", "orders/abc/", None, {}), 404),
    "orders filter unknown status": (("alice", "get", "orders/?status=gone", None, {}), 400),
    "ledger filter unknown kind": (("alice", "get", "ledger/?kind=steal", None, {}), 400),
    "ledger filter bad date": (("alice", "get", "ledger/?created_after=yesterday", None, {}), 400),
    "page out of range": (("alice", "get", "orders/?page=99", None, {}), 404),
    "ledger cursor not base64": (("alice", "get", "ledger/?cursor=a", None, {}), 404),
    "ledger cursor bad offset": (("alice", "get", "ledger/?cursor=bz14", None, {}), 404),
    "ledger cursor bad position": (("alice", "get", "ledger/?cursor=cD1nYXJiYWdl", None, {}), 404),
    "ledger cursor month 13": (
        ("alice", "get", "ledger/?cursor=cD0yMDI0LTEzLTAxKzEwJTNBMDAlM0EwMA%3D%3D", None, {}),
        404,
    ),
    "filter date offset beyond what databases take": (
        ("alice", "get", "orders/?created_after=0410-08-05T00:49:08-22:05", None, {}),
        200,
    ),
    "filter date beyond year 1 in UTC": (
        ("alice", "get", "ledger/?created_after=0001-01-01T00:00:00%2B05:00", None, {}),
        400,
    ),
    "grant zero tokens": (grant({"tokens": 0}), 400),
    "grant without reason": (
        ("staff", "post", "grants/", {"holder": "ALICE", "offer_group": "g", "tokens": 5}, {}),
        400,
    ),
    "grant expiring in the past": (grant({"expires": PAST}), 400),
    "grant unknown category": (grant({"category": "gift"}), 400),
    "grant reason overlong": (grant({"reason": "r" * 500}), 400),
    "grant unknown group": (grant({"offer_group": "nope"}), 400),
}


def resolve(value, world):
    if isinstance(value, str):
        for name in ("ALICE", "LIMITED", "INACTIVE", "VIP", "BOBS", "PAID"):
            if value == name:
                return world[name.lower()] if name != "ALICE" else world["alice"].pk
            value = value.replace(
                name, str(world[name.lower()] if name != "ALICE" else world["alice"].pk)
            )
        return value
    if isinstance(value, dict):
        return {k: resolve(v, world) for k, v in value.items()}
    return value


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input(world, case):
    (actor, method, path, body, headers), expected = CASES[case]
    client = APIClient()
    client.force_authenticate(person(world[actor]))
    before = table_snapshot()
    response = getattr(client, method)(
        API + resolve(path, world), resolve(body, world), format="json", **headers
    )
    assert response.status_code == expected, response.content
    if expected >= 400:
        assert set(response.json()) >= {"code", "detail"}
    assert table_snapshot() == before


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe", b""])
def test_bodies_that_are_not_a_json_object(world, raw):
    client = APIClient()
    client.force_authenticate(person(world["robot"]))
    before = table_snapshot()
    response = client.post(
        API + "consume/", raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-raw"
    )
    assert response.status_code == 400
    assert table_snapshot() == before


def test_webhook_signature_cases(deliver, endpoint, world, client):
    from user_credits.payments.stripe import ORDER_KEY

    from . import stripe_fake as fake

    intent = fake.payment_intent(
        amount=1000, currency="eur", metadata={ORDER_KEY: str(world["pending"])}
    )
    evt = fake.event("payment_intent.succeeded", intent)
    before = table_snapshot()
    assert deliver(evt, secret="whsec_wrong").status_code == 400
    assert deliver(evt, timestamp=int(time.time()) - 3600).status_code == 400
    url = f"/stripe/webhook/{endpoint.djstripe_uuid}/"
    assert client.post(url, "{}", content_type="application/json").status_code == 400  # unsigned
    assert (
        client.post(
            "/stripe/webhook/00000000-0000-0000-0000-000000000000/",
            "{}",
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE="t=1,v1=x",
        ).status_code
        == 404
    )
    assert table_snapshot() == before
