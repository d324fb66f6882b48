"""user_credits_verify on a large ledger: seconds and peak memory.

    DATABASE_URL=postgres://… .venv/bin/python bench/verify.py [ENTRIES] [ACCOUNTS]

Default: 100,000 entries over 1,000 accounts (one lot each: a grant, then consumptions),
written set-based with the chain computed by the database functions. The reference is one
SQL pass summing every account's amounts (what any check must at least read).
"""

import sys

import common

POPULATE_SQL = """
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,
                       is_staff, is_active, date_joined)
SELECT '', false, 'verify' || g, '', '', '', false, true, now() FROM generate_series(1, %(m)s) g;
INSERT INTO user_credits_creditaccount (holder_id, offer_group_id, balance, overdraft, last_seq,
                                        last_digest, created_at)
SELECT id, %(group)s, %(granted)s - (%(k)s - 1), 0, 0, '', now()
  FROM auth_user WHERE username LIKE 'verify%%';
INSERT INTO user_credits_creditlot (account_id, granted, remaining, held, starts, expires,
                                    category, priority, status, reason, created_at)
SELECT id, %(granted)s, %(granted)s - (%(k)s - 1), 0, now() - interval '1 day', NULL, 'paid',
       50, 'active', '', now()
  FROM user_credits_creditaccount WHERE offer_group_id = %(group)s;
INSERT INTO user_credits_ledgerentry (account_id, lot_id, kind, amount, balance_after, metadata,
                                      created_at, seq, digest)
SELECT account_id, lot_id, kind, amount, balance_after, '{}', created_at, seq,
       user_credits_chain('', user_credits_entry_content(
           account_id, seq, kind, amount, balance_after, lot_id, NULL, created_at))
           OVER (PARTITION BY account_id ORDER BY seq)
  FROM (SELECT l.account_id, l.id AS lot_id, s AS seq,
               CASE WHEN s = 1 THEN 'grant' ELSE 'consume' END AS kind,
               CASE WHEN s = 1 THEN %(granted)s ELSE -1 END AS amount,
               %(granted)s - (s - 1) AS balance_after,
               l.starts + s * interval '1 second' AS created_at
          FROM user_credits_creditlot l, generate_series(1, %(k)s) s) entries;
UPDATE user_credits_creditaccount a SET last_seq = e.seq, last_digest = e.digest
  FROM user_credits_ledgerentry e WHERE e.account_id = a.id AND e.seq = %(k)s;
VACUUM ANALYZE
"""

REFERENCE_SQL = "SELECT account_id, sum(amount) FROM user_credits_ledgerentry GROUP BY account_id"


def in_child(kind, queue):
    from django.db import connections

    connections.close_all()
    if kind == "verify":
        from user_credits.services import verify_ledger

        seconds, report = common.timed(verify_ledger)
        result = (report.entries, len(report.problems))
    else:
        with common.raw_connection() as raw:
            seconds, cursor = common.timed(lambda: raw.execute(REFERENCE_SQL).fetchall())
            result = (None, 0)
    queue.put((seconds, result, common.peak_rss_mb()))


def measure(kind):
    return common.in_fresh_process(in_child, kind)


def main():
    n = common.size(100_000, 200)
    m = int(sys.argv[2]) if len(sys.argv) > 2 else max(1, n // 100)
    k = max(1, n // m)
    state = common.setup()
    try:
        from tests.factories import make_group

        group = make_group("verify")
        params = {"m": m, "k": k, "group": group.pk, "granted": k + 10}
        with common.raw_connection() as raw:
            for sql in POPULATE_SQL.split(";\n"):
                raw.execute(sql, params)
        verify_s, (entries, problems), verify_rss = measure("verify")
        assert (entries, problems) == (m * k, 0), (entries, problems)
        reference_s, _, reference_rss = measure("reference")
        common.table(
            f"user_credits_verify over {m * k:,} entries in {m:,} accounts ({common.machine()})",
            ("approach", "seconds", "× reference", "entries/s", "peak RSS (MB)"),
            [
                (
                    "verify_ledger",
                    f"{verify_s:.2f}",
                    f"{verify_s / reference_s:.1f}",
                    f"{m * k / verify_s:,.0f}",
                    f"{verify_rss:.0f}",
                ),
                ("SQL sum per account", f"{reference_s:.2f}", "1.0", "", f"{reference_rss:.0f}"),
            ],
        )
    finally:
        common.teardown(state)


if __name__ == "__main__":
    main()
