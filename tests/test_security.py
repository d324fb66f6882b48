"""Who may do what: every endpoint and verb for anonymous, two users, staff and a
server-to-server client; CSRF on session writes; no secret in any response or log line."""

import logging
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings
from rest_framework.test import APIClient

from user_credits import services
from user_credits.holders import holder_is_user

from .factories import make_group, make_holder, make_offer, make_user, person

pytestmark = pytest.mark.django_db
API = "/api/credits/"
DENIED = {401, 403}


@pytest.fixture
def world():
    alice, bob = make_holder("alice"), make_holder("bob")
    robot = make_user("robot")
    robot.user_permissions.add(Permission.objects.get(codename="consume_credits"))
    staff = make_user("staff", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="add_creditlot"))
    group = make_group("g")
    offer = make_offer("Pack", group=group, price=Decimal("4"))
    services.grant(alice, group, 10)
    order = services.create_order(alice, offer)
    clients = {"anonymous": APIClient()}
    for name, holder in {"alice": alice, "bob": bob, "robot": robot, "staff": staff}.items():
        clients[name] = APIClient()
        clients[name].force_authenticate(person(holder))
    return {"clients": clients, "alice": alice, "offer": offer, "order": order}


def expectations(w):
    order, offer, alice = w["order"].pk, w["offer"].pk, w["alice"].pk
    consume = {"holder": alice, "offer_group": "g", "count": 1}
    grant = {"holder": alice, "offer_group": "g", "tokens": 1, "reason": "x"}
    everyone_ok = {"anonymous": 200, "alice": 200, "bob": 200, "robot": 200, "staff": 200}
    # With a custom holder model, the robot and the staff user are in no workspace: their
    # requests have no holder (HOLDER_FROM_REQUEST), so their own lists are refused.
    bare, created, stranger = (200, 201, 404) if holder_is_user() else (403, 403, 403)
    signed_in = {"anonymous": DENIED, "alice": 200, "bob": 200, "robot": bare, "staff": bare}
    owner_only = {
        "anonymous": DENIED,
        "alice": 200,
        "bob": 404,
        "robot": stranger,
        "staff": stranger,
    }
    return [
        ("get", "offers/", None, everyone_ok),
        ("get", f"offers/{offer}/", None, everyone_ok),
        ("get", "orders/", None, signed_in),
        (
            "post",
            "orders/",
            {"offer": offer},
            {**signed_in, "alice": 201, "bob": 201, "robot": created, "staff": created},
        ),
        ("get", f"orders/{order}/", None, owner_only),
        ("post", f"orders/{order}/pay/", None, owner_only),
        ("get", "credits/", None, signed_in),
        ("get", "ledger/", None, signed_in),
        (
            "post",
            "consume/",
            consume,
            {"anonymous": DENIED, "alice": 403, "bob": 403, "robot": 201, "staff": 403},
        ),
        (
            "post",
            "grants/",
            grant,
            {"anonymous": DENIED, "alice": 403, "bob": 403, "robot": 403, "staff": 201},
        ),
        (
            "post",
            "holds/",
            consume,
            {"anonymous": DENIED, "alice": 403, "bob": 403, "robot": 201, "staff": 403},
        ),
        ("get", "schema/", None, everyone_ok),
    ]


def test_authorization_matrix(world):
    for method, path, body, expected in expectations(world):
        for actor, client in world["clients"].items():
            keyed = path in ("consume/", "holds/")
            headers = {"HTTP_IDEMPOTENCY_KEY": f"{actor}-{path}"} if keyed else {}
            status = getattr(client, method)(API + path, body, format="json", **headers).status_code
            wanted = expected[actor]
            assert status in (wanted if isinstance(wanted, set) else {wanted}), (
                method,
                path,
                actor,
                status,
            )


@pytest.mark.parametrize("verb", ["put", "patch", "delete"])
def test_other_verbs_are_refused_everywhere(world, verb):
    paths = [
        "offers/",
        f"offers/{world['offer'].pk}/",
        "orders/",
        f"orders/{world['order'].pk}/",
        f"orders/{world['order'].pk}/pay/",
        "credits/",
        "ledger/",
        "consume/",
        "grants/",
    ]
    for actor, client in world["clients"].items():
        for path in paths:
            status = getattr(client, verb)(API + path, {}, format="json").status_code
            assert status in {401, 403, 404, 405}, (verb, path, actor, status)


def test_session_writes_need_the_csrf_token(world):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(person(world["alice"]))
    refused = client.post(API + "orders/", {"offer": world["offer"].pk}, format="json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    client.get("/admin/login/")  # a page with a form: sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post(
        API + "orders/", {"offer": world["offer"].pk}, format="json", HTTP_X_CSRFTOKEN=token
    )
    assert accepted.status_code == 201


@override_settings(
    USER_CREDITS={
        "PAYMENT_PROVIDER": "user_credits.payments.stripe.StripeProvider",
        "STRIPE_FLOW": "payment_intent",
    }
)
def test_no_secret_in_responses_or_logs(world, stripe_api, endpoint, deliver, caplog, settings):
    from user_credits.payments.stripe import ORDER_KEY

    from . import stripe_fake as fake

    caplog.set_level(logging.DEBUG)
    alice, bob = world["clients"]["alice"], world["clients"]["bob"]
    started = alice.post(f"{API}orders/{world['order'].pk}/pay/").json()
    assert started["client_secret"]
    assert bob.post(f"{API}orders/{world['order'].pk}/pay/").status_code == 404
    intent = fake.payment_intent(
        amount=400, currency="usd", metadata={ORDER_KEY: str(world["order"].pk)}
    )
    deliver(fake.event("payment_intent.succeeded", intent))
    bodies = [alice.get(API + p).content.decode() for p in ("orders/", "credits/", "ledger/")]
    bodies += [bob.get(API + p).content.decode() for p in ("orders/", "credits/", "ledger/")]
    secrets = [settings.STRIPE_TEST_SECRET_KEY, endpoint.secret]
    for text in bodies + [record.getMessage() for record in caplog.records]:
        for secret in secrets:
            assert secret not in text
    assert all(started["client_secret"] not in body for body in bodies[3:])  # not in bob's
