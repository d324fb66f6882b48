"""PostgreSQL fast paths: ``consume`` and the expiry sweep's batches as PL/pgSQL functions.

``user_credits_consume`` does what the portable path of ``credits.consume`` does, in the same
order and under the same account lock: expire the account's due lots, take tokens in burn order (one
ledger entry per lot), record an overdraft when allowed, update the account and the
idempotency record. Each statement inside it takes a fresh snapshot (READ COMMITTED), so what
it reads after the lock is current. It answers ``replay`` and ``no_account`` for the portable
path to handle (rare cases), ``insufficient`` before writing anything, or ``ok``.

``user_credits_expire_batch`` does what ``expiry._expire_batch`` does for one batch: lock the
accounts of the next due lots in id order, then (a fresh snapshot, under the locks) empty
their due lots, lower the balances and write one ``expire`` entry per lot, set-based.

Both are (re)created after every ``migrate`` (``post_migrate``), so they always match this code.
"""

import json

CONSUME_SQL = r"""
CREATE OR REPLACE FUNCTION user_credits_consume(
    p_user_id bigint, p_group_id bigint, p_count bigint, p_key text, p_metadata jsonb,
    p_now timestamptz, p_overdraft boolean
) RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    v_account bigint;
    v_balance bigint;
    v_overdraft bigint;
    v_ids bigint[];
    v_remaining bigint[];
    v_due boolean[];
    v_held boolean;
    v_available bigint := 0;
    v_need bigint := p_count;
    v_take bigint;
    v_entry bigint;
    v_entries jsonb := '[]'::jsonb;
    v_replay boolean;
    i int;
BEGIN
    -- A key recorded by a transaction that committed while this one waited for the lock is
    -- not seen here; the record's unique index then refuses the insert below and the caller
    -- answers the replay.
    SELECT a.id, a.balance, a.overdraft,
           p_key IS NOT NULL AND EXISTS (
               SELECT 1 FROM user_credits_consumptionrecord r
                WHERE r.user_id = p_user_id AND r.idempotency_key = p_key)
      INTO v_account, v_balance, v_overdraft, v_replay
      FROM user_credits_creditaccount a
     WHERE a.user_id = p_user_id AND a.offer_group_id = p_group_id
       FOR UPDATE OF a;
    IF v_account IS NULL THEN
        RETURN jsonb_build_object('status', 'no_account');
    END IF;
    IF v_replay THEN
        RETURN jsonb_build_object('status', 'replay');
    END IF;

    -- The account's lots with tokens, in burn order, read once under the account lock.
    SELECT array_agg(id ORDER BY priority, expires ASC NULLS LAST,
                     CASE WHEN category = 'promotional' THEN 0 ELSE 1 END, id),
           array_agg(remaining ORDER BY priority, expires ASC NULLS LAST,
                     CASE WHEN category = 'promotional' THEN 0 ELSE 1 END, id),
           array_agg(coalesce(expires <= p_now, false) ORDER BY priority,
                     expires ASC NULLS LAST, CASE WHEN category = 'promotional' THEN 0 ELSE 1 END,
                     id),
           coalesce(bool_or(held > 0), false)
      INTO v_ids, v_remaining, v_due, v_held
      FROM user_credits_creditlot
     WHERE account_id = v_account AND status = 'active' AND remaining > 0;
    IF v_held THEN
        -- Holds reserve tokens on this account: the portable path handles them.
        RETURN jsonb_build_object('status', 'holds');
    END IF;

    FOR i IN 1 .. coalesce(array_length(v_ids, 1), 0) LOOP
        IF NOT v_due[i] THEN
            v_available := v_available + v_remaining[i];
        END IF;
    END LOOP;
    IF v_available < p_count AND NOT p_overdraft THEN
        RETURN jsonb_build_object('status', 'insufficient', 'available', v_available);
    END IF;

    -- Due lots are expired first, then tokens are taken in burn order.
    FOR i IN 1 .. coalesce(array_length(v_ids, 1), 0) LOOP
        IF v_due[i] THEN
            v_balance := v_balance - v_remaining[i];
            UPDATE user_credits_creditlot SET remaining = 0, status = 'expired' WHERE id = v_ids[i];
            INSERT INTO user_credits_ledgerentry
                (account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata,
                 created_at)
            VALUES (v_account, v_ids[i], 'expire', -v_remaining[i], v_balance, NULL, '{}'::jsonb,
                    p_now);
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(v_ids, 1), 0) LOOP
        EXIT WHEN v_need = 0;
        CONTINUE WHEN v_due[i];
        v_take := least(v_need, v_remaining[i]);
        v_need := v_need - v_take;
        v_balance := v_balance - v_take;
        WITH taken AS (
            UPDATE user_credits_creditlot SET remaining = remaining - v_take WHERE id = v_ids[i]
        )
        INSERT INTO user_credits_ledgerentry
            (account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata, created_at)
        VALUES (v_account, v_ids[i], 'consume', -v_take, v_balance, p_key, p_metadata, p_now)
        RETURNING id INTO v_entry;
        v_entries := v_entries || jsonb_build_object(
            'id', v_entry, 'lot', v_ids[i], 'kind', 'consume', 'amount', -v_take,
            'balance_after', v_balance);
    END LOOP;

    IF v_need > 0 THEN
        v_balance := v_balance - v_need;
        v_overdraft := v_overdraft + v_need;
        INSERT INTO user_credits_ledgerentry
            (account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata, created_at)
        VALUES (v_account, NULL, 'overdraft', -v_need, v_balance, p_key, p_metadata, p_now)
        RETURNING id INTO v_entry;
        v_entries := v_entries || jsonb_build_object(
            'id', v_entry, 'lot', NULL, 'kind', 'overdraft', 'amount', -v_need,
            'balance_after', v_balance);
    END IF;

    IF p_key IS NULL THEN
        UPDATE user_credits_creditaccount SET balance = v_balance, overdraft = v_overdraft
         WHERE id = v_account;
    ELSE
        WITH account AS (
            UPDATE user_credits_creditaccount SET balance = v_balance, overdraft = v_overdraft
             WHERE id = v_account
        )
        INSERT INTO user_credits_consumptionrecord
            (user_id, account_id, idempotency_key, count, balance_after, created_at)
        VALUES (p_user_id, v_account, p_key, p_count, v_balance, p_now);
    END IF;
    RETURN jsonb_build_object('status', 'ok', 'account', v_account, 'balance', v_balance,
                              'entries', v_entries);
END
$fn$;
"""


