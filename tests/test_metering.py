"""Metering: every rule for a function view, a class-based view, an async view, a stream, an
async stream, a DRF APIView and a ViewSet action (views in ``tests/metered_views.py``)."""

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.core.signals import request_finished
from django.db import close_old_connections, connection
from django.test import AsyncClient, Client, RequestFactory, override_settings
from django.utils import timezone

from user_credits import services
from user_credits.exceptions import ConfigurationError
from user_credits.metering import Charge, consumes, meters
from user_credits.models import EntryKind, Hold, HoldStatus, LedgerEntry

from . import metered_views
from .factories import assert_ledger_consistent, make_group, make_holder, person

pytestmark = [pytest.mark.urls("tests.metered_views"), pytest.mark.django_db]


@dataclass(frozen=True)
class Kind:
    name: str
    url: str
    group: str
    charge: int  # tokens a successful request is charged
    reserve: int  # tokens held while it runs
    method: str = "get"
    is_async: bool = False
    stream: bool = False
    drf: bool = False

    def __str__(self):
        return self.name


KINDS = [
    Kind("function", "/function/", "calls", 1, 1),
    Kind("class", "/class/", "calls", 1, 1),
    Kind("async", "/async/", "calls", 1, 1, is_async=True),
    Kind("stream", "/stream/", "ai", 5, 10, stream=True),
    Kind("async-stream", "/async-stream/", "ai", 5, 10, is_async=True, stream=True),
    Kind("apiview", "/apiview/", "calls", 1, 1, drf=True),
    Kind("viewset", "/reports/", "calls", 1, 1, method="post", drf=True),
]
PLAIN = [k for k in KINDS if not k.drf]
STREAMS = [k for k in KINDS if k.stream]
JSON = {"Accept": "application/json"}


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes
    stream_error: Exception | None = None

    def json(self):
        import json

        return json.loads(self.body)


def call(kind, holder=None, query="", headers=None, *, read=None):
    """Request ``kind`` as ``holder``; read the whole body (a stream: ``read`` chunks, then
    close the response as a server does when the client leaves)."""
    url = kind.url + (f"?{query}" if query else "")
    if kind.is_async:
        return async_to_sync(_acall)(kind, holder, url, headers or {}, read)
    client = Client(raise_request_exception=False)
    if holder is not None:
        client.force_login(person(holder))
    response = getattr(client, kind.method)(url, headers=headers or {})
    if not response.streaming:
        return Reply(response.status_code, dict(response.headers), response.content)
    chunks, error = [], None
    try:
        for chunk in response.streaming_content:
            chunks.append(chunk)
            if read is not None and len(chunks) == read:
                break
    except RuntimeError as exc:
        error = exc
    # The client left: the test client's server emulation closes the response (as a WSGI
    # server does), without closing the test's database connection.
    response._iterator.close()
    return Reply(response.status_code, dict(response.headers), b"".join(chunks), error)


@contextmanager
def server_close():
    """Close a response as a server does, keeping the test's database connection (the test
    client does the same: ``request_finished`` would close it)."""
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_finished.connect(close_old_connections)


async def _acall(kind, holder, url, headers, read):
    from asgiref.sync import sync_to_async

    client = AsyncClient(raise_request_exception=False)
    if holder is not None:
        await client.aforce_login(person(holder))
    response = await getattr(client, kind.method)(url, headers=headers)
    if not response.streaming:
        return Reply(response.status_code, dict(response.headers), response.content)
    chunks, error = [], None
    content = response.streaming_content
    try:
        async for chunk in content:
            chunks.append(chunk)
            if read is not None and len(chunks) == read:
                break
    except RuntimeError as exc:
        error = exc
    # As Django's ASGI handler closes a response: in a thread.
    with server_close():
        await sync_to_async(response.close)()
    return Reply(response.status_code, dict(response.headers), b"".join(chunks), error)


@pytest.fixture(autouse=True)
def _fresh():
    metered_views.SEEN.clear()
    make_group("calls")
    make_group("ai")
    yield
    assert_ledger_consistent()


def balance(holder, group):
    return services.get_balance(holder, group)


def active_holds():
    return Hold.objects.filter(status=HoldStatus.ACTIVE).count()


def served():
    return [name for name, _, _ in metered_views.SEEN]


