"""consume_many: many consumptions in one transaction, each all-or-nothing, results in order.

The service tests run on the default database through whichever path it takes, and, where it
matters, once more with ``POSTGRES_FAST_PATH`` off (the portable path on PostgreSQL too).
"""

import json
import pickle
import random
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from user_credits import exceptions as domain
from user_credits import services, signals
from user_credits.holders import holder_is_user
from user_credits.models import ConsumptionRecord, CreditAccount, EntryKind, LedgerEntry
from user_credits.services import ConsumeItem, ConsumeStatus

from .factories import (
    assert_ledger_consistent,
    make_group,
    make_holder,
    make_user,
    person,
    table_snapshot,
)
from .faults import failing_ledger_insert
from .test_concurrency import in_threads
from .test_differential import _clear

pytestmark = pytest.mark.django_db

OK, REPLAYED, INSUFFICIENT, CONFLICT, LIMIT = (
    ConsumeStatus.OK,
    ConsumeStatus.REPLAYED,
    ConsumeStatus.INSUFFICIENT,
    ConsumeStatus.CONFLICT,
    ConsumeStatus.LIMIT,
)


@pytest.fixture(params=[True, False], ids=["fast", "portable"])
def fast_path(request):
    """Both paths (on SQLite both are the portable one)."""
    with override_settings(USER_CREDITS={"POSTGRES_FAST_PATH": request.param}):
        yield request.param


def summary(results):
    return [(r.status, r.balance) for r in results]


def test_each_status_in_input_order(fast_path, holder, other_holder):
    group = make_group("api")
    services.grant(holder, group, 10)
    services.grant(other_holder, group, 5)
    results = services.consume_many(
        [
            ConsumeItem(holder, "api", 3, idempotency_key="a"),
            ConsumeItem(other_holder, "api", 6),  # short: the others go on
            ConsumeItem(holder, group, 3, idempotency_key="a"),  # the same request again
            ConsumeItem(holder, "api", 4, idempotency_key="a"),  # the key, another count
            ConsumeItem(other_holder.pk, "api", 5, metadata={"job": 7}),
            ConsumeItem(holder, "api", 2),
        ]
    )
    assert summary(results) == [
        (OK, 7),
        (INSUFFICIENT, 5),
        (REPLAYED, 7),
        (CONFLICT, None),
        (OK, 0),
        (OK, 5),
    ]
    u, o = holder.pk, other_holder.pk
    assert [r.holder for r in results] == [u, o, u, u, o, u]
    assert {r.offer_group for r in results} == {"api"}
    assert [r.count for r in results] == [3, 6, 3, 4, 5, 2]
    # The accounts, for what runs after commit (e.g. a recharge below a threshold).
    accounts = dict(CreditAccount.objects.values_list("holder_id", "pk"))
    assert [r.account for r in results] == [
        accounts[holder.pk],
        None,
        accounts[holder.pk],
        None,
        accounts[other_holder.pk],
        accounts[holder.pk],
    ]
    assert [[(e.kind, e.amount) for e in r.entries] for r in results] == [
        [(EntryKind.CONSUME, -3)],
        [],
        [(EntryKind.CONSUME, -3)],
        [],
        [(EntryKind.CONSUME, -5)],
        [(EntryKind.CONSUME, -2)],
    ]
    assert results[2].entries[0].pk == results[0].entries[0].pk
    assert results[4].entries[0].metadata == {"job": 7}
    assert [r.consumed for r in results] == [True, False, True, False, True, True]
    # Only the ok items wrote: three consume entries, one idempotency record.
    assert LedgerEntry.objects.filter(kind=EntryKind.CONSUME).count() == 3
    assert ConsumptionRecord.objects.count() == 1
    assert services.get_balance(holder, group) == 5
    assert services.get_balance(other_holder, group) == 0
    assert services.verify_ledger().problems == []
    assert_ledger_consistent()


