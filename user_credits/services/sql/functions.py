"""The PL/pgSQL functions of the PostgreSQL fast path, built from the Python definitions.

Table names come from the models, statuses and entry kinds from their ``TextChoices``, and the
burn order from ``allocation.BURN_ORDER_FIELDS``: nothing here restates a rule by hand. The
differential test (``tests/test_differential.py``) runs the same operations through these
functions and through the portable path and compares every row.

``user_credits_consume(holder, group, count, key, metadata, now, overdraft, member,
period_starts)`` does what
``consumption.consume_portable`` does, in the same order and under the same account lock:
expire the account's due lots, take tokens in burn order (one ledger entry per lot), record an
overdraft when allowed, update the account and the idempotency record. With a ``member``, it
first reads the member's spending limit in the group and what they spent in its period
(``period_starts`` maps each period to its start, from ``cycles.period_start``), as
``spending.check_limit`` does. Each statement inside
takes a fresh snapshot (READ COMMITTED), so what it reads after the lock is current. It
returns a JSON object whose ``status`` is one of:

- ``ok``: the tokens were consumed; ``account``, ``balance``, ``entries`` (the new rows) and
  ``recharge_below`` (the account's auto-recharge threshold, or null);
- ``replay``: the key was used before for the same group and count; ``balance`` and
  ``entries`` of the first consumption, nothing written;
- ``conflict``: the key was used for another group or count (``count``), nothing written;
- ``insufficient``: not enough tokens (``available``), nothing written;
- ``limit``: the member's spending limit would be exceeded (``limit``, ``spent``), nothing
  written;
- ``holds``: the account has tokens reserved by holds, nothing written: the portable path
  handles it (holds are rare on a hot path; their lines are per lot);
- ``no_account``: no account yet and overdraft allowed: the portable path creates it.

``user_credits_consume_many(items, now, period_starts)`` locks the accounts of a batch (a
JSON array of ``holder``, ``grp``, ``count``, ``key``, ``metadata``, ``overdraft``, ``member``)
in account id order, then calls ``user_credits_consume`` for each item in order: one round
trip, the rules above written once. It returns ``{"results": [...]}`` (one status object per
item), or ``{"unknown_holder": index}`` having written nothing; an item the portable path
must handle (``holds``, ``no_account``) stops it there with
``"stopped"``, and the caller continues after that item.

``user_credits_expire_batch(now, holder, batch)`` does what ``expiry.expire_batch_portable``
does for one batch: lock the accounts of the next due lots in id order, then (a fresh
snapshot, under the locks) empty their due lots, lower the balances and write one ``expire``
entry per lot, set-based. It returns ``NULL`` once nothing is due, else one JSON object per
account: ``account``, ``holder``, ``group`` (key), ``lots`` (ids) and ``amount``.
"""

from ... import chain
from ...models import (
    ConsumptionRecord,
    CreditAccount,
    CreditLot,
    EntryKind,
    Hold,
    HoldLine,
    HoldStatus,
    LedgerEntry,
    LotStatus,
    OfferGroup,
    SpendingLimit,
)
from ..allocation import burn_order_sql


def literal(value: str) -> str:
    """An SQL string literal of one of our own constants."""
    return "'" + str(value).replace("'", "''") + "'"


def _names() -> dict[str, str]:
    return {
        "account": CreditAccount._meta.db_table,
        "lot": CreditLot._meta.db_table,
        "entry": LedgerEntry._meta.db_table,
        "record": ConsumptionRecord._meta.db_table,
        "hold": Hold._meta.db_table,
        "holdline": HoldLine._meta.db_table,
        "group": OfferGroup._meta.db_table,
        "limit": SpendingLimit._meta.db_table,
        "burn_order": burn_order_sql(literal),
        "active": literal(LotStatus.ACTIVE),
        "lot_expired": literal(LotStatus.EXPIRED),
        "hold_active": literal(HoldStatus.ACTIVE),
        "kind_consume": literal(EntryKind.CONSUME),
        "kind_expire": literal(EntryKind.EXPIRE),
        "kind_overdraft": literal(EntryKind.OVERDRAFT),
    }