# --- the rules, for every kind of view --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_success_is_charged_and_says_what_is_left(kind, holder):
    services.grant(holder, kind.group, 20)
    reply = call(kind, holder)
    assert reply.status == 200, reply.body
    assert reply.stream_error is None
    assert balance(holder, kind.group) == 20 - kind.charge
    # While the view ran, its reservation was not available to anyone else.
    assert metered_views.SEEN[0][1] == 20 - kind.reserve
    assert reply.headers["Credits-Group"] == kind.group
    # A stream's headers leave before its end: what is left if the reservation is charged.
    expected = 20 - (kind.reserve if kind.stream else kind.charge)
    assert reply.headers["Credits-Remaining"] == str(expected)
    assert active_holds() == 0
    consumed = LedgerEntry.objects.filter(kind=EntryKind.CONSUME)
    assert sum(-e.amount for e in consumed) == kind.charge


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_what_cannot_be_paid_is_not_served(kind, holder):
    available = kind.reserve - 1
    if available:
        services.grant(holder, kind.group, available)
    with override_settings(USER_CREDITS={"UPGRADE_URL": "/pricing/"}):
        reply = call(kind, holder, headers=JSON)
    assert reply.status == 402
    assert reply.json() == {
        "code": "insufficient_credits",
        "detail": f"Not enough tokens in {kind.group}: {kind.reserve} requested, "
        f"{available} available.",
        "requested": kind.reserve,
        "available": available,
        "upgrade_url": "/pricing/",
    }
    assert reply.headers["Credits-Remaining"] == str(available)
    assert reply.headers["Credits-Group"] == kind.group
    assert served() == []
    assert not Hold.objects.exists()
    assert balance(holder, kind.group) == available


@pytest.mark.parametrize("outcome", ["raise", "500", "503", "404", "400"])
@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_a_failed_response_is_not_charged(kind, outcome, holder):
    services.grant(holder, kind.group, 20)
    reply = call(kind, holder, f"outcome={outcome}")
    assert reply.status == (500 if outcome == "raise" else int(outcome))
    assert len(served()) == 1
    assert balance(holder, kind.group) == 20
    assert active_holds() == 0
    assert not LedgerEntry.objects.filter(kind=EntryKind.CONSUME).exists()
    if outcome != "raise":
        assert reply.headers["Credits-Remaining"] == "20"


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_client_errors_are_charged_when_the_site_says_so(kind, holder):
    services.grant(holder, kind.group, 20)
    with override_settings(USER_CREDITS={"CHARGE_CLIENT_ERRORS": True}):
        assert call(kind, holder, "outcome=404").status == 404
        assert balance(holder, kind.group) == 20 - kind.charge
        # A server error never is.
        assert call(kind, holder, "outcome=500").status == 500
        assert call(kind, holder, "outcome=raise").status == 500
    assert balance(holder, kind.group) == 20 - kind.charge


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_a_retry_with_the_same_idempotency_key_is_charged_once(kind, holder):
    services.grant(holder, kind.group, 20)
    key = {"Idempotency-Key": "req-1"}
    assert call(kind, holder, headers=key).status == 200
    retry = call(kind, holder, headers=key)
    assert retry.status == 200  # served again: its response is the site's business
    assert len(served()) == 2
    assert balance(holder, kind.group) == 20 - kind.charge
    assert retry.headers["Credits-Remaining"] == str(20 - kind.charge)
    # A failed attempt is not charged; its retry is, once.
    other = {"Idempotency-Key": "req-2"}
    assert call(kind, holder, "outcome=500", headers=other).status == 500
    assert call(kind, holder, "outcome=raise", headers=other).status == 500
    assert call(kind, holder, headers=other).status == 200
    assert call(kind, holder, headers=other).status == 200
    assert balance(holder, kind.group) == 20 - 2 * kind.charge
    # Another key is another request.
    assert call(kind, holder, headers={"Idempotency-Key": "req-3"}).status == 200
    assert balance(holder, kind.group) == 20 - 3 * kind.charge
    assert active_holds() == 0


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_a_retry_while_the_first_is_served_is_a_conflict(kind, holder):
    services.grant(holder, kind.group, 20)
    # The first request holds its reservation (as it does while its view runs).
    services.hold(holder, kind.group, kind.reserve, idempotency_key=f"metered:{kind.group}:k")
    reply = call(kind, holder, headers={"Idempotency-Key": "k", **JSON})
    assert reply.status == 409
    assert reply.json()["code"] == "idempotency_in_progress"
    assert served() == []


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_anonymous_requests_are_refused_before_any_charge(kind, holder):
    services.grant(holder, kind.group, 20)
    page = call(kind)
    api = call(kind, headers=JSON)
    if kind.drf:  # the site's DRF authentication and error shape (session first here: 403)
        assert page.status == api.status == 403
        assert api.json() == {"detail": "Authentication credentials were not provided."}
    else:  # a page goes to the login page, as with login_required; JSON gets a 401
        assert page.status == 302
        assert page.headers["Location"] == f"/accounts/login/?next={kind.url}"
        assert api.status == 401
        assert api.json()["code"] == "not_authenticated"
    assert served() == []
    assert not Hold.objects.exists()


