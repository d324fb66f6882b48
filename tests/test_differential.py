"""The PostgreSQL fast path and the portable path are one behaviour.

The same random sequences of operations (grant, buy, consume with keys, overdraft, hold,
capture, release, refund, expire, time travel; members spending for holders, some under
spending limits) run once through the PL/pgSQL functions and once
with ``POSTGRES_FAST_PATH`` off, from the same starting rows. Every result, and every row the
runs leave (accounts, lots, ledger entries, idempotency records, holds, hold lines, orders), must
be the same, with ids replaced by their rank so that two runs can be compared.
"""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.test import override_settings

from user_credits import models, services
from user_credits.exceptions import (
    IdempotencyConflict,
    InsufficientCredits,
    SpendingLimitExceeded,
    UserCreditsError,
)
from user_credits.models import Cycle, LotCategory

from .factories import assert_ledger_consistent, make_group, make_holder, make_offer, make_user

pytestmark = pytest.mark.postgres

START = datetime(2026, 1, 30, 9, 0, tzinfo=UTC)
SEEDS = range(16)
STEPS = 60

#: Rows compared after a run, by model: the fields that must agree. Foreign keys to rows
#: written by the run are compared by rank (``_id`` fields below).
COMPARED = {
    models.CreditAccount: ["holder_id", "offer_group_id", "balance", "overdraft", "last_seq"],
    models.Order: [
        "holder_id",
        "offer_id",
        "parent_id",
        "status",
        "starts",
        "expires",
        "amount_refunded",
    ],
    models.CreditLot: [
        "account_id",
        "order_id",
        "granted",
        "remaining",
        "held",
        "status",
        "starts",
        "expires",
        "category",
        "priority",
    ],
    models.LedgerEntry: [
        "account_id",
        "lot_id",
        "kind",
        "amount",
        "balance_after",
        "idempotency_key",
        "metadata",
        "created_at",
        "seq",
        "member_id",
    ],
    models.ConsumptionRecord: [
        "holder_id",
        "account_id",
        "idempotency_key",
        "count",
        "balance_after",
    ],
    models.Hold: [
        "holder_id",
        "member_id",
        "account_id",
        "count",
        "status",
        "captured",
        "available_after",
    ],
    models.HoldLine: ["hold_id", "lot_id", "count"],
}
RANKED = {
    "account_id": models.CreditAccount,
    "order_id": models.Order,
    "parent_id": models.Order,
    "lot_id": models.CreditLot,
    "hold_id": models.Hold,
}


def _clear():
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


def _ranks():
    return {
        model: {
            pk: rank
            for rank, pk in enumerate(model.objects.order_by("pk").values_list("pk", flat=True))
        }
        for model in set(RANKED.values())
    }


def _snapshot():
    ranks = _ranks()

    def ranked(field, value):
        if field in RANKED and value is not None:
            return ranks[RANKED[field]][value]
        return value

    def rows(model, fields):
        # ``order_id`` of an entry's metadata names an order: rank it too.
        result = []
        for row in model.objects.order_by("pk").values(*fields):
            row = {f: ranked(f, v) for f, v in row.items()}
            key = row.get("idempotency_key") or ""
            if key.startswith("hold:"):  # a capture's key names its hold
                row["idempotency_key"] = f"hold:{ranks[models.Hold][int(key[5:])]}"
            metadata = row.get("metadata")
            if metadata and "order" in metadata:
                row["metadata"] = {**metadata, "order": ranks[models.Order][metadata["order"]]}
            result.append(row)
        return result

    return {model.__name__: rows(model, fields) for model, fields in COMPARED.items()}