CONSUME_TEMPLATE = r"""
CREATE OR REPLACE FUNCTION user_credits_consume(
    p_holder_id {holder_type}, p_group_id bigint, p_count bigint, p_key text, p_metadata jsonb,
    p_now timestamptz, p_overdraft boolean, p_member {member_type}, p_period_starts jsonb
) RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    v_limit bigint;
    v_period text;
    v_spent bigint;
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
    v_entry jsonb;
    v_entries jsonb := '[]'::jsonb;
    v_first {record}%ROWTYPE;
    v_first_group bigint;
    v_seq bigint;
    v_digest text;
    v_recharge_below bigint;
    i int;
BEGIN
    SELECT a.id, a.balance, a.overdraft, a.last_seq, a.last_digest, a.auto_recharge_below
      INTO v_account, v_balance, v_overdraft, v_seq, v_digest, v_recharge_below
      FROM {account} a
     WHERE a.holder_id = p_holder_id AND a.offer_group_id = p_group_id
       FOR UPDATE;

    IF p_key IS NOT NULL THEN
        -- A new statement after the lock: a record committed by the lock's previous holder is
        -- seen. One committed for another account of the holder meanwhile makes the insert
        -- below fail on the unique index; the caller then asks again.
        SELECT r.* INTO v_first FROM {record} r
         WHERE r.holder_id = p_holder_id AND r.idempotency_key = p_key;
        IF FOUND THEN
            SELECT offer_group_id INTO v_first_group FROM {account}
             WHERE id = v_first.account_id;
            IF v_first_group <> p_group_id OR v_first.count <> p_count THEN
                RETURN jsonb_build_object('status', 'conflict', 'count', v_first.count);
            END IF;
            RETURN jsonb_build_object(
                'status', 'replay', 'account', v_first.account_id,
                'balance', v_first.balance_after,
                'entries', (SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.id), '[]'::jsonb)
                              FROM {entry} e
                             WHERE e.account_id = v_first.account_id
                               AND e.idempotency_key = p_key));
        END IF;
    END IF;

    IF v_account IS NULL THEN
        IF p_overdraft THEN
            RETURN jsonb_build_object('status', 'no_account');
        END IF;
        RETURN jsonb_build_object('status', 'insufficient', 'available', 0);
    END IF;

    -- The account's lots with tokens, in burn order, read once under the account lock.
    SELECT array_agg(id ORDER BY {burn_order}),
           array_agg(remaining ORDER BY {burn_order}),
           array_agg(coalesce(expires <= p_now, false) ORDER BY {burn_order}),
           coalesce(bool_or(held > 0), false)
      INTO v_ids, v_remaining, v_due, v_held
      FROM {lot}
     WHERE account_id = v_account AND status = {active} AND remaining > 0;
    IF v_held THEN
        RETURN jsonb_build_object('status', 'holds');
    END IF;

    -- The member's limit: what they spent this period, under the account lock. (No lot is
    -- held here, so none of their holds reserves a token.)
    IF p_member IS NOT NULL THEN
        SELECT tokens, period INTO v_limit, v_period FROM {limit}
         WHERE holder_id = p_holder_id AND member_id = p_member AND offer_group_id = p_group_id;
        IF FOUND THEN
            SELECT coalesce(-sum(amount), 0) INTO v_spent FROM {entry}
             WHERE account_id = v_account AND member_id = p_member
               AND kind IN ({kind_consume}, {kind_overdraft})
               AND created_at >= (p_period_starts ->> v_period)::timestamptz;
            IF v_spent + p_count > v_limit THEN
                RETURN jsonb_build_object('status', 'limit', 'limit', v_limit, 'spent', v_spent);
            END IF;
        END IF;
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
            v_seq := v_seq + 1;
            v_digest := user_credits_link(v_digest, user_credits_entry_content(
                v_account, v_seq, {kind_expire}, -v_remaining[i], v_balance, v_ids[i], NULL,
                p_now));
            UPDATE {lot} SET remaining = 0, status = {lot_expired} WHERE id = v_ids[i];
            INSERT INTO {entry}
                (account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata,
                 created_at, seq, digest)
            VALUES (v_account, v_ids[i], {kind_expire}, -v_remaining[i], v_balance, NULL,
                    '{{}}'::jsonb, p_now, v_seq, v_digest);
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(v_ids, 1), 0) LOOP
        EXIT WHEN v_need = 0;
        CONTINUE WHEN v_due[i];
        v_take := least(v_need, v_remaining[i]);
        v_need := v_need - v_take;
        v_balance := v_balance - v_take;
        v_seq := v_seq + 1;
        v_digest := user_credits_link(v_digest, user_credits_entry_content(
            v_account, v_seq, {kind_consume}, -v_take, v_balance, v_ids[i], p_key, p_now));
        WITH taken AS (
            UPDATE {lot} SET remaining = remaining - v_take WHERE id = v_ids[i]
        )
        INSERT INTO {entry} AS e
            (account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata, created_at,
             seq, digest, member_id)
        VALUES (v_account, v_ids[i], {kind_consume}, -v_take, v_balance, p_key, p_metadata, p_now,
                v_seq, v_digest, p_member)
        RETURNING to_jsonb(e) INTO v_entry;
        v_entries := v_entries || v_entry;
    END LOOP;

    IF v_need > 0 THEN
        v_balance := v_balance - v_need;
        v_overdraft := v_overdraft + v_need;
        v_seq := v_seq + 1;
        v_digest := user_credits_link(v_digest, user_credits_entry_content(
            v_account, v_seq, {kind_overdraft}, -v_need, v_balance, NULL, p_key, p_now));
        INSERT INTO {entry} AS e
            (account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata, created_at,
             seq, digest, member_id)
        VALUES (v_account, NULL, {kind_overdraft}, -v_need, v_balance, p_key, p_metadata, p_now,
                v_seq, v_digest, p_member)
        RETURNING to_jsonb(e) INTO v_entry;
        v_entries := v_entries || v_entry;
    END IF;

    IF p_key IS NULL THEN
        UPDATE {account}
           SET balance = v_balance, overdraft = v_overdraft, last_seq = v_seq,
               last_digest = v_digest
         WHERE id = v_account;
    ELSE
        WITH account AS (
            UPDATE {account}
               SET balance = v_balance, overdraft = v_overdraft, last_seq = v_seq,
                   last_digest = v_digest
             WHERE id = v_account
        )
        INSERT INTO {record}
            (holder_id, account_id, idempotency_key, count, balance_after, created_at)
        VALUES (p_holder_id, v_account, p_key, p_count, v_balance, p_now);
    END IF;
    RETURN jsonb_build_object('status', 'ok', 'account', v_account, 'balance', v_balance,
                              'entries', v_entries, 'recharge_below', v_recharge_below);
END
$fn$;
"""