def test_burn_order_and_due_lots_as_consume(fast_path, holder, travel):
    group = make_group("api")
    now = timezone.now()
    with travel(now):
        services.grant(holder, group, 5, expires=now + timedelta(hours=1))
        services.grant(holder, group, 5, expires=now + timedelta(days=3))
        services.grant(holder, group, 5)
    with travel(now + timedelta(hours=2)):  # the first lot is due
        results = services.consume_many(
            [ConsumeItem(holder, group, 7), ConsumeItem(holder, group, 1)]
        )
    assert summary(results) == [(OK, 3), (OK, 2)]
    # The due lot expires first (written, not returned), then the soonest expiry burns first.
    kinds = list(LedgerEntry.objects.order_by("seq").values_list("kind", "amount"))
    assert kinds[3:] == [
        (EntryKind.EXPIRE, -5),
        (EntryKind.CONSUME, -5),
        (EntryKind.CONSUME, -2),
        (EntryKind.CONSUME, -1),
    ]
    assert [[e.amount for e in r.entries] for r in results] == [[-5, -2], [-1]]
    assert services.verify_ledger().problems == []


def test_returned_entries_are_the_stored_rows(fast_path, holder):
    """Every field of the entries a batch returns (the fast path rebuilds them from compact
    rows and the item) is what the database holds, replays within the batch included."""
    member = make_user()
    group = make_group("api")
    services.grant(holder, group, 4)
    services.grant(holder, group, 10, expires=timezone.now() + timedelta(days=2))
    with override_settings(
        USER_CREDITS={
            "POSTGRES_FAST_PATH": fast_path,
            "CAN_SPEND": "tests.test_differential.members_may_spend",
        }
    ):
        results = services.consume_many(
            [
                ConsumeItem(holder, group, 12, idempotency_key="k", metadata={"job": 1}),
                ConsumeItem(holder, group, 12, idempotency_key="k", metadata={"job": 2}),
                ConsumeItem(holder, group, 1, member=member),
            ]
        )
    assert [r.status for r in results] == [OK, REPLAYED, OK]
    fields = [f.attname for f in LedgerEntry._meta.concrete_fields]
    returned = [[{f: getattr(e, f) for f in fields} for e in r.entries] for r in results]
    stored = [
        [LedgerEntry.objects.filter(pk=e.pk).values(*fields).get() for e in r.entries]
        for r in results
    ]
    assert returned == stored
    assert [len(r.entries) for r in results] == [2, 2, 1]
    assert returned[0][0]["metadata"] == {"job": 1} and returned[2][0]["member_id"] == member.pk


def test_results_read_their_entries_without_queries_and_pickle(fast_path, holder):
    """Entries are built when first read, from what the call returned: no query then, the
    item's metadata as it was at the call, and a pickled result carries them."""
    group = make_group("api")
    services.grant(holder, group, 10)
    metadata = {"job": 1}
    with override_settings(USER_CREDITS={"POSTGRES_FAST_PATH": fast_path}):
        results = services.consume_many(
            [
                ConsumeItem(holder, group, 2, idempotency_key="a", metadata=metadata),
                ConsumeItem(holder, group, 2, idempotency_key="a", metadata=metadata),
            ]
        )
    metadata["job"] = 2  # the caller's dict changes after the call
    with CaptureQueriesContext(connection) as captured:
        entries = [r.entries for r in results]
    assert len(captured) == 0
    assert [[(e.amount, e.metadata) for e in es] for es in entries] == [[(-2, {"job": 1})]] * 2
    again = pickle.loads(pickle.dumps(results))
    assert [[e.pk for e in r.entries] for r in again] == [[e.pk for e in es] for es in entries]
    assert [r.status for r in again] == [OK, REPLAYED]
    assert "entries" not in repr(results[0]) and "status='ok'" in repr(results[0])


def test_a_whole_batch_replays(fast_path, holder, other_holder):
    group = make_group("api")
    services.grant(holder, group, 10)
    services.grant(other_holder, group, 10)
    batch = [
        ConsumeItem(holder, group, 2, idempotency_key="e1"),
        ConsumeItem(other_holder, group, 4, idempotency_key="e1"),  # keys are per holder
        ConsumeItem(holder, group, 3, idempotency_key="e2"),
        ConsumeItem(holder, group, 50, idempotency_key="e3"),  # short: the key stays free
    ]
    first = services.consume_many(batch)
    assert summary(first) == [(OK, 8), (OK, 6), (OK, 5), (INSUFFICIENT, 5)]
    before = table_snapshot()
    again = services.consume_many(batch)
    assert summary(again) == [(REPLAYED, 8), (REPLAYED, 6), (REPLAYED, 5), (INSUFFICIENT, 5)]
    assert [[e.pk for e in r.entries] for r in again] == [[e.pk for e in r.entries] for r in first]
    assert table_snapshot() == before


