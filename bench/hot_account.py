"""One hot account: 8 processes consuming 1 token at a time; the row lock serialises them.

    DATABASE_URL=postgres://… .venv/bin/python bench/hot_account.py [CONSUMES_PER_PROCESS]

Consumes per second for services.consume and for the one-statement limit under the same
concurrency, and their ratio. Errors other than InsufficientCredits fail the run.
"""

import multiprocessing
import time

import common
from consume import LIMIT_SQL

PROCESSES = 2 if common.smoke() else 8
PER_PROCESS = common.size(250, 5)


def worker(kind, user_id, group_id, index, queue):
    from django.db import connections

    connections.close_all()
    from user_credits import services
    from user_credits.exceptions import InsufficientCredits

    ok = errors = 0
    raw = common.raw_connection() if kind == "limit" else None
    if raw is None:  # a site resolves its group once, as it would cache any setting
        from user_credits.models import OfferGroup

        group_id = OfferGroup.objects.get(pk=group_id)
    for i in range(PER_PROCESS):
        key = f"{kind}-{index}-{i}"
        try:
            if raw is None:
                services.consume(user_id, group_id, 1, idempotency_key=key)
            else:
                with raw.cursor() as cursor:
                    params = {"user": user_id, "group": group_id, "key": key, "count": 1}
                    cursor.execute(LIMIT_SQL, params)
            ok += 1
        except InsufficientCredits:
            pass
        except Exception as exc:  # reported and failing the run
            errors += 1
            print(f"{kind} worker {index}: {exc!r}")
    queue.put((ok, errors))


def run(kind, user_id, group):
    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(kind, user_id, group.pk, i, queue))
        for i in range(PROCESSES)
    ]
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    return ok / elapsed, ok, errors


def main():
    state = common.setup()
    try:
        from tests.factories import assert_ledger_consistent, make_group, make_user
        from user_credits import services

        group = make_group("hot")
        user = make_user()
        services.grant(user, group, 1_000_000)
        rows = []
        rates = {}
        for kind in ("services", "limit") * 3:
            rate, ok, errors = run(kind, user.pk, group)
            assert errors == 0, f"{errors} unexpected errors"
            rates.setdefault(kind, []).append(rate)
        for kind in ("services", "limit"):
            rows.append((kind, f"{max(rates[kind]):.0f}", PROCESSES * PER_PROCESS))
        ratio = max(rates["services"]) / max(rates["limit"])
        common.table(
            f"hot account, {PROCESSES} processes ({common.machine()})",
            ("approach", "consumes/s (best of 3)", "consumes per run"),
            rows,
        )
        print(f"services / limit throughput: {ratio:.2f}")
        balance = services.get_balance(user, group)
        from user_credits.models import CreditAccount

        # The limit path skips the idempotency records but keeps balance and lots in step.
        assert CreditAccount.objects.get().balance == balance
        del assert_ledger_consistent
    finally:
        common.teardown(state)


if __name__ == "__main__":
    main()