def nobody_may_spend(user, holder):
    return False


def bob_pays(request):
    """The holder of bob's credits (bob, or the workspace bob owns)."""
    from user_credits.holders import get_holder_model, holder_is_user

    if holder_is_user():
        return get_holder_model().objects.get(username="bob")
    return get_holder_model().objects.get(owner__username="bob")


def alice_may_spend_for_bob(user, holder):
    return user.username == "alice" and person(holder).username in ("alice", "bob")


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_a_user_who_may_not_spend_is_refused(kind, holder):
    services.grant(holder, kind.group, 20)
    with override_settings(USER_CREDITS={"CAN_SPEND": "tests.test_metering.nobody_may_spend"}):
        reply = call(kind, holder, headers=JSON)
    assert reply.status == 403
    body = reply.json()
    if kind.drf:  # raised as DRF's PermissionDenied, in the site's error shape
        assert body == {"detail": "You may not spend this holder's credits."}
    else:
        assert body["code"] == "permission_denied"
    assert served() == []
    assert not Hold.objects.exists()


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_the_holder_comes_from_the_request_hook(kind, holder, other_holder):
    services.grant(other_holder, kind.group, 20)
    hooks = {
        "HOLDER_FROM_REQUEST": "tests.test_metering.bob_pays",
        "CAN_SPEND": "tests.test_metering.alice_may_spend_for_bob",
    }
    with override_settings(USER_CREDITS=hooks):
        assert call(kind, holder).status == 200
    assert balance(other_holder, kind.group) == 20 - kind.charge
    assert balance(holder, kind.group) == 0


# --- plain Django specifics -------------------------------------------------------------------


@pytest.mark.parametrize("kind", PLAIN, ids=str)
def test_a_page_gets_an_html_402(kind, holder):
    with override_settings(USER_CREDITS={"UPGRADE_URL": "/pricing/"}):
        reply = call(kind, holder, headers={"Accept": "text/html,*/*;q=0.8"})
    assert reply.status == 402
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "Accept" in reply.headers["Vary"]
    html = reply.body.decode()
    assert "Not enough credits" in html
    assert f'<strong id="requested">{kind.reserve}</strong>' in html
    assert 'href="/pricing/"' in html
    assert served() == []


def test_the_cost_may_depend_on_the_request(holder):
    priced = Kind("priced", "/priced/", "calls", 3, 3)
    services.grant(holder, "calls", 5)
    assert call(priced, holder, "cost=3").status == 200
    assert balance(holder, "calls") == 2
    assert call(priced, holder, "cost=3", headers=JSON).status == 402
    free = call(priced, holder, "cost=0")  # a cost of 0 serves that request free
    assert free.status == 200
    assert free.headers["Credits-Remaining"] == "2"
    assert balance(holder, "calls") == 2
    # The same key for another cost is another request: refused.
    assert call(priced, holder, "cost=1", headers={"Idempotency-Key": "p"}).status == 200
    conflict = call(priced, holder, "cost=2", headers={"Idempotency-Key": "p", **JSON})
    assert conflict.status == 409
    assert conflict.json()["code"] == "idempotency_conflict"
    assert balance(holder, "calls") == 1


@pytest.mark.parametrize(
    "query, charged",
    [("used=3", 3), ("used=0", 0), ("", 0), ("used=10", 10), ("used=12", 12)],
)
def test_meters_charges_what_the_view_reports(query, charged, holder):
    services.grant(holder, "ai", 20)
    reply = call(Kind("metered", "/metered/", "ai", charged, 10), holder, query)
    assert reply.status == 200
    assert metered_views.SEEN[0][1] == 10  # the whole reservation was held
    assert balance(holder, "ai") == 20 - charged
    assert reply.headers["Credits-Remaining"] == str(20 - charged)
    assert active_holds() == 0


