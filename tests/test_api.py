import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

import user_credits
from user_credits import exceptions as domain
from user_credits import services
from user_credits.api.exceptions import exception_handler
from user_credits.holders import holder_is_user
from user_credits.models import LedgerEntry, OfferPrice, Order

from .factories import buy, make_group, make_offer, make_user, person, table_snapshot

pytestmark = pytest.mark.django_db
API = "/api/credits/"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def alice(api, holder):
    api.force_authenticate(person(holder))
    return api


@pytest.fixture
def consumer():
    """A server-to-server client holding only the consume permission."""
    robot = make_user("robot")
    robot.user_permissions.add(Permission.objects.get(codename="consume_credits"))
    client = APIClient()
    client.force_authenticate(robot)
    return client


@pytest.fixture
def staff_granter():
    boss = make_user("boss", is_staff=True)
    boss.user_permissions.add(Permission.objects.get(codename="add_creditlot"))
    client = APIClient()
    client.force_authenticate(boss)
    return client


# --- offers ------------------------------------------------------------------------------


def test_offers_for_anonymous_and_by_tags(api, catalog):
    names = [o["name"] for o in api.get(API + "offers/").json()]
    assert "EventTalk" in names and "VIP EventTalk" not in names
    monthly = api.get(API + "offers/", {"tags": "subscription,monthly,Standard"}).json()
    assert [o["name"] for o in monthly] == [
        "Startup Standard Monthly",
        "Business Standard Monthly",
        "ScaleUp Standard Monthly",
    ]
    business = monthly[1]
    assert business["popular"] is True
    assert business["offer_group"] == "Business" and business["price"] == "50.00"
    assert set(business["tags"]) == {"subscription", "monthly", "Standard"}
    mobile = api.get(API + "offers/", {"tags": "mobile"}).json()
    assert {i["name"] for i in mobile[0]["bundle_items"]} == {
        "Calls 120 min",
        "Data 20 GB",
        "Mobile TV",
    }


def test_offer_detail_hides_locked_offers(api, alice, holder, catalog):
    vip = catalog["VIP EventTalk"].pk
    assert api.get(f"{API}offers/{vip}/").status_code == 404
    assert alice.get(f"{API}offers/{vip}/").status_code == 404
    buy(holder, catalog["Startup EarlyBird Monthly"])
    assert alice.get(f"{API}offers/{vip}/").json()["name"] == "VIP EventTalk"
    assert alice.get(f"{API}offers/999999/").status_code == 404


def test_offers_in_a_currency(api, alice, catalog):
    """The demo prices every offer in USD and EUR, and the talks in KWD too."""
    talk = catalog["3 Talks"]
    listed = api.get(API + "offers/", {"tags": "tokens"}).json()
    three = next(o for o in listed if o["name"] == "3 Talks")
    assert (three["price"], three["currency"]) == ("80.00", "usd")
    assert three["prices"] == [
        {"currency": "usd", "price": "80.00"},
        {"currency": "eur", "price": "72.00"},
        {"currency": "kwd", "price": "24.625"},
    ]
    OfferPrice.objects.filter(offer=catalog["1 Talk"], currency="kwd").delete()
    in_kwd = api.get(API + "offers/", {"tags": "tokens", "currency": "KWD"}).json()
    assert [(o["name"], o["price"], o["currency"]) for o in in_kwd] == [
        ("3 Talks", "24.625", "kwd")
    ]  # 1 Talk has no KWD price any more: left out, never converted
    detail = api.get(f"{API}offers/{talk.pk}/", {"currency": "eur"}).json()
    assert (detail["price"], detail["currency"]) == ("72.00", "eur")
    one = catalog["1 Talk"].pk
    assert api.get(f"{API}offers/{one}/", {"currency": "kwd"}).status_code == 404
    assert api.get(f"{API}offers/{one}/", {"currency": "eur"}).status_code == 200
    bad = api.get(API + "offers/", {"currency": "zzz"})
    assert bad.status_code == 400 and list(bad.json()["fields"]) == ["currency"]