def test_spending_limit_and_member(fast_path, holder):
    member = make_user("member")
    group = make_group("api")
    services.grant(holder, group, 100)
    with override_settings(
        USER_CREDITS={
            "POSTGRES_FAST_PATH": fast_path,
            "CAN_SPEND": "tests.test_differential.members_may_spend",
        }
    ):
        services.set_spending_limit(holder, member, group, 5)
        results = services.consume_many(
            [
                ConsumeItem(holder, group, 3, member=member),
                ConsumeItem(holder, group, 3, member=member.pk),  # 6 > 5
                ConsumeItem(holder, group, 2, member=member),
                ConsumeItem(holder, group, 3),  # the holder's own spend has no limit
            ]
        )
    assert summary(results) == [(OK, 97), (LIMIT, None), (OK, 95), (OK, 92)]
    assert [e.member_id for r in results for e in r.entries] == [member.pk, member.pk, None]


def test_a_member_who_may_not_spend_is_refused_before_anything(fast_path, holder):
    stranger = make_user("stranger")
    services.grant(holder, make_group("api"), 10)
    before = table_snapshot()
    with pytest.raises(domain.SpendingNotAllowed) as caught:
        services.consume_many(
            [ConsumeItem(holder, "api", 1), ConsumeItem(holder, "api", 1, member=stranger)]
        )
    assert caught.value.field == "items[1].member"
    assert table_snapshot() == before


@pytest.mark.parametrize(
    ("bad", "error", "field"),
    [
        ({"offer_group": "nope"}, domain.UnknownOfferGroup, "items[2].offer_group"),
        ({"offer_group": 5}, domain.UnknownOfferGroup, "items[2].offer_group"),
        ({"holder": 10**9}, domain.InvalidArgument, "items[2].holder"),
        ({"holder": "x"}, domain.InvalidArgument, "items[2].holder"),
        ({"holder": None}, domain.InvalidArgument, "items[2].holder"),
        ({"count": 0}, domain.InvalidCount, "items[2].count"),
        ({"count": 2.5}, domain.InvalidCount, "items[2].count"),
        ({"count": True}, domain.InvalidCount, "items[2].count"),
        ({"idempotency_key": ""}, domain.InvalidArgument, "items[2].idempotency_key"),
        ({"idempotency_key": "k" * 256}, domain.InvalidArgument, "items[2].idempotency_key"),
        ({"metadata": ["a"]}, domain.InvalidArgument, "items[2].metadata"),
    ],
)
def test_bad_items_name_their_index_and_field(fast_path, holder, bad, error, field):
    services.grant(holder, make_group("api"), 10)
    good = {"holder": holder, "offer_group": "api", "count": 1}
    items = [ConsumeItem(**good), ConsumeItem(**good), ConsumeItem(**{**good, **bad})]
    before = table_snapshot()
    with pytest.raises(error) as caught:
        services.consume_many(items)
    assert caught.value.field == field
    assert "2" in str(caught.value)
    assert table_snapshot() == before


def test_not_a_list_of_items(holder):
    make_group("api")
    with pytest.raises(domain.InvalidArgument) as caught:
        services.consume_many([ConsumeItem(holder, "api", 1), ("alice", "api", 1)])
    assert caught.value.field == "items[1]"
    with pytest.raises(domain.InvalidArgument) as caught:
        services.consume_many(ConsumeItem(holder, "api", 1))
    assert caught.value.field == "items"
    assert services.consume_many([]) == []


def test_batch_max(holder):
    group = make_group("api")
    services.grant(holder, group, 10)
    with override_settings(USER_CREDITS={"BATCH_MAX": 3}):
        assert len(services.consume_many([ConsumeItem(holder, group, 1)] * 3)) == 3
        before = table_snapshot()
        with pytest.raises(domain.InvalidArgument) as caught:
            services.consume_many([ConsumeItem(holder, group, 1)] * 4)
    assert caught.value.field == "items"
    assert "3" in str(caught.value)
    assert table_snapshot() == before


