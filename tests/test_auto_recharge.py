"""Auto-recharge (DESIGN.md §10): enable and disable, the trigger after commit from every write
that lowers a balance, the in-flight guard, failures that count and disable, and on
PostgreSQL concurrent triggers that start exactly one payment."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from user_credits import services, signals
from user_credits.exceptions import InvalidArgument
from user_credits.models import (
    AutoRecharge,
    Billing,
    CreditAccount,
    Order,
    OrderStatus,
)
from user_credits.money import to_minor
from user_credits.payments.manual import ManualProvider
from user_credits.payments.stripe import ORDER_KEY

from . import stripe_fake as fake
from .factories import make_group, make_holder, make_offer, make_user


@pytest.fixture
def group(db):
    return make_group("api-calls")


@pytest.fixture
def pack(group):
    """What the recharge buys: 100 tokens for $5."""
    return make_offer("Pack 100", group=group, price=Decimal("5"), token_count=100)


@pytest.fixture
def funded(holder, group):
    services.grant(holder, group, 100, reason="start")
    return holder


@pytest.fixture
def recorded():
    """The ``auto_recharge_failed`` and ``auto_recharge_disabled`` signals sent, in order."""
    sent = []

    def failed(auto_recharge, order, reason, failures, **kwargs):
        sent.append(("failed", order.pk if order else None, reason, failures))

    def disabled(auto_recharge, reason, **kwargs):
        sent.append(("disabled", auto_recharge.pk, reason))

    signals.auto_recharge_failed.connect(failed, weak=False, dispatch_uid="t-failed")
    signals.auto_recharge_disabled.connect(disabled, weak=False, dispatch_uid="t-disabled")
    yield sent
    signals.auto_recharge_failed.disconnect(dispatch_uid="t-failed")
    signals.auto_recharge_disabled.disconnect(dispatch_uid="t-disabled")


def threshold_of(holder, group):
    return CreditAccount.objects.get(holder=holder, offer_group=group).auto_recharge_below


def recharge_orders(holder, group):
    return list(Order.objects.filter(holder=holder, offer_group=group).order_by("id"))


# --- enable, change, disable -----------------------------------------------------------------


def test_enable_copies_the_threshold_to_the_account_and_disable_clears_it(holder, group, pack):
    recharge = services.enable_auto_recharge(holder, "api-calls", pack, threshold=20, quantity=2)
    assert (recharge.offer, recharge.threshold, recharge.quantity) == (pack, 20, 2)
    assert recharge.enabled and threshold_of(holder, group) == 20

    changed = services.enable_auto_recharge(holder, group, pack.pk, threshold=30)
    assert changed.pk == recharge.pk and changed.threshold == 30 and changed.quantity == 1
    assert threshold_of(holder, group) == 30

    disabled = services.disable_auto_recharge(holder, group)
    assert disabled.pk == recharge.pk and not disabled.enabled
    assert threshold_of(holder, group) is None
    assert AutoRecharge.objects.get().enabled is False
    assert services.disable_auto_recharge(make_holder(), group) is None


@pytest.mark.parametrize(
    "change, field",
    [
        ({"threshold": 0}, "threshold"),
        ({"threshold": -5}, "threshold"),
        ({"threshold": "10"}, "threshold"),
        ({"quantity": 0}, "quantity"),
        ({"offer": "other-group"}, "offer"),
        ({"offer": "free"}, "offer"),
        ({"offer": "inactive"}, "offer"),
        ({"offer": "recurring"}, "offer"),
        ({"offer": 999999}, "offer"),
        ({"holder": "group"}, "holder"),
    ],
)
def test_bad_arguments_name_their_field_and_write_nothing(holder, group, pack, change, field):
    offers = {
        "other-group": make_offer(group=make_group("elsewhere")),
        "free": make_offer(group=group, price=Decimal("0")),
        "inactive": make_offer(group=group, is_active=False),
        "recurring": make_offer(group=group, billing=Billing.RECURRING),
    }
    args = {"holder": holder, "offer": pack, "threshold": 10, "quantity": 1, **change}
    if args["offer"] in offers:
        args["offer"] = offers[args["offer"]]
    if args["holder"] == "group":
        args["holder"] = group  # an instance of another model than the holder model
    with pytest.raises(InvalidArgument) as caught:
        services.enable_auto_recharge(
            args["holder"],
            group,
            args["offer"],
            threshold=args["threshold"],
            quantity=args["quantity"],
        )
    assert caught.value.field == field
    assert not AutoRecharge.objects.exists()
    assert not CreditAccount.objects.filter(auto_recharge_below__isnull=False).exists()


# --- the trigger ---------------------------------------------------------------------------


def test_consume_under_the_threshold_starts_one_order_after_commit(funded, group, pack, on_commit):
    services.enable_auto_recharge(funded, group, pack, threshold=50, quantity=2)
    with on_commit() as callbacks:
        services.consume(funded, group, 40)  # 60 left: not under 50
    assert recharge_orders(funded, group) == []
    with on_commit() as callbacks:
        services.consume(funded, group, 15)  # 45 left
        # Nothing happens inside the consume's transaction.
        assert recharge_orders(funded, group) == []
    assert len(callbacks) >= 1
    [order] = recharge_orders(funded, group)
    assert (order.status, order.quantity, order.total) == (OrderStatus.PENDING, 2, Decimal("10"))
    assert AutoRecharge.objects.get().pending_order == order
    assert order.events.filter(message__startswith="Auto-recharge payment started").exists()
    # In flight: the account keeps no threshold, so writes cost nothing more meanwhile.
    assert threshold_of(funded, group) is None

    # The manual provider: the order waits for an admin and no second one starts meanwhile.
    with on_commit():
        services.consume(funded, group, 5)
        services.consume(funded, group, 5, idempotency_key="k")
        services.consume(funded, group, 5, idempotency_key="k")  # a replay writes nothing
    assert recharge_orders(funded, group) == [order]

    with on_commit():
        ManualProvider().validate(order)
    assert services.get_balance(funded, group) == 35 + 200
    recharge = AutoRecharge.objects.get()
    assert recharge.pending_order is None and recharge.failures == 0
    assert threshold_of(funded, group) == 50

    with on_commit():
        services.consume(funded, group, 190)  # 45 left: a new recharge
    assert len(recharge_orders(funded, group)) == 2


def test_nothing_starts_without_an_enabled_recharge(funded, group, pack, on_commit):
    with on_commit():
        services.consume(funded, group, 90)
    services.enable_auto_recharge(funded, group, pack, threshold=50)
    services.disable_auto_recharge(funded, group)
    with on_commit():
        services.consume(funded, group, 5)
    assert recharge_orders(funded, group) == []


def test_a_capture_under_the_threshold_starts_a_recharge(funded, group, pack, on_commit):
    services.enable_auto_recharge(funded, group, pack, threshold=50)
    hold = services.hold(funded, group, 70)
    with on_commit():
        services.capture(hold, 60)
    assert services.get_balance(funded, group) == 40
    assert len(recharge_orders(funded, group)) == 1


def test_a_hold_under_the_threshold_starts_a_recharge(funded, group, pack, on_commit):
    services.enable_auto_recharge(funded, group, pack, threshold=50)
    with on_commit():
        services.hold(funded, group, 40)  # 60 available
    assert recharge_orders(funded, group) == []
    with on_commit():
        services.hold(funded, group, 20)  # 40 available, 60 held
    assert len(recharge_orders(funded, group)) == 1


def test_a_batch_under_the_threshold_starts_one_recharge(funded, group, pack, on_commit):
    services.enable_auto_recharge(funded, group, pack, threshold=50)
    items = [services.ConsumeItem(funded, group, 20, idempotency_key=f"b{i}") for i in range(4)]
    with on_commit():
        results = services.consume_many(items)  # 80, 60, 40, 20 left: two items under 50
    assert [r.balance for r in results] == [80, 60, 40, 20]
    assert len(recharge_orders(funded, group)) == 1
    with on_commit():
        services.consume_many(items)  # replays write nothing and start nothing
    assert len(recharge_orders(funded, group)) == 1


def test_expiry_under_the_threshold_starts_a_recharge(holder, group, pack, on_commit, travel):
    now = timezone.now()
    services.grant(holder, group, 80, expires=now + timedelta(days=1))
    services.grant(holder, group, 30)
    services.enable_auto_recharge(holder, group, pack, threshold=50)
    with travel(now + timedelta(days=2)), on_commit():
        report = services.expire_credits()
    assert report.expired_tokens == 80
    assert len(recharge_orders(holder, group)) == 1


def test_a_refund_under_the_threshold_starts_a_recharge(holder, group, pack, on_commit):
    order = services.create_order(holder, make_offer(group=group, token_count=100))
    services.mark_paid(order)
    services.grant(holder, group, 20)
    services.enable_auto_recharge(holder, group, pack, threshold=50)
    with on_commit():
        services.refund(order)
    assert services.get_balance(holder, group) == 20
    orders = recharge_orders(holder, group)
    assert len(orders) == 2 and orders[-1].offer == pack


def test_a_recharge_paid_since_the_write_is_not_started_again(funded, group, pack):
    """The claim re-reads the balance: a trigger that comes late finds it healthy."""
    services.enable_auto_recharge(funded, group, pack, threshold=50)
    services.consume(funded, group, 60)  # no on-commit run: the trigger is lost here
    services.grant(funded, group, 100)
    assert services.start_auto_recharge(funded, group) is None
    assert recharge_orders(funded, group) == []


QUEUED = []


def queue_recharge(holder_id, offer_group_id):
    """A task queue's ``delay``, in effect: remember what to run."""
    QUEUED.append((holder_id, offer_group_id))


