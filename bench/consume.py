"""consume on PostgreSQL against the one-statement limit and a naive hand-written version.

    DATABASE_URL=postgres://… .venv/bin/python bench/consume.py [CONSUMES] [--profile]

100 accounts, 2,000 consumes of 3 tokens round-robin, each its own transaction with an
idempotency key; a first round with one lot per account, a second with five (burn order).

Two forms of the call are measured: the README's, ``services.consume(request.user,
"api-calls", 3, idempotency_key=...)`` (a group key string, and the user as a request gives
it: a ``SimpleLazyObject`` around a loaded user), and the object form (an ``OfferGroup`` and a
user instance). A last round measures the README's call with auto-recharge off, on with a
healthy balance, and on with the balance under the threshold and a recharge in flight.
``--profile`` runs the README's call under pyinstrument (``pip install pyinstrument``) and
prints where the time goes.
"""

import itertools
import sys
from datetime import timedelta

import common

BURN_ORDER = """l.priority, l.expires ASC NULLS LAST,
         CASE WHEN l.category = 'promotional' THEN 0 ELSE 1 END, l.id"""
NEXT_LOT = f"""
    SELECT l.id FROM user_credits_creditlot l
     WHERE l.account_id = a.id AND l.status = 'active' AND l.remaining >= %(count)s
       AND (l.expires IS NULL OR l.expires > now())
     ORDER BY {BURN_ORDER} LIMIT 1"""

# The same effect as one statement: the balance, the chain end, the lot, the ledger row.
LIMIT_SQL = f"""
WITH account AS (
    UPDATE user_credits_creditaccount a
       SET balance = balance - %(count)s, last_seq = last_seq + 1,
           last_digest = user_credits_link(last_digest, user_credits_entry_content(
               a.id, last_seq + 1, 'consume', -%(count)s, balance - %(count)s, ({NEXT_LOT}),
               %(key)s, now()))
     WHERE holder_id = %(user)s AND offer_group_id = %(group)s AND balance >= %(count)s
 RETURNING id, balance, last_seq, last_digest
), lot AS (
    UPDATE user_credits_creditlot SET remaining = remaining - %(count)s
     WHERE id = (SELECT l.id FROM user_credits_creditlot l JOIN account a ON l.account_id = a.id
                  WHERE l.status = 'active' AND l.remaining >= %(count)s
                    AND (l.expires IS NULL OR l.expires > now())
                  ORDER BY {BURN_ORDER} LIMIT 1 FOR UPDATE)
 RETURNING id
)
INSERT INTO user_credits_ledgerentry
    (account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata, created_at, seq,
     digest)
SELECT account.id, lot.id, 'consume', -%(count)s, account.balance, %(key)s, '{{}}', now(),
       account.last_seq, account.last_digest
  FROM account, lot
"""

COUNT = 3  # tokens per call, as in the README
N_USERS = 100 if not common.smoke() else 5
N_CONSUMES = common.size(2000, 20)


def populate(lots_per_account, key=None):
    from django.utils import timezone
    from django.utils.functional import SimpleLazyObject

    from tests.factories import make_group, make_user
    from user_credits import services

    group = make_group(key or f"bench{lots_per_account}")
    users = [make_user() for _ in range(N_USERS)]
    soon = timezone.now() + timedelta(days=30)
    for user in users:
        for i in range(lots_per_account):
            services.grant(user, group, 100_000, expires=soon + timedelta(days=i))
    # What AuthenticationMiddleware puts on request.user: a lazy object, loaded by then.
    request_users = [SimpleLazyObject(lambda u=u: u) for u in users]
    for lazy in request_users:
        lazy.pk  # noqa: B018  (evaluated, as authentication has done before the view runs)
    return group, users, request_users


def run_readme(group, request_users, tag):
    from user_credits import services

    key = group.key
    for i in range(N_CONSUMES):
        services.consume(request_users[i % N_USERS], key, COUNT, idempotency_key=f"{tag}-{i}")


def run_objects(group, users, tag):
    from user_credits import services

    for i in range(N_CONSUMES):
        services.consume(users[i % N_USERS], group, COUNT, idempotency_key=f"{tag}-{i}")


def run_limit(raw, group, users, tag):
    with raw.cursor() as cursor:
        for i in range(N_CONSUMES):
            params = {
                "user": users[i % N_USERS].pk,
                "group": group.pk,
                "key": f"{tag}-{i}",
                "count": COUNT,
            }
            cursor.execute(LIMIT_SQL, params)
            assert cursor.rowcount == 1


NAIVE_SEQ = itertools.count(10**9)


def run_naive(group, users, tag):
    from django.db import transaction
    from django.db.models import F

    from user_credits.models import CreditAccount, LedgerEntry

    accounts = {a.holder_id: a.pk for a in CreditAccount.objects.filter(offer_group=group)}
    for i in range(N_CONSUMES):
        account_id = accounts[users[i % N_USERS].pk]
        with transaction.atomic():
            CreditAccount.objects.filter(pk=account_id).update(balance=F("balance") - COUNT)
            LedgerEntry.objects.create(
                account_id=account_id,
                kind="consume",
                amount=-COUNT,
                balance_after=0,
                idempotency_key=f"{tag}-{i}",
                seq=next(NAIVE_SEQ),  # a naive version keeps no chain: any unique number
            )