def test_order_in_another_currency(alice, catalog):
    body = {"offer": catalog["3 Talks"].pk, "quantity": 2, "currency": "kwd"}
    order = alice.post(API + "orders/", body, format="json").json()
    assert (order["unit_price"], order["total"], order["currency"]) == ("24.625", "49.250", "kwd")
    assert order["amount_refunded"] == "0.000"
    before = table_snapshot()
    refused = alice.post(API + "orders/", {**body, "currency": "gbp"}, format="json")
    assert refused.status_code == 400 and list(refused.json()["fields"]) == ["currency"]
    assert table_snapshot() == before


# --- orders ------------------------------------------------------------------------------


def test_create_list_and_pay_an_order(alice, holder, catalog):
    offer = catalog["3 Talks"]
    response = alice.post(API + "orders/", {"offer": offer.pk, "quantity": 2}, format="json")
    assert response.status_code == 201, response.json()
    order = response.json()
    assert (order["status"], order["total"], order["quantity"]) == ("pending", "160.00", 2)
    assert order["events"][0]["status"] == "pending"
    assert Order.objects.get(pk=order["id"]).holder == holder
    pay = alice.post(f"{API}orders/{order['id']}/pay/")
    assert pay.status_code == 200 and pay.json()["provider"] == "manual"
    services.mark_paid(order["id"])
    again = alice.post(f"{API}orders/{order['id']}/pay/")
    assert again.status_code == 409 and again.json()["code"] == "invalid_transition"
    listed = alice.get(API + "orders/").json()
    assert listed["count"] == 1 and listed["results"][0]["status"] == "paid"