def test_a_runner_setting_hands_the_recharge_to_a_task_queue(funded, group, pack, on_commit):
    services.enable_auto_recharge(funded, group, pack, threshold=50)
    QUEUED.clear()
    runner = {"AUTO_RECHARGE_RUNNER": "tests.test_auto_recharge.queue_recharge"}
    with override_settings(USER_CREDITS=runner), on_commit():
        services.consume(funded, group, 60)
        assert QUEUED == []  # after commit only
    assert QUEUED == [(funded.pk, group.pk)]
    assert recharge_orders(funded, group) == []
    # What the queued task then runs:
    order = services.start_auto_recharge(*QUEUED[0])
    assert recharge_orders(funded, group) == [order]


# --- failures --------------------------------------------------------------------------------


def test_failures_count_signal_and_disable_after_the_maximum(
    funded, group, pack, on_commit, recorded
):
    services.enable_auto_recharge(funded, group, pack, threshold=50)
    services.consume(funded, group, 50)  # 50 left: not under it
    orders = []
    for attempt in range(1, 4):
        with on_commit():
            services.consume(funded, group, 1)
        order = Order.objects.filter(holder=funded).latest("id")
        assert order not in orders
        orders.append(order)
        with on_commit():
            services.mark_failed(order, message="Refused by the bank.")
        recharge = AutoRecharge.objects.get()
        assert recharge.failures == attempt and recharge.pending_order is None
        assert recharge.last_failure == "Refused by the bank."
    assert recorded[:3] == [
        ("failed", order.pk, "Refused by the bank.", n)
        for order, n in zip(orders, (1, 2, 3), strict=True)
    ]
    assert recorded[3][0] == "disabled" and "3" in recorded[3][2]
    assert AutoRecharge.objects.get().enabled is False
    assert threshold_of(funded, group) is None
    with on_commit():
        services.consume(funded, group, 1)
    assert len(recharge_orders(funded, group)) == 3


