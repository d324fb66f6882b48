"""The expiry sweep at scale: 100,000 accounts with one due lot each.

    DATABASE_URL=postgres://… .venv/bin/python bench/expire.py [ACCOUNTS]

expire_credits (and the command) against a set-based SQL statement doing the same writes;
seconds, ratio, and each run's peak memory (measured in a child process of its own).
"""


import common

REFERENCE_SQL = """
WITH due AS (
    SELECT id, account_id, remaining FROM user_credits_creditlot
     WHERE status = 'active' AND remaining > 0 AND expires <= now()
       FOR UPDATE
), lots AS (
    UPDATE user_credits_creditlot l SET remaining = 0, status = 'expired'
      FROM due WHERE l.id = due.id
), accounts AS (
    -- One due lot per account here, so one entry each: the chain moves one link.
    UPDATE user_credits_creditaccount a
       SET balance = a.balance - due.remaining, last_seq = a.last_seq + 1,
           last_digest = user_credits_link(a.last_digest, user_credits_entry_content(
               a.id, a.last_seq + 1, 'expire', -due.remaining, a.balance - due.remaining,
               due.id, NULL, now()))
      FROM due WHERE a.id = due.account_id
 RETURNING a.id, a.balance, a.last_seq, a.last_digest
)
INSERT INTO user_credits_ledgerentry
    (account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata, created_at,
     seq, digest)
SELECT due.account_id, due.id, 'expire', -due.remaining, accounts.balance, NULL, '{}', now(),
       accounts.last_seq, accounts.last_digest
  FROM due JOIN accounts ON accounts.id = due.account_id
"""

POPULATE_SQL = """
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,
                       is_staff, is_active, date_joined)
SELECT '', false, 'bench' || g, '', '', '', false, true, now() FROM generate_series(1, %(n)s) g;
INSERT INTO user_credits_creditaccount (holder_id, offer_group_id, balance, overdraft, last_seq,
                                        last_digest, created_at)
SELECT id, %(group)s, 10, 0, 0, '', now() FROM auth_user WHERE username LIKE 'bench%%';
INSERT INTO user_credits_creditlot (account_id, granted, remaining, held, starts, expires,
                                    category, priority, status, reason, created_at)
SELECT id, 10, 10, 0, now() - interval '2 days', now() - interval '1 day', 'paid', 50, 'active',
       '', now()
  FROM user_credits_creditaccount WHERE offer_group_id = %(group)s;
INSERT INTO user_credits_ledgerentry (account_id, lot_id, kind, amount, balance_after, metadata,
                                      created_at, seq, digest)
SELECT account_id, id, 'grant', 10, 10, '{}', starts, 1,
       user_credits_link('', user_credits_entry_content(account_id, 1, 'grant', 10, 10, id,
                                                        NULL, starts))
  FROM user_credits_creditlot WHERE account_id IN (
      SELECT id FROM user_credits_creditaccount WHERE offer_group_id = %(group)s);
UPDATE user_credits_creditaccount a SET last_seq = 1, last_digest = e.digest
  FROM user_credits_ledgerentry e WHERE e.account_id = a.id AND a.offer_group_id = %(group)s;
"""

CLEAN_SQL = """
DELETE FROM user_credits_ledgerentry; DELETE FROM user_credits_creditlot;
DELETE FROM user_credits_creditaccount; DELETE FROM auth_user WHERE username LIKE 'bench%%';
"""


def populate(group_id, n):
    params = {"n": n, "group": group_id}
    with common.raw_connection() as raw:
        for sql in (CLEAN_SQL + POPULATE_SQL).split(";\n"):
            if sql.strip():
                raw.execute(sql, params)
        raw.execute("VACUUM ANALYZE")


def in_child(kind, queue):
    """Run one sweep in a fresh process, so its peak memory is its own."""
    from django.db import connections

    connections.close_all()
    if kind == "services":
        from user_credits.services import expire_credits

        seconds, report = common.timed(expire_credits, collect=False)
        done = report.expired_lots
    elif kind == "command":
        from io import StringIO

        from django.core.management import call_command

        out = StringIO()
        seconds, _ = common.timed(call_command, "user_credits_expire", "--json", stdout=out)
        import json

        done = json.loads(out.getvalue())["expired_lots"]
    else:
        with common.raw_connection() as raw:
            seconds, cursor = common.timed(raw.execute, REFERENCE_SQL)
            done = cursor.rowcount
    queue.put((seconds, done, common.peak_rss_mb()))


def measure(kind):
    return common.in_fresh_process(in_child, kind)


def main():
    n = common.size(100_000, 50)
    state = common.setup()
    try:
        from tests.factories import assert_ledger_consistent, make_group

        group = make_group("sweep")
        rows = {}
        for kind in ("services", "reference", "command"):
            populate(group.pk, n)
            seconds, done, peak = measure(kind)
            assert done == n, (kind, done)
            assert_ledger_consistent() if n <= 10_000 else None
            rows[kind] = (seconds, peak)
        reference = rows["reference"][0]
        common.table(
            f"expiry of {n:,} due lots in {n:,} accounts ({common.machine()})",
            ("approach", "seconds", "× reference", "peak RSS (MB)"),
            [
                (kind, f"{s:.2f}", f"{s / reference:.2f}", f"{peak:.0f}")
                for kind, (s, peak) in rows.items()
            ],
        )
    finally:
        common.teardown(state)


if __name__ == "__main__":
    main()
