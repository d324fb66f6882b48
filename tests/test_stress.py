"""Multi-process stress on PostgreSQL: 4 processes run a random mix of the services on a few
users for a bounded time; afterwards the invariants hold and every operation that reported
success is in the ledger exactly once.

USER_CREDITS_STRESS_SECONDS sets the duration (default 6, at most 30).
"""

import multiprocessing
import os
import random
import time
import traceback
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.db.models import Sum
from django.utils import timezone

from user_credits import services
from user_credits.exceptions import InsufficientCredits, InvalidTransition, PaymentMismatch
from user_credits.models import ConsumptionRecord, CreditLot, EntryKind, LedgerEntry, Order

from .factories import assert_ledger_consistent, make_group, make_holder, make_offer

SECONDS = min(float(os.environ.get("USER_CREDITS_STRESS_SECONDS", "6")), 30.0)
EXPECTED = (InsufficientCredits, InvalidTransition, PaymentMismatch)


def worker(index, user_ids, group_key, order_ids, results):
    connections.close_all()
    rng = random.Random(index)
    log = []
    try:
        deadline = time.monotonic() + SECONDS
        n = 0
        while time.monotonic() < deadline:
            n += 1
            holder = rng.choice(user_ids)
            op = rng.choices(["consume", "grant", "pay", "refund", "expire"], [10, 4, 3, 2, 1])[0]
            try:
                if op == "consume":
                    key = f"w{index}-{n}"
                    count = rng.randint(1, 6)
                    services.consume(holder, group_key, count, idempotency_key=key)
                    log.append(("consume", key, count))
                elif op == "grant":
                    days = rng.choice([None, 1, 30])
                    expires = timezone.now() + timedelta(days=days) if days else None
                    lot = services.grant(holder, group_key, rng.randint(1, 10), expires=expires)
                    log.append(("grant", lot.pk, lot.granted))
                elif op == "pay":
                    order = services.mark_paid(rng.choice(order_ids))
                    log.append(("pay", order.pk, 0))
                elif op == "refund":
                    pk = rng.choice(order_ids)
                    services.refund(pk, amount=Decimal("1.00"))
                    log.append(("refund", pk, 1))
                else:
                    services.expire_credits()
            except EXPECTED:
                pass
        results.put((index, log, None))
    except Exception:
        results.put((index, log, traceback.format_exc()))
    finally:
        connections.close_all()


@pytest.mark.postgres
def test_four_processes_lose_nothing():
    group = make_group("stress")
    users = [make_holder() for _ in range(3)]
    offer = make_offer(group=group, price=Decimal("5"), token_count=20, append_date=True)
    orders = [services.create_order(users[i % 3], offer) for i in range(40)]
    for holder in users:
        services.grant(holder, group, 50)
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=worker,
            args=(i, [u.pk for u in users], group.key, [o.pk for o in orders], results),
        )
        for i in range(4)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=SECONDS + 120) for _ in procs]
    for p in procs:
        p.join(30)
    errors = [error for _, _, error in outcomes if error]
    assert not errors, errors[0]
    log = [entry for _, entries, _ in outcomes for entry in entries]
    assert sum(1 for kind, *_ in log if kind == "consume") > 20

    assert_ledger_consistent()
    records = dict(ConsumptionRecord.objects.values_list("idempotency_key", "count"))
    consumed = dict(
        LedgerEntry.objects.filter(kind__in=[EntryKind.CONSUME, EntryKind.OVERDRAFT])
        .values("idempotency_key")
        .annotate(total=Sum("amount"))
        .values_list("idempotency_key", "total")
    )
    for kind, ref, amount in log:
        if kind == "consume":
            assert records.get(ref) == amount, ref
            assert consumed.get(ref) == -amount, ref
        elif kind == "grant":
            assert (
                LedgerEntry.objects.filter(lot_id=ref, kind=EntryKind.GRANT).get().amount == amount
            )
    assert len(records) == sum(1 for kind, *_ in log if kind == "consume")
    for order in Order.objects.filter(pk__in=[o.pk for o in orders]):
        assert CreditLot.objects.filter(order=order).count() == (
            0 if order.status == "pending" else 1
        )
    refunded = defaultdict(Decimal)
    for kind, ref, amount in log:
        if kind == "refund":
            refunded[ref] += amount
    for pk, total in refunded.items():
        assert Order.objects.get(pk=pk).amount_refunded == total