EXPIRE_BATCH_SQL = r"""
CREATE OR REPLACE FUNCTION user_credits_expire_batch(
    p_now timestamptz, p_user_id bigint, p_batch int
) RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    v_accounts bigint[];
    v_result jsonb;
BEGIN
    SELECT array_agg(account_id) INTO v_accounts FROM (
        SELECT DISTINCT l.account_id FROM user_credits_creditlot l
         WHERE l.status = 'active' AND l.remaining > 0 AND l.expires <= p_now
           AND (p_user_id IS NULL OR l.account_id IN (
                SELECT id FROM user_credits_creditaccount WHERE user_id = p_user_id))
         ORDER BY l.account_id
         LIMIT p_batch
    ) batch;
    IF v_accounts IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM user_credits_creditaccount WHERE id = ANY (v_accounts) ORDER BY id FOR UPDATE;

    -- A new statement, so a new snapshot: what the locks' holders committed is seen.
    WITH due AS (
        SELECT l.id, l.account_id, l.remaining,
               a.balance - sum(l.remaining) OVER (PARTITION BY l.account_id ORDER BY l.id)
                   AS balance_after
          FROM user_credits_creditlot l
          JOIN user_credits_creditaccount a ON a.id = l.account_id
         WHERE l.account_id = ANY (v_accounts)
           AND l.status = 'active' AND l.remaining > 0 AND l.expires <= p_now
    ), per_account AS (
        SELECT account_id, array_agg(id ORDER BY id) AS lots, sum(remaining) AS total
          FROM due GROUP BY account_id
    ), emptied AS (
        UPDATE user_credits_creditlot l SET remaining = 0, held = 0, status = 'expired'
          FROM due WHERE l.id = due.id
    ), shrunk_holds AS (
        -- Held tokens of an expired lot expire with it: the holds shrink.
        UPDATE user_credits_holdline hl SET count = 0
          FROM due, user_credits_hold h
         WHERE hl.lot_id = due.id AND h.id = hl.hold_id AND h.status = 'active' AND hl.count > 0
    ), balances AS (
        UPDATE user_credits_creditaccount a SET balance = a.balance - p.total
          FROM per_account p WHERE a.id = p.account_id
    ), entries AS (
        INSERT INTO user_credits_ledgerentry
            (account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata,
             created_at)
        SELECT account_id, id, 'expire', -remaining, balance_after, NULL, '{}'::jsonb, p_now
          FROM due
    )
    SELECT jsonb_agg(jsonb_build_object(
               'account', p.account_id, 'user', a.user_id, 'group', g.key,
               'lots', p.lots, 'amount', p.total))
      INTO v_result
      FROM per_account p
      JOIN user_credits_creditaccount a ON a.id = p.account_id
      JOIN user_credits_offergroup g ON g.id = a.offer_group_id;
    RETURN coalesce(v_result, '[]'::jsonb);
END
$fn$;
"""


def install(using="default", **kwargs):
    """``post_migrate`` receiver: create or replace the functions on PostgreSQL."""
    from django.db import connections

    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(CONSUME_SQL)
            cursor.execute(EXPIRE_BATCH_SQL)


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def expire_batch(connection, *, now, user_id, batch_size) -> list[dict] | None:
    """Expire one batch; ``None`` once nothing is due."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT user_credits_expire_batch(%s, %s, %s)", [now, user_id, batch_size])
        return _json(cursor.fetchone()[0])


def consume(connection, *, user_id, group_id, count, key, metadata, now, overdraft) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_credits_consume(%s, %s, %s, %s, %s::jsonb, %s, %s)",
            [user_id, group_id, count, key, json.dumps(metadata), now, overdraft],
        )
        return _json(cursor.fetchone()[0])