class Run:
    """One sequence of operations, drawn from a seed; results normalised for comparison."""

    def __init__(self, seed, fixture, one_by_one=False):
        self.rng = random.Random(seed)
        self.f = fixture
        self.one_by_one = one_by_one  # batches through consume, an item at a time
        self.now = START
        self.orders = []
        self.holds = []
        self.results = []

    def __call__(self):
        with mock.patch("django.utils.timezone.now", side_effect=lambda: self.now):
            for _ in range(STEPS):
                op = self.rng.choice(self.OPERATIONS)
                try:
                    outcome = op(self)
                except UserCreditsError as exc:
                    # Messages name row ids, which differ between runs.
                    outcome = (
                        type(exc).__name__,
                        exc.field,
                        getattr(exc, "requested", None),
                        getattr(exc, "available", None),
                        getattr(exc, "limit", None),
                        getattr(exc, "spent", None),
                    )
                self.results.append((op.__name__, outcome))
            services.expire_credits()
        return self.results

    def _user(self):
        return self.rng.choice(self.f["users"])

    def _group(self):
        return self.rng.choice(self.f["groups"])

    def _member(self):
        return self.rng.choice([None, *self.f["members"]])

    def grant(self):
        lot = services.grant(
            self._user(),
            self._group(),
            self.rng.randint(1, 30),
            expires=self.rng.choice([None, self.now + timedelta(hours=self.rng.randint(1, 72))]),
            category=self.rng.choice(LotCategory.values),
            priority=self.rng.choice([10, 50, 50, 50]),
        )
        return lot.granted

    def buy(self):
        order = services.create_order(self._user(), self.rng.choice(self.f["offers"]))
        order = services.mark_paid(order)
        self.orders.append(order.pk)
        return order.status

    def consume(self):
        key = self.rng.choice([None, None, *(f"k{i}" for i in range(6))])
        result = services.consume(
            self._user(),
            self._group(),
            self.rng.randint(1, 25),
            idempotency_key=key,
            metadata={"step": len(self.results)} if self.rng.random() < 0.3 else None,
            member=self._member(),
        )
        return (result.balance, result.replayed, [(e.kind, e.amount) for e in result.entries])

    def consume_batch(self):
        items = [
            services.ConsumeItem(
                self._user(),
                self._group().key,
                self.rng.randint(1, 12),
                idempotency_key=self.rng.choice([None, *(f"k{i}" for i in range(6))]),
                metadata={"step": len(self.results)} if self.rng.random() < 0.3 else None,
                member=self._member(),
            )
            for _ in range(self.rng.randint(1, 8))
        ]
        if self.one_by_one:
            return [_consume_one(item) for item in items]
        return [
            (r.status, r.balance, [(e.kind, e.amount) for e in r.entries])
            for r in services.consume_many(items)
        ]

    def hold(self):
        hold = services.hold(
            self._user(),
            self._group(),
            self.rng.randint(1, 15),
            ttl=self.rng.choice([600, 3600 * 30]),
            idempotency_key=self.rng.choice([None, "h1", "h2"]),
            member=self._member(),
        )
        self.holds.append(hold.pk)
        return (hold.count, hold.replayed)

    def capture(self):
        if not self.holds:
            return None
        result = services.capture(self.rng.choice(self.holds), self.rng.choice([None, 1, 5, 20]))
        return (result.balance, result.replayed, [(e.kind, e.amount) for e in result.entries])

    def release(self):
        if not self.holds:
            return None
        return services.release(self.rng.choice(self.holds)).status

    def refund(self):
        if not self.orders:
            return None
        order = models.Order.objects.get(pk=self.rng.choice(self.orders))
        amount = self.rng.choice([None, Decimal("1"), Decimal("2.50")])
        return services.refund(order, amount=amount).status

    def expire(self):
        report = services.expire_credits(warn_before=timedelta(hours=12), low={"g1": 5})
        return (report.expired_lots, report.expired_tokens, report.released_holds)

    def travel(self):
        self.now += timedelta(hours=self.rng.choice([1, 5, 13, 30, 24 * 20]))
        return None

    OPERATIONS = [
        grant,
        grant,
        buy,
        consume,
        consume,
        consume,
        consume,
        consume_batch,
        consume_batch,
        hold,
        capture,
        release,
        refund,
        expire,
        travel,
        travel,
    ]


def _consume_one(item):
    """``consume``'s outcome in ``consume_many``'s terms."""
    try:
        done = services.consume(
            item.holder,
            item.offer_group,
            item.count,
            idempotency_key=item.idempotency_key,
            metadata=item.metadata,
            member=item.member,
        )
    except SpendingLimitExceeded:
        return ("limit", None, [])
    except InsufficientCredits as exc:
        return ("insufficient", exc.available, [])
    except IdempotencyConflict:
        return ("conflict", None, [])
    status = "replayed" if done.replayed else "ok"
    return (status, done.balance, [(e.kind, e.amount) for e in done.entries])


