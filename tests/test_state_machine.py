"""Stateful property test: random sequences of the service calls against a small in-memory
model of DESIGN.md's rules. After every step the balances equal the model's and the ledger
invariants hold.

USER_CREDITS_HYPOTHESIS=long runs a longer profile (more examples, longer sequences).
"""

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from user_credits import models, services
from user_credits.exceptions import (
    IdempotencyConflict,
    InsufficientCredits,
    InvalidTransition,
    PaymentMismatch,
)
from user_credits.models import Cycle, LotStatus, OrderStatus

from .factories import assert_ledger_consistent, make_group, make_offer, make_user

LONG = os.environ.get("USER_CREDITS_HYPOTHESIS") == "long"
START = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)  # month ends come quickly


def burn_key(lot):
    return (
        lot["priority"],
        lot["expires"] is None,
        lot["expires"] or START,
        0 if lot["category"] == "promotional" else 1,
        lot["id"],
    )


class CreditsMachine(RuleBasedStateMachine):
    users = group = offers = None  # set by the test

    @initialize()
    def reset(self):
        for model in (
            models.ConsumptionRecord,
            models.LedgerEntry,
            models.CreditLot,
            models.CreditAccount,
            models.OrderEvent,
        ):
            model.objects.all().delete()
        models.Order.objects.filter(parent__isnull=False).delete()
        models.Order.objects.all().delete()
        self.now = START
        self.clock = mock.patch("django.utils.timezone.now", side_effect=lambda: self.now)
        self.clock.start()
        self.lots = {}  # lot id → model lot
        self.orders = {}  # order id → model order
        self.keys = {}  # (user id, key) → (count, balance after)

    def teardown(self):
        if hasattr(self, "clock"):
            self.clock.stop()

    # --- the model ----------------------------------------------------------------------

    def live(self, lot):
        return lot["status"] == "active" and (lot["expires"] is None or lot["expires"] > self.now)

    def balance(self, user):
        return sum(
            lot["remaining"]
            for lot in self.lots.values()
            if lot["user"] == user.pk and self.live(lot)
        )

    def add_lot(self, lot, user, category, order=None):
        self.lots[lot.pk] = {
            "id": lot.pk,
            "user": user.pk,
            "granted": lot.granted,
            "remaining": lot.granted,
            "expires": lot.expires,
            "category": category,
            "priority": 50,
            "order": order,
            "status": "active",
            "revoked": 0,
        }

    # --- rules --------------------------------------------------------------------------

    # Never-expiring grants tie with "once" orders on expiry, so the category decides.
    @rule(
        u=st.integers(0, 1),
        tokens=st.integers(1, 20),
        days=st.sampled_from([None, None, 1, 7, 30, 60]),
    )
    def grant(self, u, tokens, days):
        user = self.users[u]
        expires = None if days is None else self.now + timedelta(days=days)
        lot = services.grant(user, self.group, tokens, expires=expires)
        self.add_lot(lot, user, "promotional")

    @rule(
        u=st.integers(0, 1), which=st.sampled_from(["monthly", "once"]), quantity=st.integers(1, 3)
    )
    def buy(self, u, which, quantity):
        user = self.users[u]
        order = services.create_order(user, self.offers[which], quantity=quantity)
        order = services.mark_paid(order, amount=order.total, currency=order.currency)
        assert order.status == OrderStatus.PAID
        lot = order.lots.get()
        assert lot.granted == self.offers[which].token_count * quantity
        self.add_lot(lot, user, "paid", order=order.pk)
        self.orders[order.pk] = {
            "total": order.total,
            "refunded": Decimal(0),
            "expires": order.expires,
            "status": "paid",
        }

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def replay_payment_notifications(self, data):
        pk = data.draw(st.sampled_from(sorted(self.orders)))
        services.mark_paid(pk)
        services.mark_failed(pk, message="late failure")
        assert models.CreditLot.objects.filter(order_id=pk).count() == 1

    @rule(
        u=st.integers(0, 1),
        count=st.integers(1, 12),
        key=st.none() | st.sampled_from(["k0", "k1", "k2", "k3"]),
    )
    def consume(self, u, count, key):
        user = self.users[u]
        recorded = self.keys.get((user.pk, key)) if key else None
        if recorded is not None:
            if recorded[0] != count:
                with pytest.raises(IdempotencyConflict):
                    services.consume(user, self.group, count, idempotency_key=key)
            else:
                result = services.consume(user, self.group, count, idempotency_key=key)
                assert result.replayed and result.balance == recorded[1]
            return
        available = self.balance(user)
        if count > available:
            with pytest.raises(InsufficientCredits):
                services.consume(user, self.group, count, idempotency_key=key)
            return
        result = services.consume(user, self.group, count, idempotency_key=key)
        mine = [lot for lot in self.lots.values() if lot["user"] == user.pk]
        for lot in mine:  # due lots are expired first
            if lot["status"] == "active" and lot["remaining"] and not self.live(lot):
                lot["remaining"], lot["status"] = 0, "expired"
        need = count
        taken = {}
        for lot in sorted(
            (lot for lot in mine if self.live(lot) and lot["remaining"]), key=burn_key
        ):
            take = min(need, lot["remaining"])
            if take:
                lot["remaining"] -= take
                taken[lot["id"]] = take
                need -= take
        assert need == 0
        assert {e.lot_id: -e.amount for e in result.entries} == taken
        assert result.balance == self.balance(user) + sum(
            lot["remaining"] for lot in mine if lot["status"] == "active" and not self.live(lot)
        )
        if key:
            self.keys[(user.pk, key)] = (count, result.balance)

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), full=st.booleans())
    def refund(self, data, full):
        pk = data.draw(st.sampled_from(sorted(self.orders)))
        order = self.orders[pk]
        left = order["total"] - order["refunded"]
        amount = None if full else (order["total"] / 2).quantize(Decimal("0.01"))
        if left == 0:
            with pytest.raises(InvalidTransition):
                services.refund(pk, amount=amount)
            return
        if amount is not None and amount > left:
            with pytest.raises(PaymentMismatch):
                services.refund(pk, amount=amount)
            return
        result = services.refund(pk, amount=amount)
        order["refunded"] += left if amount is None else amount
        is_full = order["refunded"] == order["total"]
        for lot in self.lots.values():
            if lot["order"] != pk or lot["status"] != "active":
                continue
            if is_full:
                take = lot["remaining"]
                lot["status"] = "revoked"
            else:
                share = int(lot["granted"] * order["refunded"] // order["total"])
                take = min(max(share - lot["revoked"], 0), lot["remaining"])
            lot["remaining"] -= take
            lot["revoked"] += take
        assert result.status == (OrderStatus.REFUNDED if is_full else result.status)

    @rule()
    def expire(self):
        report = services.expire_credits()
        due = [
            lot
            for lot in self.lots.values()
            if lot["status"] == "active" and lot["remaining"] and not self.live(lot)
        ]
        assert report.expired_lots == len(due)
        assert report.expired_tokens == sum(lot["remaining"] for lot in due)
        for lot in due:
            lot["remaining"], lot["status"] = 0, "expired"

    @rule(days=st.sampled_from([0, 1, 3, 10, 31]), hours=st.integers(0, 23))
    def travel(self, days, hours):
        self.now += timedelta(days=days, hours=hours)

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def balances_match_the_model(self):
        if not hasattr(self, "now"):
            return
        for user in self.users:
            assert services.get_balance(user, self.group) == self.balance(user)
        assert_ledger_consistent()
        for lot in models.CreditLot.objects.all():
            assert lot.remaining == self.lots[lot.pk]["remaining"], lot
            assert (
                lot.status
                == {
                    "active": LotStatus.ACTIVE,
                    "expired": LotStatus.EXPIRED,
                    "revoked": LotStatus.REVOKED,
                }[self.lots[lot.pk]["status"]]
            )


@pytest.mark.django_db
def test_services_follow_the_model():
    group = make_group("g")
    CreditsMachine.users = [make_user(), make_user()]
    CreditsMachine.group = group
    CreditsMachine.offers = {
        "monthly": make_offer(
            group=group, price=Decimal("10"), token_count=10, cycle=Cycle.MONTHLY, append_date=True
        ),
        "once": make_offer(group=group, price=Decimal("3"), token_count=5, cycle=Cycle.ONCE),
    }
    machine_settings = settings(
        max_examples=300 if LONG else 60,
        stateful_step_count=60 if LONG else 25,
        derandomize=not LONG,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(CreditsMachine, settings=machine_settings)
