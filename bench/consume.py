"""consume on PostgreSQL against the one-statement limit and a naive hand-written version.

    DATABASE_URL=postgres://… .venv/bin/python bench/consume.py

100 accounts, 2,000 consumes of 1 token round-robin, each its own transaction with an
idempotency key; a first round with one lot per account, a second with five (burn order).
The "limited" column is ``services.consume`` by a member with a spending limit in force (the
limit and the member's spend this period read under the account lock).
"""

import itertools
from datetime import timedelta

import common

BURN_ORDER = """l.priority, l.expires ASC NULLS LAST,
         CASE WHEN l.category = 'promotional' THEN 0 ELSE 1 END, l.id"""
NEXT_LOT = f"""
    SELECT l.id FROM user_credits_creditlot l
     WHERE l.account_id = a.id AND l.status = 'active' AND l.remaining > 0
       AND (l.expires IS NULL OR l.expires > now())
     ORDER BY {BURN_ORDER} LIMIT 1"""

# The same effect as one statement: the balance, the chain end, the lot, the ledger row.
LIMIT_SQL = f"""
WITH account AS (
    UPDATE user_credits_creditaccount a
       SET balance = balance - 1, last_seq = last_seq + 1,
           last_digest = user_credits_link(last_digest, user_credits_entry_content(
               a.id, last_seq + 1, 'consume', -1, balance - 1, ({NEXT_LOT}), %(key)s, now()))
     WHERE holder_id = %(user)s AND offer_group_id = %(group)s AND balance >= 1
 RETURNING id, balance, last_seq, last_digest
), lot AS (
    UPDATE user_credits_creditlot SET remaining = remaining - 1
     WHERE id = (SELECT l.id FROM user_credits_creditlot l JOIN account a ON l.account_id = a.id
                  WHERE l.status = 'active' AND l.remaining > 0
                    AND (l.expires IS NULL OR l.expires > now())
                  ORDER BY {BURN_ORDER} LIMIT 1 FOR UPDATE)
 RETURNING id
)
INSERT INTO user_credits_ledgerentry
    (account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata, created_at, seq,
     digest)
SELECT account.id, lot.id, 'consume', -1, account.balance, %(key)s, '{{}}', now(),
       account.last_seq, account.last_digest
  FROM account, lot
"""

N_USERS, N_CONSUMES = 100, 2000


def populate(lots_per_account):
    from django.utils import timezone

    from tests.factories import make_group, make_user
    from user_credits import services

    group = make_group(f"bench{lots_per_account}")
    users = [make_user() for _ in range(N_USERS)]
    soon = timezone.now() + timedelta(days=30)
    for user in users:
        for i in range(lots_per_account):
            services.grant(user, group, 100_000, expires=soon + timedelta(days=i))
        # Holders are users here: each spends their own credits, under a limit never reached.
        services.set_spending_limit(user, user, group, 10**9)
    return group, users


def run_services(group, users, tag):
    from user_credits import services

    for i in range(N_CONSUMES):
        services.consume(users[i % N_USERS], group, 1, idempotency_key=f"{tag}-{i}")


def run_limited(group, users, tag):
    from user_credits import services

    for i in range(N_CONSUMES):
        user = users[i % N_USERS]
        services.consume(user, group, 1, idempotency_key=f"{tag}-{i}", member=user)


def run_limit(raw, group, users, tag):
    with raw.cursor() as cursor:
        for i in range(N_CONSUMES):
            params = {"user": users[i % N_USERS].pk, "group": group.pk, "key": f"{tag}-{i}"}
            cursor.execute(LIMIT_SQL, params)


NAIVE_SEQ = itertools.count(10**9)


def run_naive(group, users, tag):
    from django.db import transaction
    from django.db.models import F

    from user_credits.models import CreditAccount, LedgerEntry

    accounts = {a.holder_id: a.pk for a in CreditAccount.objects.filter(offer_group=group)}
    for i in range(N_CONSUMES):
        account_id = accounts[users[i % N_USERS].pk]
        with transaction.atomic():
            CreditAccount.objects.filter(pk=account_id).update(balance=F("balance") - 1)
            LedgerEntry.objects.create(
                account_id=account_id,
                kind="consume",
                amount=-1,
                balance_after=0,
                idempotency_key=f"{tag}-{i}",
                seq=next(NAIVE_SEQ),  # a naive version keeps no chain: any unique number
            )


def main():
    state = common.setup()
    try:
        raw = common.raw_connection()
        rows = []
        for lots in (1, 5):
            group, users = populate(lots)
            run_services(group, users, f"warm{lots}")
            run_limit(raw, group, users, f"lwarm{lots}")
            run_limited(group, users, f"mwarm{lots}")
            best = {"services": [], "limited": [], "limit": [], "naive": []}
            for rep in range(3):  # interleaved, best of three
                tag = f"{lots}-{rep}"
                best["services"].append(common.timed(run_services, group, users, f"s{tag}")[0])
                best["limited"].append(common.timed(run_limited, group, users, f"m{tag}")[0])
                best["limit"].append(common.timed(run_limit, raw, group, users, f"l{tag}")[0])
                best["naive"].append(common.timed(run_naive, group, users, f"n{tag}")[0])
            us = {k: min(v) / N_CONSUMES * 1e6 for k, v in best.items()}
            rows.append(
                (
                    f"{lots} lot(s)/account",
                    f"{us['services']:.0f}",
                    f"{us['limited']:.0f}",
                    f"{us['limit']:.0f}",
                    f"{us['naive']:.0f}",
                    f"{us['services'] / us['limit']:.2f}",
                    f"{us['limited'] / us['limit']:.2f}",
                    f"{us['services'] / us['naive']:.2f}",
                )
            )
        common.table(
            f"consume, µs per call ({N_CONSUMES} calls, {N_USERS} accounts; {common.machine()})",
            (
                "round",
                "services.consume",
                "with a member's limit",
                "one-statement limit",
                "naive F()",
                "services/limit",
                "limited/limit",
                "services/naive",
            ),
            rows,
        )
        raw.close()
    finally:
        common.teardown(state)


if __name__ == "__main__":
    main()