def members_may_spend(user, holder):
    """The test's ``CAN_SPEND``: every holder may spend every holder's credits."""
    return True


@pytest.fixture
def fixture():
    groups = [make_group("g1"), make_group("g2"), make_group("debt")]
    users = [make_holder(), make_holder()]
    members = [make_user(), make_user(), make_user()]
    # Limits small enough to be reached: monthly (the run crosses a month end), daily on the
    # overdraft group, weekly on another holder.
    services.set_spending_limit(users[0], members[0], groups[0], 30)
    services.set_spending_limit(users[0], members[1], groups[2], 12, period="daily")
    services.set_spending_limit(users[1], members[0], groups[1], 20, period="weekly")
    return {
        "users": users,
        "members": members,
        "groups": groups,
        "offers": [
            make_offer(group=groups[0], price=Decimal("10"), token_count=20, cycle=Cycle.DAILY),
            make_offer(
                group=groups[1],
                price=Decimal("5"),
                token_count=12,
                cycle=Cycle.MONTHLY,
                append_date=True,
            ),
            make_offer(group=groups[2], price=Decimal("7"), token_count=9, cycle=Cycle.ONCE),
        ],
    }


def _run(seed, fixture, fast_path, one_by_one=False):
    _clear()
    with override_settings(
        USER_CREDITS={
            "POSTGRES_FAST_PATH": fast_path,
            "OVERDRAFT_GROUPS": {"debt": True},
            "CAN_SPEND": "tests.test_differential.members_may_spend",
        }
    ):
        results = Run(seed, fixture, one_by_one)()
    assert_ledger_consistent()
    # Digests name row ids, so they differ between runs: each run's chain must verify.
    assert services.verify_ledger().problems == []
    return results, _snapshot()


@pytest.mark.parametrize("seed", SEEDS)
def test_fast_path_and_portable_path_agree(seed, fixture):
    fast_results, fast_rows = _run(seed, fixture, fast_path=True)
    portable_results, portable_rows = _run(seed, fixture, fast_path=False)
    assert fast_results == portable_results
    for model, rows in portable_rows.items():
        assert fast_rows[model] == rows, model
    # The sequence did something worth comparing.
    assert len(fast_rows["LedgerEntry"]) > 10


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "portable"])
@pytest.mark.parametrize("seed", SEEDS[:8])
def test_consume_many_and_consume_one_by_one_agree(seed, fixture, fast_path):
    """The same batches through ``consume_many`` and through ``consume`` an item at a time
    leave the same rows and give the same outcomes, on either path."""
    one_results, one_rows = _run(seed, fixture, fast_path, one_by_one=True)
    many_results, many_rows = _run(seed, fixture, fast_path)
    assert many_results == one_results
    for model, rows in one_rows.items():
        assert many_rows[model] == rows, model
    statuses = {
        item[0]
        for op, outcome in many_results
        if op == "consume_batch" and isinstance(outcome, list)
        for item in outcome
    }
    assert {"ok", "insufficient"} <= statuses


def test_limits_were_reached_and_kept(fixture):
    """Across the seeds, members spend and limits refuse, and batches meet every status: the
    comparisons above cover them."""
    refused = spent = 0
    statuses = set()
    for seed in SEEDS:
        results, rows = _run(seed, fixture, fast_path=True)
        refused += sum(
            1
            for _, outcome in results
            if isinstance(outcome, tuple) and outcome and outcome[0] == "SpendingLimitExceeded"
        )
        spent += sum(1 for row in rows["LedgerEntry"] if row["member_id"] is not None)
        statuses.update(
            item[0]
            for op, outcome in results
            if op == "consume_batch" and isinstance(outcome, list)
            for item in outcome
        )
    assert refused > 0 and spent > 0
    # Batches met every status, so the comparisons above cover each of them.
    assert statuses == set(services.ConsumeStatus.ALL)