def test_holds_and_new_overdraft_accounts_keep_their_turn(fast_path, holder, other_holder):
    """Items the fast path leaves to the portable one (an account with holds, a first
    overdraft) are applied in their place in the batch."""
    group, debt = make_group("api"), make_group("debt")
    services.grant(holder, group, 10)
    services.grant(other_holder, group, 10)
    services.hold(holder, group, 4)
    with override_settings(
        USER_CREDITS={"POSTGRES_FAST_PATH": fast_path, "OVERDRAFT_GROUPS": {"debt": True}}
    ):
        results = services.consume_many(
            [
                ConsumeItem(other_holder, group, 1, idempotency_key="k"),
                ConsumeItem(holder, group, 5, idempotency_key="k"),  # 6 available, 4 held
                ConsumeItem(other_holder, group, 2),
                ConsumeItem(holder, debt, 3),  # no account yet: an overdraft
                ConsumeItem(holder, group, 2),
                ConsumeItem(other_holder, debt, 1, idempotency_key="k"),  # k was for 1 in api
            ]
        )
    assert summary(results) == [
        (OK, 9),
        (OK, 1),
        (OK, 7),
        (OK, -3),
        (INSUFFICIENT, 1),
        (CONFLICT, None),
    ]
    assert services.verify_ledger().problems == []
    assert_ledger_consistent()


def test_a_fault_mid_batch_leaves_the_database_as_it_was(
    fast_path, holder, other_holder, on_commit
):
    """An unexpected error (not a status) after some items were written rolls the whole batch
    back, and sends no signal."""
    group = make_group("api")
    services.grant(holder, group, 10)
    services.grant(other_holder, group, 10)
    second = CreditAccount.objects.get(holder=other_holder).pk
    items = [
        ConsumeItem(holder, group, 2, idempotency_key="k"),
        ConsumeItem(other_holder, group, 3, idempotency_key="k"),
    ]
    seen = []
    signals.credits_consumed.connect(receiver := lambda sender, **kw: seen.append(kw))
    try:
        before = table_snapshot()
        with on_commit(), failing_ledger_insert("consume", from_account=second) as error:
            with pytest.raises(error):
                services.consume_many(items)
        assert table_snapshot() == before
        assert seen == []
        assert summary(services.consume_many(items)) == [(OK, 8), (OK, 7)]
    finally:
        signals.credits_consumed.disconnect(receiver)
    assert_ledger_consistent()


def test_signals_after_commit_for_each_consumed_item(fast_path, holder, on_commit):
    group = make_group("api")
    services.grant(holder, group, 10)
    seen = []

    def receiver(sender, **kwargs):
        seen.append((kwargs["count"], kwargs["balance"]))

    signals.credits_consumed.connect(receiver)
    try:
        with on_commit():
            services.consume_many(
                [
                    ConsumeItem(holder, group, 4),
                    ConsumeItem(holder, group, 9),
                    ConsumeItem(holder, group, 1),
                ]
            )
    finally:
        signals.credits_consumed.disconnect(receiver)
    assert seen == [(4, 6), (1, 5)]


def test_the_same_as_one_consume_at_a_time(fast_path):
    """A random batch gives the results and rows that ``consume`` one by one gives."""
    rng = random.Random(7)
    holders = [make_holder() for _ in range(3)]
    groups = [make_group("a"), make_group("b")]

    def outcomes(run):
        for holder in holders:
            for group in groups:
                services.grant(holder, group, 30)
        items = [
            ConsumeItem(
                rng.choice(holders),
                rng.choice(groups).key,
                rng.randint(1, 12),
                idempotency_key=rng.choice([None, "x", "y"]),
            )
            for _ in range(40)
        ]
        return run(items), items

    def one_by_one(items):
        results = []
        for item in items:
            try:
                done = services.consume(
                    item.holder,
                    item.offer_group,
                    item.count,
                    idempotency_key=item.idempotency_key,
                )
            except domain.IdempotencyConflict:
                results.append((CONFLICT, None))
            except domain.InsufficientCredits as exc:
                results.append((INSUFFICIENT, exc.available))
            else:
                results.append((REPLAYED if done.replayed else OK, done.balance))
        return results

    state = rng.getstate()
    expected, _ = outcomes(one_by_one)
    rows = list(LedgerEntry.objects.order_by("pk").values_list("kind", "amount", "balance_after"))
    _clear()
    rng.setstate(state)
    got, _ = outcomes(lambda items: summary(services.consume_many(items)))
    assert got == expected
    assert {status for status, _ in got} == {OK, REPLAYED, INSUFFICIENT, CONFLICT}
    again = list(LedgerEntry.objects.order_by("pk").values_list("kind", "amount", "balance_after"))
    assert again == rows


# --- PostgreSQL -------------------------------------------------------------------------------


QUERIES = []


