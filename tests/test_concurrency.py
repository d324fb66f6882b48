"""Correct under concurrency: real threads on real PostgreSQL row locks."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count

from user_credits import services
from user_credits.exceptions import IdempotencyConflict, InsufficientCredits
from user_credits.models import CreditLot, EntryKind, LedgerEntry, LotStatus, OrderStatus

from .factories import assert_ledger_consistent, make_group, make_holder, make_offer, table_snapshot
from .faults import failing_ledger_insert

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def in_threads(n, work):
    """Run ``work(i)`` in ``n`` threads released together; return results or exceptions."""
    barrier = threading.Barrier(n)

    def run(i):
        try:
            barrier.wait()
            return work(i)
        except Exception as exc:  # collected and asserted on by the caller
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


@pytest.mark.postgres
def test_eight_threads_never_overspend():
    holder = make_holder()
    group = make_group("api")
    for _ in range(4):
        services.grant(holder, group, 250)

    def work(i):
        ok = refused = 0
        for _ in range(250):
            try:
                services.consume(holder, group, 1)
                ok += 1
            except InsufficientCredits:
                refused += 1
        return ok, refused

    results = in_threads(8, work)
    assert all(isinstance(r, tuple) for r in results), results
    assert sum(r[0] for r in results) == 1000
    assert sum(r[1] for r in results) == 1000
    assert services.get_balance(holder, group) == 0
    assert LedgerEntry.objects.filter(kind=EntryKind.CONSUME).count() == 1000
    assert_ledger_consistent()


@pytest.mark.postgres
def test_two_sweeps_at_once_expire_each_lot_once(travel):
    group = make_group("g")
    users = [make_holder() for _ in range(60)]
    with travel(T0):
        for u in users:
            services.grant(u, group, 3, expires=T0 + timedelta(hours=1))
            services.grant(u, group, 2, expires=T0 + timedelta(hours=1))

    def sweep(i):
        if i == 0:  # the command, as cron runs it
            out = StringIO()
            call_command("user_credits_expire", "--batch-size", "7", "--json", stdout=out)
            return json.loads(out.getvalue())["expired_lots"]
        return services.expire_credits(batch_size=5).expired_lots

    with travel(T0 + timedelta(hours=2)):
        expired = in_threads(2, sweep)
    assert all(isinstance(n, int) for n in expired), expired
    assert sum(expired) == 120
    per_lot = (
        LedgerEntry.objects.filter(kind=EntryKind.EXPIRE).values("lot").annotate(n=Count("id"))
    )
    assert len(per_lot) == 120 and {row["n"] for row in per_lot} == {1}
    assert_ledger_consistent()


@pytest.mark.postgres
def test_concurrent_payment_notifications_grant_once():
    holder = make_holder()
    order = services.create_order(holder, make_offer(token_count=10, append_date=True))
    results = in_threads(4, lambda i: services.mark_paid(order, reference=f"evt_{i}"))
    # Every notification returns the paid order: none fails, none sees a half-paid order.
    assert not [r for r in results if isinstance(r, Exception)], results
    assert [(r.pk, r.status) for r in results] == [(order.pk, OrderStatus.PAID)] * 4
    assert CreditLot.objects.filter(order=order).count() == 1
    assert order.events.filter(status=OrderStatus.PAID).count() == 1
    assert services.get_balance(holder, order.offer_group) == 10


@pytest.mark.postgres
def test_concurrent_chained_payments_queue_up():
    holder = make_holder()
    group = make_group("sub")
    offer = make_offer(group=group, append_date=True)
    orders = [services.create_order(holder, offer) for _ in range(4)]
    results = in_threads(4, lambda i: services.mark_paid(orders[i]))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert [(r.pk, r.status) for r in results] == [(o.pk, OrderStatus.PAID) for o in orders]
    periods = sorted((r.starts, r.expires) for r in results)
    assert periods == sorted(
        (o.starts, o.expires) for o in type(orders[0]).objects.filter(offer_group=group)
    )
    for (_, end), (start, _) in zip(periods, periods[1:], strict=False):
        assert start == end  # each payment chains onto the previous one, no overlap
    assert services.get_balance(holder, group) == 4 * offer.token_count


@pytest.mark.postgres
def test_same_idempotency_key_from_many_threads_consumes_once():
    holder = make_holder()
    group = make_group("g")
    services.grant(holder, group, 10)
    results = in_threads(6, lambda i: services.consume(holder, group, 3, idempotency_key="once"))
    assert all(not isinstance(r, Exception) for r in results), results
    assert sum(not r.replayed for r in results) == 1
    assert {r.balance for r in results} == {7}
    assert services.get_balance(holder, group) == 7


@pytest.mark.postgres
def test_same_key_in_two_groups_at_once_conflicts():
    holder = make_holder()
    groups = [make_group("a"), make_group("b")]
    for g in groups:
        services.grant(holder, g, 10)
    results = in_threads(2, lambda i: services.consume(holder, groups[i], 1, idempotency_key="k"))
    assert sum(isinstance(r, IdempotencyConflict) for r in results) == 1, results
    assert sum(services.get_balance(holder, g) for g in groups) == 19
    assert_ledger_consistent()


# --- faults: an exception after the first write leaves the database as it was -------------


@pytest.mark.django_db(transaction=True)
def test_fault_in_consume_writes_nothing(holder, travel):
    group = make_group("g")
    with travel(T0):
        services.grant(holder, group, 4, expires=T0 + timedelta(hours=1))
        services.grant(holder, group, 4)
    with travel(T0 + timedelta(hours=2)):
        before = table_snapshot()
        with failing_ledger_insert("consume") as error:
            with pytest.raises(error):
                services.consume(holder, group, 2, idempotency_key="k")
        assert table_snapshot() == before
        assert services.consume(holder, group, 2, idempotency_key="k").balance == 2
    assert CreditLot.objects.filter(status=LotStatus.EXPIRED).count() == 1
    assert_ledger_consistent()


@pytest.mark.django_db
def test_fault_in_mark_paid_writes_nothing(catalog, holder):
    order = services.create_order(holder, catalog["Mobile Max"])
    before = table_snapshot()
    real_insert = LedgerEntry.objects.bulk_create
    calls = []

    def fail_on_second_grant(objs, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real_insert(objs, *args, **kwargs)

    with mock.patch.object(LedgerEntry.objects, "bulk_create", side_effect=fail_on_second_grant):
        with pytest.raises(RuntimeError):
            services.mark_paid(order)
    assert table_snapshot() == before
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    assert services.mark_paid(order).status == OrderStatus.PAID
    assert services.get_balance(holder, "calls") == 120
    assert_ledger_consistent()


@pytest.mark.postgres
def test_eight_threads_holding_then_capturing_never_overdraw():
    from user_credits.exceptions import InvalidTransition

    holder = make_holder()
    group = make_group("ai")
    services.grant(holder, group, 100)

    def work(i):
        captured = refused = 0
        for n in range(20):
            try:
                held = services.hold(holder, group, 3, idempotency_key=f"{i}-{n}")
            except InsufficientCredits:
                refused += 1
                continue
            if n % 4 == 0:
                services.release(held)
                continue
            try:
                result = services.capture(held, 2 if n % 2 else 4)  # less, or more than held
                captured += sum(-e.amount for e in result.entries)
            except (InsufficientCredits, InvalidTransition):
                services.release(held)
        return captured, refused

    results = in_threads(8, work)
    assert all(isinstance(r, tuple) for r in results), results
    spent = sum(r[0] for r in results)
    detail = services.get_balance_detail(holder, group)
    assert spent <= 100 and detail.held == 0
    assert detail.available == detail.total == 100 - spent
    assert LedgerEntry.objects.filter(kind=EntryKind.CONSUME).count() > 0
    assert_ledger_consistent()
