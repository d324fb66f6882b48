"""One hot account: clients consuming 1 token at a time; the row lock serialises them.

    DATABASE_URL=postgres://… .venv/bin/python bench/hot_account.py [CONSUMES_PER_CLIENT]
    DATABASE_URL=postgres://… .venv/bin/python bench/hot_account.py --pgbouncer

Consumes per second for ``services.consume(user, "hot", 1, idempotency_key=...)`` (the
README's call) and for the one-statement limit under the same concurrency, and their ratio
(goal ≥ 0.8), best of three runs each. By default 8 processes connect straight to PostgreSQL;
``--pgbouncer`` starts a PgBouncer in transaction pooling mode (Debian's package) and runs
32 client threads through it on 8 server connections, as a site behind PgBouncer would.
Errors other than InsufficientCredits fail the run.
"""

import multiprocessing
import sys
import threading
import time

import common
from consume import LIMIT_SQL

PGBOUNCER = "--pgbouncer" in sys.argv
CLIENTS = (2 if common.smoke() else 32) if PGBOUNCER else (2 if common.smoke() else 8)
PER_CLIENT = common.size(250 if not PGBOUNCER else 60, 5)
ROUNDS = 3


def consume_loop(kind, user_id, group_id, index):
    """One client's consumes; returns (ok, errors)."""
    from user_credits import services
    from user_credits.exceptions import InsufficientCredits

    ok = errors = 0
    raw = common.raw_connection() if kind == "limit" else None
    for i in range(PER_CLIENT):
        key = f"{kind}-{index}-{i}-{time.monotonic_ns()}"
        try:
            if raw is None:
                services.consume(user_id, "hot", 1, idempotency_key=key)
            else:
                with raw.cursor() as cursor:
                    params = {"user": user_id, "group": group_id, "key": key, "count": 1}
                    cursor.execute(LIMIT_SQL, params)
            ok += 1
        except InsufficientCredits:
            pass
        except Exception as exc:  # reported and failing the run
            errors += 1
            print(f"{kind} client {index}: {exc!r}")
    if raw is not None:
        raw.close()
    return ok, errors


def process_worker(kind, user_id, group_id, index, queue):
    from django.db import connections

    connections.close_all()
    queue.put(consume_loop(kind, user_id, group_id, index))


def thread_worker(kind, user_id, group_id, index, results):
    from django.db import connections

    try:
        results[index] = consume_loop(kind, user_id, group_id, index)
    finally:
        connections.close_all()


def run(kind, user_id, group_id):
    from django.db import connections

    connections.close_all()
    start = time.perf_counter()
    if PGBOUNCER:
        results = [None] * CLIENTS
        workers = [
            threading.Thread(target=thread_worker, args=(kind, user_id, group_id, i, results))
            for i in range(CLIENTS)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    else:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        workers = [
            ctx.Process(target=process_worker, args=(kind, user_id, group_id, i, queue))
            for i in range(CLIENTS)
        ]
        for w in workers:
            w.start()
        results = [queue.get() for _ in workers]
        for w in workers:
            w.join()
    elapsed = time.perf_counter() - start
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    return ok / elapsed, ok, errors


def main():
    state = common.setup()
    stop_pgbouncer = None
    try:
        from django.db import connection, connections

        from tests.factories import make_group, make_user
        from user_credits import services
        from user_credits.models import CreditAccount

        group = make_group("hot")
        user = make_user()
        services.grant(user, group, 1_000_000)
        services.consume(user, "hot", 1)  # the group is in use: its key resolves from memory
        route = "straight to PostgreSQL"
        direct_port = connection.settings_dict["PORT"]
        if PGBOUNCER:
            port, stop_pgbouncer = common.start_pgbouncer(pool_size=8)
            connections.close_all()
            # Every new connection (each thread's, and the limit's psycopg ones) goes through
            # PgBouncer; transaction pooling wants no server-side cursor.
            connection.settings_dict.update(PORT=port, DISABLE_SERVER_SIDE_CURSORS=True)
            route = f"through PgBouncer (transaction pooling, 8 server connections, port {port})"
        rates = {}
        for kind in ("services", "limit") * ROUNDS:
            rate, ok, errors = run(kind, user.pk, group.pk)
            assert errors == 0, f"{errors} unexpected errors"
            rates.setdefault(kind, []).append(rate)
        clients = f"{CLIENTS} {'threads' if PGBOUNCER else 'processes'}"
        common.table(
            f"hot account, {clients} {route} ({common.machine()})",
            ("approach", f"consumes/s (best of {ROUNDS})", "consumes per run"),
            [(k, f"{max(rates[k]):.0f}", CLIENTS * PER_CLIENT) for k in ("services", "limit")],
        )
        ratio = max(rates["services"]) / max(rates["limit"])
        print(f"services / limit throughput: {ratio:.2f} (goal ≥ 0.8)")
        # The limit path skips the idempotency records but keeps balance and lots in step.
        assert CreditAccount.objects.get().balance == services.get_balance(user, group)
    finally:
        from django.db import connection, connections

        connections.close_all()
        if stop_pgbouncer:
            stop_pgbouncer()
            connection.settings_dict["PORT"] = direct_port
        common.teardown(state)


if __name__ == "__main__":
    main()
