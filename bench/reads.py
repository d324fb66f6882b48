"""Reads: get_balance, get_user_credits (an account with 50 lots), load_offers (500 offers,
20 tags). Microseconds per call and queries per call.

    DATABASE_URL=postgres://… .venv/bin/python bench/reads.py [CALLS]
"""

import time

import common

CALLS = common.size(300, 3)
OFFERS = 20 if common.smoke() else 500


def per_call(fn):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    fn()  # warm
    with CaptureQueriesContext(connection) as queries:
        fn()
    start = time.perf_counter()
    for _ in range(CALLS):
        fn()
    return (time.perf_counter() - start) / CALLS * 1e6, len(queries)


def main():
    state = common.setup()
    try:
        from datetime import timedelta

        from django.utils import timezone

        from tests.factories import buy, make_group, make_offer, make_user
        from user_credits import services
        from user_credits.models import Tag

        user = make_user()
        group = make_group("reads")
        soon = timezone.now() + timedelta(days=30)
        for i in range(50):
            services.grant(user, group, 10, expires=soon + timedelta(hours=i))
        tags = [Tag.objects.create(name=f"tag{i}") for i in range(20)]
        gold = make_group("gold")
        buy(user, make_offer("Gold pass", group=gold))
        for i in range(OFFERS):
            offer = make_offer(
                f"Offer {i}",
                group=group,
                overriding_key=f"k{i % 50}",
                unlocked_by=[gold] if i % 10 == 0 else (),
                weight=i % 7,
            )
            offer.tags.set([tags[i % 20], tags[(i * 7) % 20]])
        raw = common.raw_connection()
        raw_sql = (
            "SELECT coalesce(sum(l.remaining) FILTER (WHERE l.status = 'active' AND l.remaining > 0"
            " AND (l.expires IS NULL OR l.expires > now())), 0) - a.overdraft"
            " FROM user_credits_creditaccount a JOIN user_credits_offergroup g"
            " ON g.id = a.offer_group_id LEFT JOIN user_credits_creditlot l ON l.account_id = a.id"
            " WHERE a.holder_id = %s AND g.key = %s GROUP BY a.id"
        )

        def raw_balance():
            with raw.cursor() as cursor:
                cursor.execute(raw_sql, [user.pk, "reads"])
                return cursor.fetchone()[0]

        assert raw_balance() == services.get_balance(user, "reads")
        rows = []
        for name, fn in (
            ("raw SQL balance (reference)", raw_balance),
            ("get_balance", lambda: services.get_balance(user, "reads")),
            ("get_user_credits (50 lots)", lambda: services.get_user_credits(user)),
            (f"load_offers ({OFFERS} offers)", lambda: services.load_offers(user)),
            (
                f"load_offers, 2 tags ({OFFERS // 20} offers)",
                lambda: services.load_offers(user, ["tag1", "tag7"]),
            ),
        ):
            us, queries = per_call(fn)
            rows.append((name, us, queries))
        reference = rows[0][1]
        common.table(
            f"reads ({CALLS} calls each; {common.machine()})",
            ("call", "µs/call", "× raw SQL balance", "queries"),
            [(n, f"{us:.0f}", f"{us / reference:.1f}", q or "1 (psycopg)") for n, us, q in rows],
        )
        raw.close()
    finally:
        common.teardown(state)


if __name__ == "__main__":
    main()