def populate_recharge(tag, threshold):
    """``populate(1)`` in a group of its own; with a ``threshold``, every account has an
    auto-recharge of a 100-token pack (manual payments: an order that waits for an admin)."""
    from decimal import Decimal

    from tests.factories import make_offer
    from user_credits import services

    group, users, request_users = populate(1, key=f"recharge-{tag}")
    if threshold is not None:
        pack = make_offer(group=group, price=Decimal("5"), token_count=100)
        for user in users:
            services.enable_auto_recharge(user, group, pack, threshold=threshold)
    return group, request_users


def recharge_round():
    """consume with auto-recharge: off, on but the balance healthy (the check rides on the
    account row), and on with the balance low and a recharge in flight (each call tries the
    claim after commit and finds it taken)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from user_credits import services
    from user_credits.models import Order

    cases = {
        "off": populate_recharge("off", None),
        "on": populate_recharge("on", 1),
        "in flight": populate_recharge("low", 10**9),
    }
    queries = {}
    for name, (group, request_users) in cases.items():
        run_readme(group, request_users, f"rwarm-{name}")
        with CaptureQueriesContext(connection) as captured:
            services.consume(request_users[0], group.key, COUNT, idempotency_key=f"rq-{name}")
        queries[name] = len(captured)
    in_flight_group = cases["in flight"][0]
    orders = Order.objects.filter(offer_group=in_flight_group).count()
    assert orders == N_USERS, f"{orders} recharge orders for {N_USERS} accounts"
    best = {name: [] for name in cases}
    for rep in range(3):  # interleaved, best of three
        for name, (group, request_users) in cases.items():
            best[name].append(common.timed(run_readme, group, request_users, f"r{name}{rep}")[0])
    assert Order.objects.filter(offer_group=in_flight_group).count() == N_USERS
    us = {k: min(v) / N_CONSUMES * 1e6 for k, v in best.items()}
    common.table(
        f"consume of {COUNT} tokens with auto-recharge, µs per call ({N_CONSUMES} calls, "
        f"{N_USERS} accounts, best of 3; {common.machine()})",
        ("auto-recharge", "µs/call", "queries/call", "recharge/plain"),
        [
            (name, f"{us[name]:.0f}", str(queries[name]), f"{us[name] / us['off']:.2f}")
            for name in cases
        ],
    )


def profile(group, request_users):
    try:
        from pyinstrument import Profiler
    except ImportError:
        sys.exit("--profile needs pyinstrument: .venv/bin/pip install pyinstrument")
    profiler = Profiler(interval=0.0001)
    profiler.start()
    run_readme(group, request_users, "profile")
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False, show_all=False))


def main():
    state = common.setup()
    try:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from user_credits import services

        raw = common.raw_connection()
        rows = []
        queries = {}
        for lots in (1, 5):
            group, users, request_users = populate(lots)
            run_readme(group, request_users, f"warm{lots}")  # the group key is now known
            run_limit(raw, group, users, f"lwarm{lots}")
            with CaptureQueriesContext(connection) as captured:
                services.consume(request_users[0], group.key, COUNT, idempotency_key=f"q{lots}")
            queries[lots] = len(captured)
            best = {"readme": [], "objects": [], "limit": [], "naive": []}
            for rep in range(3):  # interleaved, best of three
                tag = f"{lots}-{rep}"
                best["readme"].append(common.timed(run_readme, group, request_users, f"r{tag}")[0])
                best["objects"].append(common.timed(run_objects, group, users, f"o{tag}")[0])
                best["limit"].append(common.timed(run_limit, raw, group, users, f"l{tag}")[0])
                best["naive"].append(common.timed(run_naive, group, users, f"n{tag}")[0])
            us = {k: min(v) / N_CONSUMES * 1e6 for k, v in best.items()}
            rows.append(
                (
                    f"{lots} lot(s)/account",
                    f"{us['readme']:.0f}",
                    f"{us['objects']:.0f}",
                    f"{us['limit']:.0f}",
                    f"{us['naive']:.0f}",
                    f"{us['readme'] / us['limit']:.2f}",
                    f"{us['objects'] / us['limit']:.2f}",
                    f"{us['readme'] / us['naive']:.2f}",
                    str(queries[lots]),
                )
            )
        common.table(
            f"consume of {COUNT} tokens, µs per call ({N_CONSUMES} calls, {N_USERS} accounts, "
            f"best of 3; {common.machine()})",
            (
                "round",
                "README call",
                "object form",
                "one-statement limit",
                "naive F()",
                "README/limit",
                "objects/limit",
                "README/naive",
                "queries/call",
            ),
            rows,
        )
        recharge_round()
        if "--profile" in sys.argv:
            profile(group, request_users)
        raw.close()
    finally:
        common.teardown(state)


if __name__ == "__main__":
    main()