EXPIRE_BATCH_TEMPLATE = r"""
CREATE OR REPLACE FUNCTION user_credits_expire_batch(
    p_now timestamptz, p_holder_id {holder_type}, p_batch int
) RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    v_accounts bigint[];
    v_result jsonb;
BEGIN
    SELECT array_agg(account_id) INTO v_accounts FROM (
        SELECT DISTINCT l.account_id FROM {lot} l
         WHERE l.status = {active} AND l.remaining > 0 AND l.expires <= p_now
           AND (p_holder_id IS NULL OR l.account_id IN (
                SELECT id FROM {account} WHERE holder_id = p_holder_id))
         ORDER BY l.account_id
         LIMIT p_batch
    ) batch;
    IF v_accounts IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM {account} WHERE id = ANY (v_accounts) ORDER BY id FOR UPDATE;

    -- A new statement, so a new snapshot: what the locks' holders committed is seen.
    WITH due AS (
        SELECT l.id, l.account_id, l.remaining,
               (a.balance - sum(l.remaining) OVER running)::bigint AS balance_after,
               a.last_seq + row_number() OVER running AS seq,
               a.last_digest
          FROM {lot} l
          JOIN {account} a ON a.id = l.account_id
         WHERE l.account_id = ANY (v_accounts)
           AND l.status = {active} AND l.remaining > 0 AND l.expires <= p_now
        WINDOW running AS (PARTITION BY l.account_id ORDER BY l.id)
    ), chained AS (
        SELECT due.*, user_credits_chain(last_digest, user_credits_entry_content(
                   account_id, seq, {kind_expire}, -remaining, balance_after, id, NULL::text,
                   p_now))
                   OVER (PARTITION BY account_id ORDER BY id) AS digest
          FROM due
    ), per_account AS (
        SELECT account_id, array_agg(id ORDER BY id) AS lots, sum(remaining) AS total,
               max(seq) AS last_seq, (array_agg(digest ORDER BY id DESC))[1] AS last_digest
          FROM chained GROUP BY account_id
    ), emptied AS (
        UPDATE {lot} l SET remaining = 0, held = 0, status = {lot_expired}
          FROM due WHERE l.id = due.id
    ), shrunk_holds AS (
        -- Held tokens of an expired lot expire with it: the holds shrink.
        UPDATE {holdline} hl SET count = 0
          FROM due, {hold} h
         WHERE hl.lot_id = due.id AND h.id = hl.hold_id AND h.status = {hold_active}
           AND hl.count > 0
    ), balances AS (
        UPDATE {account} a
           SET balance = a.balance - p.total, last_seq = p.last_seq, last_digest = p.last_digest
          FROM per_account p WHERE a.id = p.account_id
    ), entries AS (
        INSERT INTO {entry}
            (account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata,
             created_at, seq, digest)
        SELECT account_id, id, {kind_expire}, -remaining, balance_after, NULL, '{{}}'::jsonb,
               p_now, seq, digest
          FROM chained ORDER BY account_id, id
    )
    SELECT jsonb_agg(jsonb_build_object(
               'account', p.account_id, 'holder', a.holder_id, 'group', g.key,
               'lots', p.lots, 'amount', p.total))
      INTO v_result
      FROM per_account p
      JOIN {account} a ON a.id = p.account_id
      JOIN {group} g ON g.id = a.offer_group_id;
    RETURN coalesce(v_result, '[]'::jsonb);
END
$fn$;
"""


