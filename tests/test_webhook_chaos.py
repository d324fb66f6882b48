"""Webhook chaos: every event of 50 orders delivered three times, shuffled, from 4 threads."""

import queue
import random
import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Sum

from user_credits import services
from user_credits.models import CreditLot, EntryKind, LedgerEntry, OrderStatus
from user_credits.payments.stripe import ORDER_KEY

from . import stripe_fake as fake
from .factories import assert_ledger_consistent, make_holder, make_offer


@pytest.mark.postgres
def test_replayed_shuffled_concurrent_events_grant_and_revoke_once(deliver):
    offer = make_offer(price=Decimal("10"), token_count=10)
    users = [make_holder() for _ in range(5)]
    orders = [services.create_order(users[i % 5], offer) for i in range(50)]
    expected = {}
    events = []
    for i, order in enumerate(orders):
        meta = {ORDER_KEY: str(order.pk)}
        failed = fake.payment_intent(
            amount=1000, currency="usd", metadata=meta, status="requires_payment_method"
        )
        intent = fake.payment_intent(amount=1000, currency="usd", metadata=meta)
        session = fake.checkout_session(
            amount_total=1000, currency="usd", metadata=meta, payment_intent=intent["id"]
        )
        events += [
            fake.event("payment_intent.payment_failed", failed),
            fake.event("payment_intent.succeeded", intent),
            fake.event("checkout.session.completed", session),
        ]
        refunded = {0: 1000, 1: 500}.get(i % 3)
        if refunded:
            charge = fake.charge(
                amount=1000,
                currency="usd",
                metadata=meta,
                amount_refunded=refunded,
                payment_intent=intent["id"],
            )
            events.append(fake.event("charge.refunded", charge))
        expected[order.pk] = {
            0: (OrderStatus.REFUNDED, -10),
            1: (OrderStatus.PARTIAL, -5),
            2: (OrderStatus.PAID, 0),
        }[i % 3]
    deliveries = events * 3
    random.Random(20261127).shuffle(deliveries)
    work = queue.Queue()
    for evt in deliveries:
        work.put(evt)
    statuses = []
    errors = []

    def worker():
        try:
            while True:
                try:
                    evt = work.get_nowait()
                except queue.Empty:
                    return
                statuses.append(deliver(evt).status_code)
        except Exception as exc:  # asserted on below, with the event it broke on
            errors.append((evt["type"], exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(statuses) == len(deliveries) and set(statuses) == {200}
    grants = dict(
        CreditLot.objects.values("order").annotate(n=Count("id")).values_list("order", "n")
    )
    assert grants == {order.pk: 1 for order in orders}
    revokes = {
        row["lot__order"]: (row["n"], row["total"])
        for row in LedgerEntry.objects.filter(kind=EntryKind.REVOKE)
        .values("lot__order")
        .annotate(n=Count("id"), total=Sum("amount"))
    }
    for order in orders:
        order.refresh_from_db()
        status, revoked = expected[order.pk]
        assert order.status == status, order
        assert revokes.get(order.pk, (0, 0)) == ((1, revoked) if revoked else (0, 0)), order
    for holder in users:
        mine = [o for o in orders if o.holder_id == holder.pk]
        assert services.get_balance(holder, offer.offer_group) == sum(
            10 + expected[o.pk][1] for o in mine
        )
    assert_ledger_consistent()