def test_meters_charges_the_reservation_when_more_was_used_than_there_is(holder):
    services.grant(holder, "ai", 11)
    reply = call(Kind("metered", "/metered/", "ai", 10, 10), holder, "used=15")
    assert reply.status == 200
    assert balance(holder, "ai") == 1  # what was reserved, the promise made before serving


def test_a_bad_used_count_fails_the_request(holder):
    services.grant(holder, "ai", 20)
    reply = call(Kind("metered", "/metered/", "ai", 0, 10), holder, "used=-1")
    assert reply.status == 500
    assert balance(holder, "ai") == 20
    assert active_holds() == 0


def test_a_long_idempotency_key_is_scoped_and_hashed(holder):
    services.grant(holder, "calls", 5)
    kind = KINDS[0]
    key = {"Idempotency-Key": "k" * 300}
    assert call(kind, holder, headers=key).status == 200
    assert call(kind, holder, headers=key).status == 200
    assert balance(holder, "calls") == 4
    (stored,) = Hold.objects.values_list("idempotency_key", flat=True)
    assert stored.startswith("metered:sha256:") and len(stored) <= 255


def test_decorators_refuse_bad_arguments():
    with pytest.raises(ConfigurationError, match="cost"):
        consumes("calls", cost=0)
    with pytest.raises(ConfigurationError, match="reserve"):
        meters("ai", reserve=-1)
    with pytest.raises(ConfigurationError, match="offer group"):
        consumes(None)


# --- streams ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STREAMS, ids=str)
def test_a_client_that_leaves_mid_stream_pays_what_was_produced(kind, holder):
    services.grant(holder, kind.group, 20)
    reply = call(kind, holder, read=2)
    assert reply.body == b"chunk 0\nchunk 1\n"
    assert balance(holder, kind.group) == 18
    assert active_holds() == 0


@pytest.mark.parametrize("kind", STREAMS, ids=str)
def test_a_stream_that_fails_is_not_charged(kind, holder):
    services.grant(holder, kind.group, 20)
    reply = call(kind, holder, "outcome=midstream")
    assert isinstance(reply.stream_error, RuntimeError)
    assert reply.body == b"chunk 0\nchunk 1\n"
    assert balance(holder, kind.group) == 20
    assert active_holds() == 0


@pytest.mark.django_db(transaction=True)
def test_an_asgi_client_disconnect_mid_stream_is_charged(holder):
    """Django's ASGI handler, a real disconnect: the response task is cancelled and
    ``response.close()`` is not called; the stream's end settles the charge."""
    import asyncio

    from django.core.handlers.asgi import ASGIHandler

    services.grant(holder, "ai", 20)
    client = Client()
    client.force_login(person(holder))
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    bodies = []

    async def run():
        gone = asyncio.Event()

        async def receive():
            if not bodies:
                bodies.append(b"")
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.body" and message.get("body"):
                bodies.append(message["body"])
                if len(bodies) == 3:  # two chunks delivered, then the client leaves
                    gone.set()
                    await asyncio.sleep(3600)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/async-stream/",
            "raw_path": b"/async-stream/",
            "query_string": b"chunks=5",
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"cookie", cookie)],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }
        await ASGIHandler()(scope, receive, send)

    async_to_sync(run)()
    assert bodies[1:] == [b"chunk 0\n", b"chunk 1\n"]
    # Two chunks produced (send() was blocked on the second when the client left).
    assert services.get_balance(holder, "ai") == 18
    assert active_holds() == 0


# --- DRF specifics ----------------------------------------------------------------------------


def test_viewset_costs_are_per_action(holder):
    services.grant(holder, "calls", 5)
    client = Client()
    client.force_login(person(holder))
    listing = client.get("/reports/")
    assert listing.status_code == 200
    assert "Credits-Remaining" not in listing.headers  # not in credits_cost: free, unmetered
    export = client.post("/reports/export/")
    assert export.status_code == 200
    assert export.headers["Credits-Remaining"] == "2"
    # A method the view does not serve is a 405, not a 402 or a charge.
    assert client.get("/reports/export/").status_code == 405
    assert client.options("/apiview/").status_code == 200  # DRF's metadata: free
    assert balance(holder, "calls") == 2
    assert served() == ["export"]