@override_settings(USER_CREDITS={"AUTO_RECHARGE_MAX_FAILURES": 1})
def test_a_payment_that_does_not_match_counts_as_a_failure(
    funded, group, pack, on_commit, recorded
):
    services.enable_auto_recharge(funded, group, pack, threshold=50)
    with on_commit():
        services.consume(funded, group, 60)
    [order] = recharge_orders(funded, group)
    with on_commit():
        services.mark_paid(order, amount=Decimal("1.00"))
    assert Order.objects.get(pk=order.pk).status == OrderStatus.INCONSISTENT
    assert [kind for kind, *_ in recorded] == ["failed", "disabled"]
    assert AutoRecharge.objects.get().enabled is False


def test_a_success_resets_the_failures(funded, group, pack, on_commit):
    services.enable_auto_recharge(funded, group, pack, threshold=50)
    with on_commit():
        services.consume(funded, group, 60)
    services.mark_failed(recharge_orders(funded, group)[-1])
    with on_commit():
        services.consume(funded, group, 1)
    assert AutoRecharge.objects.get().failures == 1
    ManualProvider().validate(recharge_orders(funded, group)[-1])
    assert AutoRecharge.objects.get().failures == 0


def test_an_offer_no_longer_for_sale_counts_as_a_failure(funded, group, pack, on_commit, recorded):
    services.enable_auto_recharge(funded, group, pack, threshold=50)
    pack.is_active = False
    pack.save()
    with on_commit():
        services.consume(funded, group, 60)
    assert recharge_orders(funded, group) == []
    assert recorded and recorded[0][0] == "failed" and recorded[0][1] is None
    assert AutoRecharge.objects.get().failures == 1


