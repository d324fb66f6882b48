"""consume_many against consume one item at a time, on PostgreSQL.

    DATABASE_URL=postgres://… .venv/bin/python bench/consume_batch.py [ITEMS]

1,000 items of 3 tokens over 100 accounts (10 per account, interleaved), each with an
idempotency key, as a usage pipeline ingests them from a queue: one ``consume_many`` call
(one transaction; on PostgreSQL one round trip), against 1,000 ``consume`` calls (each its own
transaction), and ``consume_many`` with ``POSTGRES_FAST_PATH`` off (the portable path: the ORM
per item, in one transaction). Results build their ``entries`` on first read; a variant reads
every one, as the API does. Best of three rounds interleaving the variants.
"""

import common

COUNT = 3
N_ITEMS = common.size(1000, 20)
N_ACCOUNTS = 100 if not common.smoke() else 5


def populate():
    from tests.factories import make_group, make_user
    from user_credits import services

    group = make_group("batch")
    users = [make_user() for _ in range(N_ACCOUNTS)]
    for user in users:
        services.grant(user, group, 10_000_000)
    return group, users


def items(group, users, tag):
    from user_credits import services

    return [
        services.ConsumeItem(
            users[i % N_ACCOUNTS].pk, group.key, COUNT, idempotency_key=f"{tag}-{i}"
        )
        for i in range(N_ITEMS)
    ]


def run_batch(batch):
    from user_credits import services

    results = services.consume_many(batch)
    assert all(r.status == "ok" for r in results)


def run_batch_reading_entries(batch):
    from user_credits import services

    results = services.consume_many(batch)
    assert all(r.status == "ok" for r in results)
    assert sum(len(r.entries) for r in results) == len(batch)


def run_portable(batch):
    from django.test import override_settings

    with override_settings(USER_CREDITS={"POSTGRES_FAST_PATH": False}):
        run_batch(batch)


def run_one_by_one(batch):
    from user_credits import services

    for item in batch:
        services.consume(
            item.holder, item.offer_group, item.count, idempotency_key=item.idempotency_key
        )


def main():
    state = common.setup()
    try:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        group, users = populate()
        run_batch(items(group, users, "warm"))  # the group key is now known
        with CaptureQueriesContext(connection) as captured:
            run_batch(items(group, users, "queries"))
        batch_queries = len(captured)
        best = {"batch": [], "read": [], "one": [], "portable": []}
        for rep in range(3):
            best["batch"].append(common.timed(run_batch, items(group, users, f"b{rep}"))[0])
            best["read"].append(
                common.timed(run_batch_reading_entries, items(group, users, f"r{rep}"))[0]
            )
            best["one"].append(common.timed(run_one_by_one, items(group, users, f"o{rep}"))[0])
            best["portable"].append(common.timed(run_portable, items(group, users, f"p{rep}"))[0])
        ms = {k: min(v) * 1e3 for k, v in best.items()}
        common.table(
            f"{N_ITEMS} consumes of {COUNT} tokens over {N_ACCOUNTS} accounts, ms in all "
            f"(best of 3; {common.machine()})",
            (
                "consume_many",
                "entries read",
                "consume × N",
                "consume_many, portable path",
                "one-by-one/batch",
                "one-by-one/batch, entries read",
                "portable/batch",
                "queries/batch",
            ),
            [
                (
                    f"{ms['batch']:.0f}",
                    f"{ms['read']:.0f}",
                    f"{ms['one']:.0f}",
                    f"{ms['portable']:.0f}",
                    f"{ms['one'] / ms['batch']:.1f}",
                    f"{ms['one'] / ms['read']:.1f}",
                    f"{ms['portable'] / ms['batch']:.1f}",
                    str(batch_queries),
                )
            ],
        )
    finally:
        common.teardown(state)


if __name__ == "__main__":
    main()