def test_a_handled_drf_error_under_atomic_requests_charges_nothing(holder):
    services.grant(holder, "calls", 5)
    client = Client()
    client.force_login(person(holder))
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    try:
        reply = client.get("/apiview/?outcome=invalid")
        failed = Client(raise_request_exception=False)
        failed.force_login(person(holder))
        crashed = failed.get("/apiview/?outcome=raise")
        ok = client.get("/apiview/")
    finally:
        connection.settings_dict["ATOMIC_REQUESTS"] = False
    assert (reply.status_code, crashed.status_code, ok.status_code) == (400, 500, 200)
    assert balance(holder, "calls") == 4
    assert active_holds() == 0


# --- the core, directly -----------------------------------------------------------------------


def test_a_view_that_outlives_its_hold_is_charged_as_a_consume(holder, travel):
    services.grant(holder, "calls", 5)
    request = RequestFactory().get("/slow/")
    request.user, request.session = person(holder), {}
    charge = Charge.open(request, "calls", 2)
    with travel(timezone.now() + timedelta(hours=1)):
        services.consume(holder, "calls", 1)  # a write on the account frees the dead hold
        charge.settle(True)
    assert charge.credits.charged == 2
    assert balance(holder, "calls") == 2
    assert Hold.objects.get().status == HoldStatus.EXPIRED


# --- PostgreSQL: real threads, real row locks -------------------------------------------------


@pytest.mark.postgres
def test_eight_threads_on_exactly_one_hundred_tokens():
    """Cost 1, a view that fails one time in five: exactly the successful responses are
    charged, never more than 100, and no request is served unpaid."""
    holder = make_holder("carol")
    services.grant(holder, "calls", 100)
    kind = KINDS[0]
    start = threading.Barrier(8)

    def work(thread):
        client = Client(raise_request_exception=False)
        client.force_login(person(holder))
        start.wait()
        replies = []
        try:
            for i in range(20):
                failing = (thread * 20 + i) % 5 == 0
                outcome = "raise" if failing and i % 2 else "500" if failing else "ok"
                replies.append(client.get(f"{kind.url}?outcome={outcome}").status_code)
            return replies
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [s for replies in pool.map(work, range(8)) for s in replies]

    ok, refused, failed = statuses.count(200), statuses.count(402), statuses.count(500)
    assert ok + refused + failed == 160
    assert refused > 0  # 128 requests would succeed: the tokens ran out
    charged = 100 - services.get_balance(holder, "calls")
    assert charged == ok <= 100
    consumed = LedgerEntry.objects.filter(kind=EntryKind.CONSUME)
    assert sum(-e.amount for e in consumed) == ok
    # No request served unpaid: every view call that succeeded is one charged token, and a
    # refused request never reached the view.
    calls = [outcome for _, _, outcome in metered_views.SEEN]
    assert calls.count("ok") == ok
    assert len(calls) - calls.count("ok") == failed
    assert active_holds() == 0


def test_settling_reads_neither_the_holder_nor_the_balance_again(holder):
    """The capture takes the member the hold recorded (allowed when it was reserved), and the
    remaining balance header comes from the capture: after the reservation, a metered call
    reads no holder row, and nothing at all once the hold is captured."""
    from django.test.utils import CaptureQueriesContext

    from user_credits.holders import get_holder_model

    services.grant(holder, "calls", 20)
    client = Client()
    client.force_login(person(holder))
    assert client.get("/function/").status_code == 200  # warm: the session, the group
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/function/")
    assert response.status_code == 200 and response["Credits-Remaining"] == "18"
    sql = [q["sql"] for q in captured.captured_queries]
    reserved = next(i for i, q in enumerate(sql) if q.startswith('INSERT INTO "user_credits_hold"'))
    table = f'"{get_holder_model()._meta.db_table}"'
    assert not [q for q in sql[reserved:] if q.startswith("SELECT") and f"FROM {table}" in q]
    done = next(i for i, q in enumerate(sql) if "SET \"status\" = 'captured'" in q)
    assert [q for q in sql[done + 1 :] if not q.startswith("RELEASE SAVEPOINT")] == []
    assert balance(holder, "calls") == 18