@pytest.mark.postgres
def test_one_batch_is_a_constant_number_of_queries():
    holders = [make_holder() for _ in range(20)]
    group = make_group("api")
    for holder in holders:
        services.grant(holder, group, 1000)
    services.consume(holders[0], "api", 1)  # the group key is now known (cached)

    def queries(n):
        items = [
            ConsumeItem(holders[i % 20].pk, "api", 1, idempotency_key=f"{n}-{i}") for i in range(n)
        ]
        with CaptureQueriesContext(connection) as captured:
            results = services.consume_many(items)
        assert {r.status for r in results} == {OK}
        QUERIES[:] = [q["sql"][:120] for q in captured]
        return len(captured)

    small, large = queries(5), queries(500)
    # The function call, between BEGIN and COMMIT.
    assert small == large <= 3, (small, large, QUERIES)


@pytest.mark.postgres
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "portable"])
def test_four_batch_writers_on_overlapping_accounts(fast):
    """Four writers, each batch over the same accounts in its own shuffled order: no deadlock,
    every token accounted for, every chain verifies."""
    holders = [make_holder() for _ in range(8)]
    groups = [make_group("a"), make_group("b")]
    for holder in holders:
        for group in groups:
            services.grant(holder, group, 300)
    pairs = [(u.pk, g.key) for u in holders for g in groups]

    def work(worker):
        rng = random.Random(worker)
        done = 0
        for batch in range(10):
            items = [
                ConsumeItem(holder, key, 1, idempotency_key=f"w{worker}-{batch}-{i}")
                for i, (holder, key) in enumerate(rng.sample(pairs, len(pairs)) * 2)
            ]
            results = services.consume_many(items)
            assert {r.status for r in results} == {OK}
            done += len(results)
        return done

    with override_settings(USER_CREDITS={"POSTGRES_FAST_PATH": fast}):
        results = in_threads(4, work)
    assert results == [10 * 2 * len(pairs)] * 4, results
    for holder in holders:
        for group in groups:
            assert services.get_balance(holder, group) == 300 - 4 * 10 * 2
    assert LedgerEntry.objects.filter(kind=EntryKind.CONSUME).count() == 4 * 10 * 2 * len(pairs)
    assert services.verify_ledger().problems == []
    assert_ledger_consistent()


@pytest.mark.postgres
def test_racing_batches_on_one_key_consume_it_once():
    """Two batches use the same holder's key on two accounts at once: one consumes, the other
    conflicts (it retries after the unique index refused its record)."""
    holder = make_holder()
    for key in ("a", "b"):
        services.grant(holder, make_group(key), 10)

    def work(i):
        return services.consume_many([ConsumeItem(holder, "ab"[i], 2, idempotency_key="same")])[0]

    results = in_threads(2, work)
    assert sorted(r.status for r in results) == [CONFLICT, OK], results
    assert ConsumptionRecord.objects.count() == 1
    assert services.verify_ledger().problems == []


# --- API: POST consume/batch/ -----------------------------------------------------------------

API = "/api/credits/"
ITEM = {"holder": "HOLDER", "offer_group": "api", "count": 1}


@pytest.fixture
def consumer():
    """A server-to-server client holding only the consume permission."""
    robot = make_user("robot")
    robot.user_permissions.add(Permission.objects.get(codename="consume_credits"))
    client = APIClient()
    client.force_authenticate(robot)
    return client


