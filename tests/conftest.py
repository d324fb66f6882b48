import pytest
from django.core.signals import setting_changed
from django.db import connection

from user_credits.holders import holder_is_user

from .factories import make_catalog, make_holder, make_user


def _keep_the_holder_hooks(*, setting, value, enter, **kwargs):
    """Under a custom holder model, a test that replaces ``USER_CREDITS`` keeps the site's two
    holder hooks (``tests.settings_workspaces``) unless it sets them itself."""
    if setting != "USER_CREDITS" or not enter or not isinstance(value, dict):
        return
    if holder_is_user():
        return
    from . import settings_workspaces

    for key, path in settings_workspaces.USER_CREDITS.items():
        value.setdefault(key, path)


setting_changed.connect(_keep_the_holder_hooks)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.fixture(autouse=True)
def _skip_without_postgres(request):
    marker = request.node.get_closest_marker("postgres")
    if marker and connection.vendor != "postgresql":
        default = "needs PostgreSQL: row locks (SELECT … FOR UPDATE) are no-ops on SQLite"
        pytest.skip(marker.kwargs.get("reason", default))


@pytest.fixture(autouse=True)
def _skip_with_a_custom_holder_model(request):
    marker = request.node.get_closest_marker("users_only")
    if marker and not holder_is_user():
        pytest.skip(marker.kwargs.get("reason", "about holders that are users"))


@pytest.fixture(autouse=True)
def _fresh_group_cache():
    """Tests roll back or flush the rows a process may have cached (a restore, in effect)."""
    from user_credits.services.common import clear_group_cache

    clear_group_cache()


@pytest.fixture
def user(db):
    return make_user("alice")


@pytest.fixture
def other_user(db):
    return make_user("bob")


@pytest.fixture
def holder(user):
    """The holder of ``user``'s credits: ``user`` itself under the default holder model, a
    workspace that ``user`` owns under ``tests.settings_workspaces``."""
    return make_holder(user=user)


@pytest.fixture
def other_holder(other_user):
    return make_holder(user=other_user)


@pytest.fixture
def catalog(db):
    """``{offer name: offer}``: plans, talks, a VIP talk unlocked by early birds, a bundle."""
    return make_catalog()


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run the on-commit callbacks (signals) of the block, as a real commit would."""

    def run():
        return django_capture_on_commit_callbacks(execute=True)

    return run


@pytest.fixture
def travel():
    """``with travel(datetime): ...`` freezes ``timezone.now()`` (every time read of the app)."""
    from contextlib import contextmanager
    from unittest import mock

    @contextmanager
    def to(moment):
        with mock.patch("django.utils.timezone.now", return_value=moment):
            yield moment

    return to


@pytest.fixture
def endpoint(db, settings):
    """dj-stripe's account, API key and webhook endpoint, seeded so that no call is made to
    Stripe's /v1/account."""
    from djstripe.models import Account, APIKey, WebhookEndpoint

    from .stripe_fake import SECRET

    account = Account.objects.create(id="acct_uctests", livemode=False)
    APIKey.objects.create(
        secret=settings.STRIPE_TEST_SECRET_KEY,
        type="secret",
        livemode=False,
        djstripe_owner_account=account,
    )
    return WebhookEndpoint.objects.create(
        id="we_uctests",
        url="https://shop.test/stripe/webhook/",
        enabled_events=["*"],
        secret=SECRET,
        status="enabled",
        livemode=False,
        djstripe_owner_account=account,
        api_version="",
    )


@pytest.fixture
def stripe_api():
    from .stripe_fake import FakeStripe

    with FakeStripe() as api:
        yield api


@pytest.fixture
def deliver(endpoint, stripe_api):
    """POST an event, signed like Stripe, to dj-stripe's webhook view; the event's object is
    served by the fake API as dj-stripe re-reads it."""

    import json

    import stripe
    from django.test import Client

    from .stripe_fake import SECRET

    def send(evt, *, secret=SECRET, timestamp=None, client=None):
        stripe_api.put(evt["data"]["object"])
        body = json.dumps(evt)
        header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp)
        return (client or Client()).post(
            f"/stripe/webhook/{endpoint.djstripe_uuid}/",
            body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=header,
        )

    return send


@pytest.fixture(scope="session")
def _localstripe_server():
    """localstripe's aiohttp app on 127.0.0.1 only (its CLI binds every interface), started
    once per process: its module-level app cannot move to another event loop."""
    import asyncio
    import socket
    import threading

    from aiohttp import web
    from localstripe import server as localstripe_server

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner = web.AppRunner(localstripe_server.app)

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture
def localstripe(_localstripe_server):
    """The Stripe API served by localstripe for one test, emptied afterwards."""
    import requests
    import stripe

    saved, stripe.api_base = stripe.api_base, _localstripe_server
    yield _localstripe_server
    stripe.api_base = saved
    requests.delete(f"{_localstripe_server}/_config/data", timeout=5)
