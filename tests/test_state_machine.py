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
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
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

from .factories import assert_ledger_consistent, make_group, make_holder, make_offer

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
            models.HoldLine,
            models.Hold,
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
        self.keys = {}  # (holder id, key) → (count, balance after)
        self.holds = {}  # hold id → {"user", "status", "expires"}
        self.lines = []  # [hold id, lot id, count] in creation order

    def teardown(self):
        if hasattr(self, "clock"):
            self.clock.stop()

    # --- the model ----------------------------------------------------------------------

    def live(self, lot):
        return lot["status"] == "active" and (lot["expires"] is None or lot["expires"] > self.now)

    def held(self, lot_id):
        return sum(
            c for h, lot, c in self.lines if lot == lot_id and self.holds[h]["status"] == "active"
        )

    def balance(self, holder):
        """Available tokens: live lots minus what active holds reserve."""
        return sum(
            lot["remaining"] - self.held(lot["id"])
            for lot in self.lots.values()
            if lot["user"] == holder.pk and self.live(lot)
        )

    def drop_held(self, lot_id, amount):
        """Held tokens of a lot are gone: shrink its active lines, the most recent first."""
        for line in reversed(self.lines):
            if amount and line[1] == lot_id and self.holds[line[0]]["status"] == "active":
                take = min(amount, line[2])
                line[2] -= take
                amount -= take

    def expire_due(self, holder):
        for lot in self.lots.values():
            if (
                lot["user"] == holder.pk
                and lot["status"] == "active"
                and lot["remaining"]
                and not self.live(lot)
            ):
                self.drop_held(lot["id"], self.held(lot["id"]))
                lot["remaining"], lot["status"] = 0, "expired"

    def release_expired_holds(self, holder):
        for hold in self.holds.values():
            if (
                hold["user"] == holder.pk
                and hold["status"] == "active"
                and hold["expires"] <= self.now
            ):
                hold["status"] = "expired"

    def burnable(self, holder):
        mine = [lot for lot in self.lots.values() if lot["user"] == holder.pk]
        return sorted((lot for lot in mine if self.live(lot) and lot["remaining"]), key=burn_key)

    def add_lot(self, lot, holder, category, order=None):
        self.lots[lot.pk] = {
            "id": lot.pk,
            "user": holder.pk,
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
        holder = self.users[u]
        expires = None if days is None else self.now + timedelta(days=days)
        lot = services.grant(holder, self.group, tokens, expires=expires)
        self.add_lot(lot, holder, "promotional")

    @rule(
        u=st.integers(0, 1), which=st.sampled_from(["monthly", "once"]), quantity=st.integers(1, 3)
    )
    def buy(self, u, which, quantity):
        holder = self.users[u]
        order = services.create_order(holder, self.offers[which], quantity=quantity)
        order = services.mark_paid(order, amount=order.total, currency=order.currency)
        assert order.status == OrderStatus.PAID
        lot = order.lots.get()
        assert lot.granted == self.offers[which].token_count * quantity
        self.add_lot(lot, holder, "paid", order=order.pk)
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
        holder = self.users[u]
        recorded = self.keys.get((holder.pk, key)) if key else None
        if recorded is not None:
            if recorded[0] != count:
                with pytest.raises(IdempotencyConflict):
                    services.consume(holder, self.group, count, idempotency_key=key)
            else:
                result = services.consume(holder, self.group, count, idempotency_key=key)
                assert result.replayed and result.balance == recorded[1]
            return
        mine = [lot for lot in self.lots.values() if lot["user"] == holder.pk]
        statuses = {pk: hold["status"] for pk, hold in self.holds.items()}
        if any(self.held(lot["id"]) for lot in mine):
            self.release_expired_holds(holder)  # the write releases holds past their time
        if count > self.balance(holder):
            with pytest.raises(InsufficientCredits):
                services.consume(holder, self.group, count, idempotency_key=key)
            for pk, status in statuses.items():  # rolled back with the failed call
                self.holds[pk]["status"] = status
            return
        result = services.consume(holder, self.group, count, idempotency_key=key)
        self.expire_due(holder)  # due lots are expired first
        need = count
        taken = {}
        for lot in self.burnable(holder):
            take = min(need, lot["remaining"] - self.held(lot["id"]))
            if take > 0:
                lot["remaining"] -= take
                taken[lot["id"]] = take
                need -= take
        assert need == 0
        assert {e.lot_id: -e.amount for e in result.entries} == taken
        # What is available: the held tokens of active holds are not.
        assert result.balance == self.balance(holder)
        if key:
            self.keys[(holder.pk, key)] = (count, result.balance)

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
            else:
                share = int(lot["granted"] * order["refunded"] // order["total"])
                take = min(max(share - lot["revoked"], 0), lot["remaining"])
            free = lot["remaining"] - self.held(lot["id"])
            if take > free:
                self.drop_held(lot["id"], take - free)
            if is_full:
                lot["status"] = "revoked"
            lot["remaining"] -= take
            lot["revoked"] += take
        assert result.status == (OrderStatus.REFUNDED if is_full else result.status)

    @rule()
    def expire(self):
        report = services.expire_credits()
        for holder in self.users:
            self.release_expired_holds(holder)
        due = [
            lot
            for lot in self.lots.values()
            if lot["status"] == "active" and lot["remaining"] and not self.live(lot)
        ]
        assert report.expired_lots == len(due)
        assert report.expired_tokens == sum(lot["remaining"] for lot in due)
        for lot in due:
            self.drop_held(lot["id"], self.held(lot["id"]))
            lot["remaining"], lot["status"] = 0, "expired"

    @rule(u=st.integers(0, 1), count=st.integers(1, 10), hours=st.sampled_from([1, 48, 5000]))
    def hold(self, u, count, hours):
        holder = self.users[u]
        statuses = {pk: hold["status"] for pk, hold in self.holds.items()}
        self.release_expired_holds(holder)
        if count > self.balance(holder):
            with pytest.raises(InsufficientCredits):
                services.hold(holder, self.group, count, ttl=timedelta(hours=hours))
            for pk, status in statuses.items():  # rolled back with the failed call
                self.holds[pk]["status"] = status
            return
        held = services.hold(holder, self.group, count, ttl=timedelta(hours=hours))
        self.expire_due(holder)
        self.holds[held.pk] = {
            "user": holder.pk,
            "status": "active",
            "expires": self.now + timedelta(hours=hours),
        }
        need = count
        expected = []
        for lot in self.burnable(holder):
            take = min(need, lot["remaining"] - self.held(lot["id"]))
            if take > 0:
                expected.append((lot["id"], take))
                need -= take
        assert [(line.lot_id, line.count) for line in held.lines.order_by("id")] == expected
        self.lines += [[held.pk, lot_id, take] for lot_id, take in expected]

    @precondition(lambda self: any(h["status"] == "active" for h in self.holds.values()))
    @rule(data=st.data(), how=st.sampled_from(["all", "less", "more", "release"]))
    def settle_hold(self, data, how):
        pk = data.draw(
            st.sampled_from(sorted(k for k, h in self.holds.items() if h["status"] == "active"))
        )
        hold = self.holds[pk]
        holder = next(u for u in self.users if u.pk == hold["user"])
        if how == "release":
            services.release(pk)
            if hold["status"] == "active":
                hold["status"] = "released"
            return
        if hold["expires"] <= self.now:
            with pytest.raises(InvalidTransition):
                services.capture(pk)
            self.release_expired_holds(holder)
            return
        lines = [line for line in self.lines if line[0] == pk]
        held_before = sum(line[2] for line in lines)
        # Due lots go first (and take their held tokens); then the lines, then any extra.
        shrink = {
            lot["id"]
            for lot in self.lots.values()
            if lot["user"] == holder.pk
            and lot["status"] == "active"
            and lot["remaining"]
            and not self.live(lot)
        }
        held_now = held_before - sum(line[2] for line in lines if line[1] in shrink)
        wanted = {"all": held_now, "less": max(held_now - 1, 1), "more": held_now + 2}[how]
        asked = None if how == "all" else wanted
        extra = max(wanted - held_now, 0)
        free_after = self.balance(holder) - sum(
            lot["remaining"] - self.held(lot["id"])
            for lot in self.lots.values()
            if lot["id"] in shrink
        )
        if extra > free_after:
            with pytest.raises(InsufficientCredits):
                services.capture(pk, asked)
            return
        result = services.capture(pk, asked)
        self.expire_due(holder)
        left = wanted
        taken = {}
        for line in lines:
            take = min(left, line[2])
            left -= take
            self.lots[line[1]]["remaining"] -= take
            if take:
                taken[line[1]] = taken.get(line[1], 0) + take
            line[2] = 0
        hold["status"] = "captured"
        for lot in self.burnable(holder):
            take = min(left, lot["remaining"] - self.held(lot["id"]))
            if take > 0:
                lot["remaining"] -= take
                taken[lot["id"]] = taken.get(lot["id"], 0) + take
                left -= take
        assert left == 0
        got = {}
        for entry in result.entries:
            got[entry.lot_id] = got.get(entry.lot_id, 0) - entry.amount
        assert got == taken

    @rule(days=st.sampled_from([0, 1, 3, 10, 31]), hours=st.integers(0, 23))
    def travel(self, days, hours):
        self.now += timedelta(days=days, hours=hours)

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def balances_match_the_model(self):
        if not hasattr(self, "now"):
            return
        for holder in self.users:
            assert services.get_balance(holder, self.group) == self.balance(holder)
        assert_ledger_consistent()
        for lot in models.CreditLot.objects.all():
            assert lot.remaining == self.lots[lot.pk]["remaining"], lot
            assert lot.held == self.held(lot.pk), lot
            assert (
                lot.status
                == {
                    "active": LotStatus.ACTIVE,
                    "expired": LotStatus.EXPIRED,
                    "revoked": LotStatus.REVOKED,
                }[self.lots[lot.pk]["status"]]
            )


@pytest.mark.django_db
@pytest.mark.parametrize("fast_path", [True, False], ids=["sql", "portable"])
def test_services_follow_the_model(fast_path, settings):
    from django.db import connection

    if fast_path and connection.vendor != "postgresql":
        pytest.skip("the SQL fast path exists on PostgreSQL only (the portable run covers SQLite)")
    settings.USER_CREDITS = {"POSTGRES_FAST_PATH": fast_path}
    group = make_group("g")
    CreditsMachine.users = [make_holder(), make_holder()]
    CreditsMachine.group = group
    CreditsMachine.offers = {
        "monthly": make_offer(
            group=group, price=Decimal("10"), token_count=10, cycle=Cycle.MONTHLY, append_date=True
        ),
        "once": make_offer(group=group, price=Decimal("3"), token_count=5, cycle=Cycle.ONCE),
    }
    machine_settings = hypothesis_settings(
        max_examples=300 if LONG else 60,
        stateful_step_count=60 if LONG else 25,
        derandomize=not LONG,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(CreditsMachine, settings=machine_settings)