def test_api_batch_answers_each_item_in_order(consumer, holder, other_holder):
    services.grant(holder, make_group("api"), 10)
    services.grant(other_holder, make_group("ai"), 3)
    alias = "user" if holder_is_user() else "holder"  # ``user`` names a holder that is a user
    items = [
        {"holder": holder.pk, "offer_group": "api", "count": 4, "idempotency_key": "e1"},
        {alias: other_holder.pk, "offer_group": "ai", "count": 5},
        {"holder": holder.pk, "offer_group": "api", "count": 4, "idempotency_key": "e1"},
        {"holder": holder.pk, "offer_group": "api", "count": 1, "idempotency_key": "e1"},
        {"holder": other_holder.pk, "offer_group": "ai", "count": 3, "metadata": {"job": 2}},
    ]
    response = consumer.post(API + "consume/batch/", {"items": items}, format="json")
    assert response.status_code == 200, response.json()
    results = response.json()["results"]
    assert [(r["status"], r["balance"]) for r in results] == [
        (OK, 6),
        (INSUFFICIENT, 3),
        (REPLAYED, 6),
        (CONFLICT, None),
        (OK, 0),
    ]
    assert results[0]["entries"] == results[2]["entries"]
    assert [e["amount"] for e in results[0]["entries"]] == [-4]
    assert results[1]["entries"] == [] and results[1]["account"] is None
    assert results[4]["account"] == CreditAccount.objects.get(holder=other_holder).pk
    assert services.get_balance(holder, "api") == 6
    assert services.get_balance(other_holder, "ai") == 0
    # Sent again, the batch replays what it consumed (the last item has no key: it is a new
    # consumption, now short) and writes nothing.
    before = table_snapshot()
    again = consumer.post(API + "consume/batch/", {"items": items}, format="json").json()
    assert [(r["status"], r["balance"]) for r in again["results"]] == [
        (REPLAYED, 6),
        (INSUFFICIENT, 0),
        (REPLAYED, 6),
        (CONFLICT, None),
        (INSUFFICIENT, 0),
    ]
    assert table_snapshot() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "items"),
        ({"items": []}, "items"),
        ({"items": {"holder": 1}}, "items"),
        ({"items": [ITEM, ITEM], "extra": 1}, "extra"),
        ({"items": [ITEM, {**ITEM, "count": 0}]}, "items[1].count"),
        ({"items": [ITEM, {**ITEM, "count": "2"}]}, "items[1].count"),
        ({"items": [ITEM, ITEM, {**ITEM, "colour": 1}]}, "items[2].colour"),
        ({"items": [ITEM, "x"]}, "items[1]"),
        ({"items": [ITEM, None]}, "items[1]"),
        ({"items": [{"offer_group": "api", "count": 1}]}, "items[0].holder"),
        ({"items": [ITEM, {**ITEM, "idempotency_key": ""}]}, "items[1].idempotency_key"),
        ({"items": [ITEM, {**ITEM, "offer_group": "nope"}]}, "items[1].offer_group"),
        ({"items": [ITEM, {**ITEM, "holder": 10**9}]}, "items[1].holder"),
        ({"items": [ITEM] * 4}, "items"),  # over BATCH_MAX
    ],
)
def test_api_batch_bad_input_names_the_item_and_writes_nothing(consumer, holder, body, field):
    services.grant(holder, make_group("api"), 10)
    body = json.loads(json.dumps(body).replace('"HOLDER"', str(holder.pk)))
    before = table_snapshot()
    with override_settings(USER_CREDITS={"BATCH_MAX": 3}):
        response = consumer.post(API + "consume/batch/", body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"], response.json()
    assert table_snapshot() == before


def test_api_batch_needs_the_consume_permission(holder):
    services.grant(holder, make_group("api"), 10)
    body = {"items": [{"holder": holder.pk, "offer_group": "api", "count": 1}]}
    client = APIClient()
    assert client.post(API + "consume/batch/", body, format="json").status_code in (401, 403)
    client.force_authenticate(
        person(holder)
    )  # no consume_credits permission, even on their own credits
    assert client.post(API + "consume/batch/", body, format="json").status_code == 403
    assert services.get_balance(holder, "api") == 10


def test_api_batch_member_who_may_not_spend_is_403(consumer, holder):
    stranger = make_user("stranger")
    services.grant(holder, make_group("api"), 10)
    body = {
        "items": [{"holder": holder.pk, "offer_group": "api", "count": 1, "member": stranger.pk}]
    }
    response = consumer.post(API + "consume/batch/", body, format="json")
    assert response.status_code == 403
    assert "items[0].member" in response.json()["fields"]
    assert services.get_balance(holder, "api") == 10


def test_api_batch_in_the_schema(consumer):
    schema = consumer.get(API + "schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    post = schema["paths"][API + "consume/batch/"]["post"]
    assert {"200", "400", "403"} <= set(post["responses"])
    body = post["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    items = schema["components"]["schemas"][body]["properties"]["items"]
    item = schema["components"]["schemas"][items["items"]["$ref"].split("/")[-1]]
    assert {"holder", "offer_group", "count", "idempotency_key", "metadata"} <= set(
        item["properties"]
    )
    answer = post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    results = schema["components"]["schemas"][answer.split("/")[-1]]["properties"]["results"]
    result = schema["components"]["schemas"][results["items"]["$ref"].split("/")[-1]]
    assert set(result["properties"]) == {"status", "balance", "account", "entries"}
    assert result["properties"]["balance"]["nullable"] is True