def test_free_order_is_paid_on_creation(alice, holder, catalog):
    response = alice.post(API + "orders/", {"offer": catalog["Free"].pk}, format="json")
    assert response.json()["status"] == "paid"
    assert services.get_balance(holder, "Free") == 100


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"offer": 999999}, "offer"),
        ({"offer": "x"}, "offer"),
        ({}, "offer"),
        ({"offer": "OFFER", "quantity": 0}, "quantity"),
        ({"offer": "OFFER", "quantity": 1.5}, "quantity"),
        ({"offer": "OFFER", "quantity": "2"}, "quantity"),
        ({"offer": "OFFER", "quantity": 4}, "quantity"),
        ({"offer": "OFFER", "currency": "eur"}, "currency"),
        ({"offer": "OFFER", "starts": "2001-01-01T00:00:00Z"}, "starts"),
        ({"offer": "OFFER", "starts": "tomorrow"}, "starts"),
        ({"offer": "OFFER", "coupon": "FREE"}, "coupon"),
    ],
)
def test_order_bad_input(alice, holder, payload, field):
    offer = make_offer(quantity_limit=3)
    payload = {k: (offer.pk if v == "OFFER" else v) for k, v in payload.items()}
    before = table_snapshot()
    response = alice.post(API + "orders/", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert field in body["fields"] and body["code"]
    assert table_snapshot() == before


def test_orders_filters(alice, holder):
    group = make_group("g")
    paid = buy(holder, make_offer(group=group))
    services.create_order(holder, make_offer())
    assert [o["id"] for o in alice.get(API + "orders/", {"status": "paid"}).json()["results"]] == [
        paid.pk
    ]
    assert alice.get(API + "orders/", {"offer_group": "g"}).json()["count"] == 1
    future = (timezone.now() + timedelta(days=1)).isoformat()
    assert alice.get(API + "orders/", {"created_after": future}).json()["count"] == 0
    assert alice.get(API + "orders/", {"created_before": future}).json()["count"] == 2
    assert alice.get(API + "orders/", {"status": "nope"}).status_code == 400


def test_anonymous_cannot_order(api, catalog):
    response = api.post(API + "orders/", {"offer": catalog["1 Talk"].pk}, format="json")
    assert response.status_code in (401, 403)
    assert Order.objects.count() == 0


# --- credits and ledger ------------------------------------------------------------------


def test_credits_and_ledger(alice, holder, catalog):
    buy(holder, catalog["3 Talks"])
    services.consume(holder, "talks", 1, idempotency_key="a")
    services.grant(holder, make_group("bonus"), 5)
    credits = {c["offer_group"]: c for c in alice.get(API + "credits/").json()}
    assert credits["talks"]["balance"] == 2 and credits["bonus"]["balance"] == 5
    assert credits["talks"]["lots"][0]["granted"] == 3
    ledger = alice.get(API + "ledger/").json()
    assert set(ledger) == {"next", "previous", "results"}  # a cursor page: no count
    assert len(ledger["results"]) == 3 and ledger["next"] is None
    assert (
        ledger["results"][0]["kind"] == "grant" and ledger["results"][0]["offer_group"] == "bonus"
    )
    assert [
        e["kind"] for e in alice.get(API + "ledger/", {"kind": "consume"}).json()["results"]
    ] == ["consume"]
    assert len(alice.get(API + "ledger/", {"offer_group": "talks"}).json()["results"]) == 2
    assert alice.get(API + "ledger/", {"page_size": 1}).json()["next"]


def test_ledger_cursor_walks_every_entry_once_both_ways(alice, holder, other_holder):
    group = make_group("g")
    for _ in range(3):
        services.grant(holder, group, 2)
    services.consume(holder, group, 5)  # three entries of one instant (one per lot)
    services.grant(holder, make_group("h"), 1)
    services.grant(other_holder, group, 4)  # never listed for alice
    services.consume(holder, group, 1)
    expected = list(
        LedgerEntry.objects.filter(account__holder=holder)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
    )
    assert len(expected) == 8
    seen, url, pages = [], API + "ledger/?page_size=2", []
    while url:
        page = alice.get(url).json()
        pages.append(page)
        seen += [e["id"] for e in page["results"]]
        url = page["next"]
    assert seen == expected and len(pages) == 4
    back, url = [], pages[-1]["previous"]
    while url:
        page = alice.get(url).json()
        back = [e["id"] for e in page["results"]] + back
        url = page["previous"]
    assert back + [e["id"] for e in pages[-1]["results"]] == expected
    assert len(alice.get(API + "ledger/", {"page_size": 500}).json()["results"]) == 8
    with CaptureQueriesContext(connection) as captured:
        alice.get(API + "ledger/")
    page_query = captured[-1]["sql"]
    if connection.vendor == "postgresql":  # each account read from its own index, merged
        assert page_query.count("UNION ALL") == 1 and "JOIN" not in page_query


# --- consume -----------------------------------------------------------------------------


def test_consume_with_idempotency(consumer, holder):
    services.grant(holder, make_group("g"), 10)
    payload = {"holder": holder.pk, "offer_group": "g", "count": 3, "metadata": {"req": "r1"}}
    first = consumer.post(API + "consume/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 201 and first.json()["balance"] == 7
    assert "Idempotent-Replayed" not in first.headers
    replay = consumer.post(API + "consume/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == {**first.json(), "replayed": True}
    assert first.json()["replayed"] is False
    conflict = consumer.post(
        API + "consume/", {**payload, "count": 4}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"
    short = consumer.post(
        API + "consume/", {**payload, "count": 8}, format="json", HTTP_IDEMPOTENCY_KEY="k2"
    )
    assert short.status_code == 402
    assert short.json() | {} == {
        **short.json(),
        "code": "insufficient_credits",
        "requested": 8,
        "available": 7,
    }
    assert services.get_balance(holder, "g") == 7


@pytest.mark.parametrize(
    "payload, key, code",
    [
        ({"count": 1}, None, 400),
        ({"count": 0}, "k", 400),
        ({"count": -5}, "k", 400),
        ({"count": 10**13}, "k", 400),
        ({"count": 1.0}, "k", 400),
        ({"count": "1"}, "k", 400),
        ({"count": True}, "k", 400),
        ({"offer_group": "nope"}, "k", 400),
        ({"offer_group": "bad key!"}, "k", 400),
        ({"user": 999999}, "k", 400),
        ({"metadata": "x"}, "k", 400),
        ({"extra": 1}, "k", 400),
        ({"count": 1}, "x" * 256, 400),
    ],
)
def test_consume_bad_input(consumer, holder, payload, key, code):
    services.grant(holder, make_group("g"), 10)
    body = {"holder": holder.pk, "offer_group": "g", "count": 1, **payload}
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    before = table_snapshot()
    response = consumer.post(API + "consume/", body, format="json", **headers)
    assert response.status_code == code, response.json()
    assert set(response.json()) >= {"code", "detail"}
    assert table_snapshot() == before


def test_consume_needs_the_permission(alice, api, holder):
    services.grant(holder, make_group("g"), 10)
    body = {"holder": holder.pk, "offer_group": "g", "count": 1}
    assert (
        alice.post(API + "consume/", body, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code
        == 403
    )
    assert api.post(
        API + "consume/", body, format="json", HTTP_IDEMPOTENCY_KEY="k"
    ).status_code in (401, 403)
    assert services.get_balance(holder, "g") == 10


def test_bad_json_is_a_400(consumer):
    response = consumer.post(
        API + "consume/", b"{not json", content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert response.status_code == 400 and response.json()["code"] == "parse_error"
    array = consumer.post(API + "consume/", [1, 2], format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert array.status_code == 400


# --- grants ------------------------------------------------------------------------------


def test_grants(staff_granter, alice, holder):
    make_group("g")
    body = {"holder": holder.pk, "offer_group": "g", "tokens": 25, "reason": "support ticket 7"}
    assert alice.post(API + "grants/", body, format="json").status_code == 403
    response = staff_granter.post(API + "grants/", body, format="json")
    assert response.status_code == 201
    assert (response.json()["granted"], response.json()["reason"]) == (
        25,
        "support ticket 7 (by boss)",
    )
    past = (timezone.now() - timedelta(days=1)).isoformat()
    bad = staff_granter.post(API + "grants/", {**body, "expires": past}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_argument"
    assert bad.json()["fields"] == {"expires": ["expires must be in the future."]}
    assert services.get_balance(holder, "g") == 25
    boss = get_user_model().objects.get(username="boss")
    entry = LedgerEntry.objects.get(kind="grant")
    assert (entry.metadata["by"], entry.metadata["by_name"]) == (boss.pk, "boss")


@pytest.mark.parametrize(
    "error",
    [
        domain.InvalidArgument("bad", field="expires"),
        domain.InvalidOrder("bad", field="currency"),
        domain.PaymentMismatch("bad", field="amount"),
        domain.InvalidTransition("bad", field="order"),
        domain.IdempotencyConflict("bad", field="key"),
        domain.InvalidCount("bad", field="tokens"),
        domain.PaymentProviderError("bad", field="card"),
        domain.ConfigurationError("bad", field="setting"),
    ],
)
def test_every_domain_error_about_a_field_names_it(error):
    response = exception_handler(error, {})
    assert response.data["fields"] == {error.field: ["bad"]}
    assert response.data["code"] == error.code


# --- isolation and budgets ---------------------------------------------------------------


def test_users_never_see_each_other(api, holder, other_holder, catalog):
    mine = buy(holder, catalog["3 Talks"])
    theirs = buy(other_holder, catalog["1 Talk"])
    services.consume(other_holder, "talks", 1)
    api.force_authenticate(person(holder))
    assert api.get(f"{API}orders/{theirs.pk}/").status_code == 404
    assert api.post(f"{API}orders/{theirs.pk}/pay/").status_code == 404
    assert [o["id"] for o in api.get(API + "orders/").json()["results"]] == [mine.pk]
    assert api.get(API + "orders/", {"offer_group": "talks"}).json()["count"] == 1
    assert [c["balance"] for c in api.get(API + "credits/").json()] == [3]
    kinds = [e["kind"] for e in api.get(API + "ledger/").json()["results"]]
    assert kinds == ["grant"]


def test_list_endpoints_have_a_fixed_query_count(alice, holder, django_assert_max_num_queries):
    group = make_group("g")
    for _ in range(12):
        buy(holder, make_offer(group=group, token_count=2))
        services.consume(holder, group, 1)
    # A custom holder model's HOLDER_FROM_REQUEST reads the requester's workspace: one more.
    budget = 4 if holder_is_user() else 5
    for url in ("orders/", "ledger/", "credits/", "offers/"):
        with django_assert_max_num_queries(budget):
            response = alice.get(API + url, {"page_size": 200})
        assert response.status_code == 200


def test_schema_documents_every_endpoint(api):
    response = api.get(API + "schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = response.json()
    paths = set(schema["paths"])
    for path in (
        "offers/",
        "offers/{id}/",
        "orders/",
        "orders/{id}/",
        "orders/{id}/pay/",
        "credits/",
        "ledger/",
        "consume/",
        "grants/",
    ):
        assert API + path in paths
    consume = schema["paths"][API + "consume/"]["post"]
    assert {"201", "400", "402", "409"} <= set(consume["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in consume["parameters"])
    # The documentation's REST API reference is generated from api_schema(): the same schema.
    from user_credits.api.schema import api_schema

    assert json.loads(json.dumps(api_schema(API.lstrip("/")), default=str)) == schema
    assert schema["info"]["version"] == user_credits.__version__


# --- holds -------------------------------------------------------------------------------


def test_hold_capture_release_through_the_api(consumer, holder):
    services.grant(holder, make_group("ai"), 20)
    body = {
        "holder": holder.pk,
        "offer_group": "ai",
        "count": 8,
        "ttl": 120,
        "metadata": {"job": 1},
    }
    created = consumer.post(API + "holds/", body, format="json", HTTP_IDEMPOTENCY_KEY="h1")
    assert created.status_code == 201, created.json()
    hold = created.json()
    assert (hold["held"], hold["status"], hold["offer_group"]) == (8, "active", "ai")
    replay = consumer.post(API + "holds/", body, format="json", HTTP_IDEMPOTENCY_KEY="h1")
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json()["id"] == hold["id"]
    conflict = consumer.post(
        API + "holds/", {**body, "count": 9}, format="json", HTTP_IDEMPOTENCY_KEY="h1"
    )
    assert conflict.status_code == 409
    assert services.get_balance(holder, "ai") == 12
    captured = consumer.post(f"{API}holds/{hold['id']}/capture/", {"count": 5}, format="json")
    assert captured.status_code == 200 and captured.json()["balance"] == 15
    again = consumer.post(f"{API}holds/{hold['id']}/capture/", {"count": 5}, format="json")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == {**captured.json(), "replayed": True}
    assert services.get_balance(holder, "ai") == 15
    second = consumer.post(
        API + "holds/", {**body, "count": 15}, format="json", HTTP_IDEMPOTENCY_KEY="h2"
    ).json()
    too_much = consumer.post(
        API + "holds/", {**body, "count": 1}, format="json", HTTP_IDEMPOTENCY_KEY="h3"
    )
    assert too_much.status_code == 402
    released = consumer.post(f"{API}holds/{second['id']}/release/")
    assert released.json()["status"] == "released" and released.json()["held"] == 0
    late = consumer.post(f"{API}holds/{second['id']}/capture/", {}, format="json")
    assert late.status_code == 409
    assert consumer.post(f"{API}holds/999999/release/").status_code == 404


def test_holds_need_the_consume_permission(alice, holder):
    services.grant(holder, make_group("ai"), 5)
    body = {"holder": holder.pk, "offer_group": "ai", "count": 1}
    assert (
        alice.post(API + "holds/", body, format="json", HTTP_IDEMPOTENCY_KEY="x").status_code == 403
    )
    assert services.get_balance_detail(holder, "ai").held == 0


def test_account_busy_is_503_with_retry_after():
    from user_credits.api.exceptions import exception_handler
    from user_credits.exceptions import AccountBusy

    response = exception_handler(AccountBusy("The hot account is busy."), {})
    assert response.status_code == 503 and response["Retry-After"] == "1"
    assert response.data["code"] == "account_busy"