CONSUME_MANY_TEMPLATE = r"""
CREATE OR REPLACE FUNCTION user_credits_consume_many(
    p_items jsonb, p_now timestamptz, p_period_starts jsonb
) RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    v_item jsonb;
    v_result jsonb;
    v_results jsonb[] := '{{}}';
    v_unknown bigint;
BEGIN
    -- An item of an unknown holder refuses the whole batch, before anything is written.
    SELECT t.n - 1 INTO v_unknown
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(value, n)
     WHERE NOT EXISTS (SELECT 1 FROM {holder_table} h
                        WHERE h.{holder_pk} = (t.value ->> 'holder')::{holder_type})
     ORDER BY t.n LIMIT 1;
    IF FOUND THEN
        RETURN jsonb_build_object('unknown_holder', v_unknown);
    END IF;

    -- Every existing account of the batch, locked in id order: two batches over the same
    -- accounts wait for each other instead of deadlocking.
    PERFORM 1 FROM {account} a
     WHERE (a.holder_id, a.offer_group_id) IN (
           SELECT x.holder, x.grp
             FROM jsonb_to_recordset(p_items) AS x(holder {holder_type}, grp bigint))
     ORDER BY a.id
       FOR UPDATE;

    -- Each item through the single consume, in input order: the same rules, written once.
    FOR v_item IN SELECT t.value FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(value, n)
                   ORDER BY t.n LOOP
        v_result := user_credits_consume(
            (v_item ->> 'holder')::{holder_type}, (v_item ->> 'grp')::bigint,
            (v_item ->> 'count')::bigint, v_item ->> 'key',
            coalesce(v_item -> 'metadata', '{{}}'::jsonb), p_now,
            (v_item ->> 'overdraft')::boolean, (v_item ->> 'member')::{member_type},
            p_period_starts);
        IF v_result ->> 'status' IN ('holds', 'no_account') THEN
            -- Left to the portable path, and the items after it to a next call, in order.
            RETURN jsonb_build_object(
                'results', to_jsonb(v_results), 'stopped', v_result ->> 'status');
        END IF;
        -- Appending to an array is amortised O(1); to a jsonb array it copies it each time.
        v_results := array_append(v_results, v_result);
    END LOOP;
    RETURN jsonb_build_object('results', to_jsonb(v_results));
END
$fn$;
"""


def chain_functions_sql() -> str:
    """``user_credits_entry_content`` and ``user_credits_link``: ``chain.content`` and
    ``chain.link`` in SQL; ``user_credits_chain``: ``link`` as a running window aggregate."""
    params = ", ".join(f"{name} {SQL_TYPES[how]}" for name, how in chain.CHAINED_FIELDS)
    return f"""
CREATE OR REPLACE FUNCTION user_credits_entry_content({params}) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$ SELECT {chain.content_sql(lambda name: name)} $fn$;
CREATE OR REPLACE FUNCTION user_credits_link(previous text, content text) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT encode(sha256(convert_to(previous || '|' || content, 'UTF8')), 'hex')
$fn$;
CREATE OR REPLACE FUNCTION user_credits_chain_step(state text, previous text, content text)
RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
    SELECT user_credits_link(coalesce(state, previous), content)
$fn$;
CREATE OR REPLACE AGGREGATE user_credits_chain(text, text) (
    SFUNC = user_credits_chain_step, STYPE = text
);
"""


SQL_TYPES = {"int": "bigint", "text": "text", "time": "timestamptz"}


def _key_types(connection) -> dict[str, str]:
    """SQL types of the holder's and the member's primary keys (``bigint`` by default)."""
    holder = CreditAccount._meta.get_field("holder").target_field
    member = LedgerEntry._meta.get_field("member").target_field
    return {
        "holder_type": holder.rel_db_type(connection),
        "member_type": member.rel_db_type(connection),
    }


def consume_function_sql(connection) -> str:
    return CONSUME_TEMPLATE.format(**_names(), **_key_types(connection))


def consume_many_function_sql(connection) -> str:
    target = CreditAccount._meta.get_field("holder").target_field
    quote = connection.ops.quote_name
    return CONSUME_MANY_TEMPLATE.format(
        **_names(),
        **_key_types(connection),
        holder_table=quote(target.model._meta.db_table),
        holder_pk=quote(target.column),
    )


def expire_batch_function_sql(connection) -> str:
    return EXPIRE_BATCH_TEMPLATE.format(**_names(), **_key_types(connection))


#: Signatures the functions had before holders (``user_id`` columns), dropped by ``install``.
OBSOLETE_FUNCTIONS_SQL = """
DROP FUNCTION IF EXISTS user_credits_consume(
    bigint, bigint, bigint, text, jsonb, timestamptz, boolean);
DROP FUNCTION IF EXISTS user_credits_expire_batch(timestamptz, bigint, int);
"""