# --- PostgreSQL: concurrency and replays ------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("fast_path", [True, False], ids=["plpgsql", "portable"])
def test_eight_concurrent_consumes_across_the_threshold_start_one_recharge(fast_path):
    holder = make_holder()
    group = make_group("api-calls")
    pack = make_offer("Pack 100", group=group, price=Decimal("5"), token_count=100)
    services.grant(holder, group, 100)
    services.enable_auto_recharge(holder, group, pack, threshold=70)
    barrier = threading.Barrier(8)
    errors = []

    def spend():
        try:
            barrier.wait(10)
            services.consume(holder, group, 10)  # autocommit: on_commit runs right after
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    with override_settings(USER_CREDITS={"POSTGRES_FAST_PATH": fast_path}):
        threads = [threading.Thread(target=spend) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert services.get_balance(holder, group) == 20
    orders = recharge_orders(holder, group)
    assert len(orders) == 1, orders
    assert AutoRecharge.objects.get().pending_order_id == orders[0].pk


@pytest.mark.postgres
def test_replays_of_the_recharge_paid_event_grant_once(deliver):
    holder = make_holder()
    group = make_group("api-calls")
    pack = make_offer("Pack 100", group=group, price=Decimal("5"), token_count=100)
    services.grant(holder, group, 100)
    services.enable_auto_recharge(holder, group, pack, threshold=50)
    services.consume(holder, group, 60)
    [order] = recharge_orders(holder, group)
    evt = fake.event(
        "payment_intent.succeeded",
        fake.payment_intent(
            amount=to_minor(order.total, order.currency),
            currency=order.currency,
            metadata={ORDER_KEY: str(order.pk)},
        ),
    )
    barrier = threading.Barrier(4)
    statuses = []

    def replay():
        barrier.wait(10)
        try:
            statuses.append(deliver(evt).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=replay) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    statuses.append(deliver(evt).status_code)
    assert statuses == [200] * 5
    assert services.get_balance(holder, group) == 140
    assert Order.objects.get(pk=order.pk).lots.count() == 1
    assert AutoRecharge.objects.get().pending_order is None
    assert connection.vendor == "postgresql"


# --- admin -----------------------------------------------------------------------------------


@pytest.fixture
def staff(db, client):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def test_admin_adds_changes_and_disables_through_the_services(staff, funded, group, pack):
    from django.urls import reverse

    account = CreditAccount.objects.get(holder=funded)
    page = staff.get(reverse("admin:user_credits_creditaccount_change", args=[account.pk]))
    assert "Add an auto-recharge" in page.text
    form = {
        "holder": funded.pk,
        "offer_group": group.pk,
        "offer": pack.pk,
        "threshold": 30,
        "quantity": 2,
        "enabled": "on",
    }
    other = make_offer(group=make_group("elsewhere"))
    refused = staff.post(
        reverse("admin:user_credits_autorecharge_add"), {**form, "offer": other.pk}
    )
    assert refused.status_code == 200 and "not one of the group" in refused.text
    assert not AutoRecharge.objects.exists()

    added = staff.post(reverse("admin:user_credits_autorecharge_add"), form)
    assert added.status_code == 302
    recharge = AutoRecharge.objects.get()
    assert threshold_of(funded, group) == 30
    page = staff.get(reverse("admin:user_credits_creditaccount_change", args=[account.pk]))
    assert "2 × Pack 100 under 30 tokens" in page.text

    change = reverse("admin:user_credits_autorecharge_change", args=[recharge.pk])
    assert staff.post(change, {**form, "enabled": ""}).status_code == 302
    assert AutoRecharge.objects.get().enabled is False
    assert threshold_of(funded, group) is None
    assert staff.get(reverse("admin:user_credits_autorecharge_changelist")).status_code == 200
