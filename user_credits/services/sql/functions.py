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

``user_credits_consume_many(items, now, period_starts)`` consumes a batch (a JSON array of
``holder``, ``grp``, ``count``, ``key``, ``metadata``, ``overdraft``, ``member``) in one round
trip: what ``user_credits_consume`` does for each item in turn, under the same account locks,
but set-based. It locks the batch's accounts in id order, then reads (a fresh snapshot, so
what the locks' previous holders committed is seen) the idempotency records of the items'
keys, the accounts' lots in burn order and, for members, their spending limits and what they
spent in each limit's period. It then decides every item in memory, in input order: a key
used before replays or conflicts; an account's due lots expire at its first consumption;
tokens are taken in burn order (one ledger entry per lot, chained after the account's last
one), the rest recorded as overdraft when allowed. Last, one statement writes everything: the
entries, the lots, the accounts and the idempotency records. Writing per batch
rather than per item is what makes a batch cheap: a statement costs more than the arithmetic of
an item. (A batch of one costs more than ``user_credits_consume``, whose statements are
smaller: the single consume, the hottest path, keeps its own function. The differential test
holds both to the portable path, and batches to single consumes, row for row.) Its plans are
made for each call, for the batch's size and the tables' as they are.

It returns ``{"results": [...]}``, one object per item, whose ``status`` is one of:

- ``ok``: the tokens were consumed; ``account``, ``balance``, ``rows`` (the new entries,
  compact: the columns ``ROW_FIELDS``) and ``recharge_below`` (the account's auto-recharge
  threshold, or null);
- ``replay``: the key was used before for the same group and count: ``account`` and
  ``balance`` of the first consumption, and its entries: ``of`` (the index of the item of this
  call that wrote them) or ``entries`` (``to_jsonb`` rows of an earlier transaction); nothing
  written;
- ``conflict``: the key was used for another group or count (``count``), nothing written;
- ``insufficient``: not enough tokens (``available``), nothing written;
- ``limit``: the member's spending limit would be exceeded (``limit``, ``spent``), nothing
  written.

An item of an unknown holder refuses the batch: ``{"unknown_holder": index}``, nothing
written. An item the portable path must handle stops the batch before it with ``"stopped"``:
``holds`` (its account has tokens reserved by holds, whose lines are per lot; holds are rare
on a hot path) or ``no_account`` (no account yet and overdraft allowed: the portable path
creates it); what came before it is written, and the caller continues after that item.

``user_credits_expire_batch(now, holder, batch)`` does what ``expiry.expire_batch_portable``
does for one batch: lock the accounts of the next due lots in id order, then (a fresh
snapshot, under the locks) empty their due lots, lower the balances and write one ``expire``
entry per lot, set-based. It returns ``NULL`` once nothing is due, else one JSON object per
account: ``account``, ``holder``, ``group`` (key), ``group_id``, ``lots`` (ids), ``amount``,
``recharge_below`` (the auto-recharge threshold, or null) and, with a threshold,
``available`` (the balance after, less held tokens).
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

#: The columns of an entry in a result's compact ``rows``, in order; the caller knows the
#: others (the item's key, metadata and member, the account, the time).
ROW_FIELDS = ("id", "seq", "kind", "lot_id", "amount", "balance_after", "digest")


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
        "row_fields": ", ".join(f"i.{name}" for name in ROW_FIELDS),
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
               'group_id', g.id, 'lots', p.lots, 'amount', p.total,
               'recharge_below', a.auto_recharge_below,
               -- The available balance after, for an account with an auto-recharge threshold.
               'available', CASE WHEN a.auto_recharge_below IS NOT NULL THEN
                   a.balance - p.total - (SELECT coalesce(sum(l.held), 0) FROM {lot} l
                                           WHERE l.account_id = p.account_id
                                             AND l.status = {active} AND l.id <> ALL (p.lots))
               END))
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
) RETURNS jsonb LANGUAGE plpgsql
-- Plans made for each call: they see the batch's size and the tables' (a plan kept from when
-- a table was small would scan it whole once it has grown).
SET plan_cache_mode = force_custom_plan AS $fn$
DECLARE
    -- The items, in input order.
    it_holder {holder_type}[];
    it_grp bigint[];
    it_count bigint[];
    it_key text[];
    it_meta jsonb[];
    it_overdraft boolean[];
    it_member {member_type}[];
    it_account int[];       -- index of the item's account in the ac_* arrays; null: none
    it_prev int[];          -- the item before it with the same holder and key
    it_slot int[];          -- index of the member's spending limit below
    -- The request an item's key was first used for: an earlier record, or an item before it.
    rq_grp bigint[];
    rq_count bigint[];
    rq_balance bigint[];
    rq_account bigint[];
    rq_item int[];          -- that item; null: a record of an earlier transaction
    -- What each item came to.
    rs_status text[];
    rs_x bigint[];          -- available (insufficient), count (conflict), limit (limit)
    rs_y bigint[];          -- spent (limit)
    -- The batch's accounts, locked, in id order; their lots in burn order (lt_*), each
    -- account's from ac_first to ac_last.
    ac_id bigint[];
    ac_balance bigint[];
    ac_overdraft bigint[];
    ac_seq bigint[];
    ac_digest text[];       -- the digest of the account's last entry, as the batch goes
    ac_recharge bigint[];
    ac_available bigint[];
    ac_held boolean[];
    ac_first int[];
    ac_last int[];
    ac_consumed boolean[];  -- consumed from in this batch (its due lots expired first)
    lt_id bigint[];
    lt_account int[];
    lt_remaining bigint[];
    lt_due boolean[];
    lt_held boolean[];
    lt_changed boolean[];
    -- Spending limits met in the batch: tokens per period, and spent so far this period.
    sl_tokens bigint[];
    sl_spent bigint[];
    -- The rows to write, in write order.
    en_item int[] := '{{}}';
    en_account bigint[] := '{{}}';
    en_seq bigint[] := '{{}}';
    en_lot bigint[] := '{{}}';
    en_kind text[] := '{{}}';
    en_amount bigint[] := '{{}}';
    en_balance bigint[] := '{{}}';
    en_key text[] := '{{}}';
    en_meta jsonb[] := '{{}}';
    en_member {member_type}[] := '{{}}';
    en_digest text[] := '{{}}';
    rc_item int[] := '{{}}';
    v_n int;
    v_e int := 0;
    v_done int := 0;
    v_stopped text;
    v_a int;
    v_s int;
    v_p int;
    v_need bigint;
    v_take bigint;
    v_overdrawn bigint;
    v_i int;
    v_expiring boolean;
    v_kind text;
    v_lot bigint;
    v_unknown bigint;
    v_keys boolean;
    v_members boolean;
    v_results jsonb;
BEGIN
    -- The items; the batch's accounts, locked in id order (two batches over the same
    -- accounts wait for each other instead of deadlocking; a locked row is read as its last
    -- committer left it); each item's account, as its index in the ac_* arrays.
    WITH parsed AS MATERIALIZED (
        SELECT t.n, x.*
          FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(value, n),
               jsonb_to_record(t.value) AS x(holder {holder_type}, grp bigint, count bigint,
                                             key text, metadata jsonb, overdraft boolean,
                                             member {member_type})
    ), accounts AS MATERIALIZED (
        -- Looked up once per holder and group, however many items they have.
        SELECT p.holder, p.grp,
               (SELECT a.id FROM {account} a
                 WHERE a.holder_id = p.holder AND a.offer_group_id = p.grp) AS account_id,
               EXISTS (SELECT 1 FROM {holder_table} h WHERE h.{holder_pk} = p.holder) AS known
          FROM (SELECT DISTINCT holder, grp FROM parsed) p
    ), items AS (
        SELECT parsed.*, accounts.account_id, accounts.known
          FROM parsed JOIN accounts USING (holder, grp)
    ), locked AS MATERIALIZED (
        SELECT a.id, a.balance, a.overdraft, a.last_seq, a.last_digest, a.auto_recharge_below
          FROM {account} a
         WHERE a.id IN (SELECT account_id FROM accounts)
         ORDER BY a.id
           FOR UPDATE
    )
    SELECT i.*, l.*
      INTO it_holder, it_grp, it_count, it_key, it_meta, it_overdraft, it_member, it_account,
           v_unknown, v_n, v_keys, v_members,
           ac_id, ac_balance, ac_overdraft, ac_seq, ac_digest, ac_recharge
      FROM (SELECT array_agg(holder ORDER BY n), array_agg(grp ORDER BY n),
                   array_agg(count ORDER BY n), array_agg(key ORDER BY n),
                   array_agg(coalesce(metadata, '{{}}'::jsonb) ORDER BY n),
                   array_agg(coalesce(overdraft, false) ORDER BY n),
                   array_agg(member ORDER BY n), array_agg(x.idx ORDER BY n),
                   min(n - 1) FILTER (WHERE NOT known), count(*),
                   coalesce(bool_or(key IS NOT NULL), false),
                   coalesce(bool_or(member IS NOT NULL), false)
              FROM items
              LEFT JOIN (SELECT id, row_number() OVER (ORDER BY id) AS idx FROM locked) x
                     ON x.id = items.account_id) i,
           (SELECT array_agg(id ORDER BY id), array_agg(balance ORDER BY id),
                   array_agg(overdraft ORDER BY id), array_agg(last_seq ORDER BY id),
                   array_agg(last_digest ORDER BY id), array_agg(auto_recharge_below ORDER BY id)
              FROM locked) l;
    -- An item of an unknown holder refuses the whole batch: nothing is written (the caller
    -- rolls back, which releases the locks).
    IF v_unknown IS NOT NULL THEN
        RETURN jsonb_build_object('unknown_holder', v_unknown);
    END IF;
    IF v_n = 0 THEN
        RETURN jsonb_build_object('results', '[]'::jsonb);
    END IF;

    -- A new statement, so a new snapshot (what the locks' previous holders committed is
    -- seen): for each item with a key, the item before it with that key or else the key's
    -- record; the accounts' lots with tokens, in burn order.
    SELECT r.*, l.*
      INTO it_prev, rq_grp, rq_count, rq_balance, rq_account,
           lt_id, lt_account, lt_remaining, lt_due, lt_held
      FROM (SELECT array_agg(t.prev ORDER BY t.n), array_agg(r.offer_group_id ORDER BY t.n),
                   array_agg(r.count ORDER BY t.n), array_agg(r.balance_after ORDER BY t.n),
                   array_agg(r.account_id ORDER BY t.n)
              FROM (SELECT u.*, CASE WHEN u.key IS NOT NULL THEN
                               lag(u.n) OVER (PARTITION BY u.holder, u.key ORDER BY u.n)
                           END AS prev
                      FROM unnest(it_holder, it_key) WITH ORDINALITY AS u(holder, key, n)
                     WHERE v_keys) t
              LEFT JOIN LATERAL (
                    SELECT r.count, r.balance_after, r.account_id, ra.offer_group_id
                      FROM {record} r JOIN {account} ra ON ra.id = r.account_id
                     WHERE t.key IS NOT NULL AND t.prev IS NULL
                       AND r.holder_id = t.holder AND r.idempotency_key = t.key
                     LIMIT 1) r ON true) r,
           (SELECT array_agg(id ORDER BY idx, {burn_order}),
                   array_agg(idx ORDER BY idx, {burn_order}),
                   array_agg(remaining ORDER BY idx, {burn_order}),
                   array_agg(coalesce(expires <= p_now, false) ORDER BY idx, {burn_order}),
                   array_agg(held > 0 ORDER BY idx, {burn_order})
              FROM unnest(ac_id) WITH ORDINALITY AS c(account, idx)
              -- Per account, by index (OFFSET 0 keeps the subquery per account).
              CROSS JOIN LATERAL (
                    SELECT l.id, l.priority, l.expires, l.category, l.remaining, l.held
                      FROM {lot} l
                     WHERE l.account_id = c.account AND l.status = {active} AND l.remaining > 0
                    OFFSET 0) lots) l;

    IF ac_id IS NOT NULL THEN
        v_a := array_length(ac_id, 1);
        ac_available := array_fill(0::bigint, ARRAY[v_a]);
        ac_held := array_fill(false, ARRAY[v_a]);
        ac_first := array_fill(1, ARRAY[v_a]);
        ac_last := array_fill(0, ARRAY[v_a]);
        ac_consumed := array_fill(false, ARRAY[v_a]);
        lt_changed := array_fill(false, ARRAY[coalesce(array_length(lt_id, 1), 0)]);
        FOR v_i IN 1 .. coalesce(array_length(lt_id, 1), 0) LOOP
            v_a := lt_account[v_i];
            IF ac_last[v_a] = 0 THEN
                ac_first[v_a] := v_i;
            END IF;
            ac_last[v_a] := v_i;
            IF lt_held[v_i] THEN
                ac_held[v_a] := true;
            END IF;
            IF NOT lt_due[v_i] THEN
                ac_available[v_a] := ac_available[v_a] + lt_remaining[v_i];
            END IF;
        END LOOP;
    END IF;

    -- Members' spending limits: what each spent this period, under the account lock.
    IF v_members THEN
        WITH met AS (
            SELECT t.n, s.id, s.tokens, s.period, c.id AS account, s.member_id
              FROM unnest(it_holder, it_grp, it_member, it_account)
                   WITH ORDINALITY AS t(holder, grp, member, idx, n)
              JOIN unnest(ac_id) WITH ORDINALITY AS c(id, idx) ON c.idx = t.idx
              JOIN {limit} s ON s.holder_id = t.holder AND s.member_id = t.member
                            AND s.offer_group_id = t.grp
        ), slots AS (
            SELECT id, tokens, row_number() OVER (ORDER BY id) AS slot,
                   (SELECT coalesce(-sum(en.amount), 0) FROM {entry} en
                     WHERE en.account_id = l.account AND en.member_id = l.member_id
                       AND en.kind IN ({kind_consume}, {kind_overdraft})
                       AND en.created_at >= (p_period_starts ->> l.period)::timestamptz
                   ) AS spent
              FROM (SELECT DISTINCT id, tokens, period, account, member_id FROM met) l
        )
        SELECT (SELECT array_agg(tokens ORDER BY slot) FROM slots),
               (SELECT array_agg(spent ORDER BY slot) FROM slots),
               (SELECT array_agg(sl.slot ORDER BY u.n)
                  FROM generate_series(1, v_n) AS u(n)
                  LEFT JOIN met ON met.n = u.n
                  LEFT JOIN slots sl ON sl.id = met.id)
          INTO sl_tokens, sl_spent, it_slot;
    END IF;

    -- Each item in input order, as the single consume decides it, on the state in memory.
    FOR v_j IN 1 .. v_n LOOP
        IF it_key[v_j] IS NOT NULL THEN
            v_p := it_prev[v_j];
            IF v_p IS NOT NULL THEN
                IF rs_status[v_p] = 'ok' THEN
                    rq_grp[v_j] := it_grp[v_p]; rq_count[v_j] := it_count[v_p];
                    rq_balance[v_j] := rs_x[v_p]; rq_account[v_j] := ac_id[it_account[v_p]];
                    rq_item[v_j] := v_p;
                ELSE
                    rq_grp[v_j] := rq_grp[v_p]; rq_count[v_j] := rq_count[v_p];
                    rq_balance[v_j] := rq_balance[v_p]; rq_account[v_j] := rq_account[v_p];
                    rq_item[v_j] := rq_item[v_p];
                END IF;
            END IF;
            IF rq_grp[v_j] IS NOT NULL THEN
                IF rq_grp[v_j] <> it_grp[v_j] OR rq_count[v_j] <> it_count[v_j] THEN
                    rs_status[v_j] := 'conflict'; rs_x[v_j] := rq_count[v_j];
                ELSE
                    rs_status[v_j] := 'replay';
                END IF;
                v_done := v_j;
                CONTINUE;
            END IF;
        END IF;
        v_a := it_account[v_j];
        IF v_a IS NULL THEN
            IF it_overdraft[v_j] THEN
                v_stopped := 'no_account';
                EXIT;
            END IF;
            rs_status[v_j] := 'insufficient'; rs_x[v_j] := 0;
            v_done := v_j;
            CONTINUE;
        END IF;
        IF ac_held[v_a] THEN
            v_stopped := 'holds';
            EXIT;
        END IF;
        v_s := it_slot[v_j];
        IF v_s IS NOT NULL AND sl_spent[v_s] + it_count[v_j] > sl_tokens[v_s] THEN
            rs_status[v_j] := 'limit'; rs_x[v_j] := sl_tokens[v_s]; rs_y[v_j] := sl_spent[v_s];
            v_done := v_j;
            CONTINUE;
        END IF;
        IF ac_available[v_a] < it_count[v_j] AND NOT it_overdraft[v_j] THEN
            rs_status[v_j] := 'insufficient'; rs_x[v_j] := ac_available[v_a];
            v_done := v_j;
            CONTINUE;
        END IF;

        -- The item's entries, in write order: at the account's first consumption one per due
        -- lot (expired first), then takes in burn order, then what no lot covers as overdraft
        -- (allowed: checked above).
        v_need := it_count[v_j];
        v_overdrawn := 0;
        v_expiring := NOT ac_consumed[v_a];
        ac_consumed[v_a] := true;
        v_i := ac_first[v_a];
        LOOP
            IF v_expiring THEN
                WHILE v_i <= ac_last[v_a] AND (NOT lt_due[v_i] OR lt_remaining[v_i] = 0) LOOP
                    v_i := v_i + 1;
                END LOOP;
                IF v_i > ac_last[v_a] THEN
                    v_expiring := false;
                    v_i := ac_first[v_a];
                    CONTINUE;
                END IF;
                v_kind := {kind_expire};
                v_lot := lt_id[v_i];
                v_take := lt_remaining[v_i];
            ELSE
                EXIT WHEN v_need = 0;
                WHILE v_i <= ac_last[v_a] AND (lt_due[v_i] OR lt_remaining[v_i] = 0) LOOP
                    v_i := v_i + 1;
                END LOOP;
                IF v_i <= ac_last[v_a] THEN
                    v_kind := {kind_consume};
                    v_lot := lt_id[v_i];
                    v_take := least(v_need, lt_remaining[v_i]);
                ELSE
                    v_kind := {kind_overdraft};
                    v_lot := NULL;
                    v_take := v_need;
                    v_overdrawn := v_need;
                    ac_overdraft[v_a] := ac_overdraft[v_a] + v_need;
                END IF;
                v_need := v_need - v_take;
            END IF;
            IF v_lot IS NOT NULL THEN
                lt_remaining[v_i] := lt_remaining[v_i] - v_take;
                lt_changed[v_i] := true;
            END IF;
            -- The entry, chained after the account's last one (the lock holds it).
            v_e := v_e + 1;
            ac_balance[v_a] := ac_balance[v_a] - v_take;
            ac_seq[v_a] := ac_seq[v_a] + 1;
            en_item[v_e] := CASE WHEN v_expiring THEN NULL ELSE v_j END;
            en_account[v_e] := ac_id[v_a];
            en_seq[v_e] := ac_seq[v_a];
            en_lot[v_e] := v_lot;
            en_kind[v_e] := v_kind;
            en_amount[v_e] := -v_take;
            en_balance[v_e] := ac_balance[v_a];
            en_key[v_e] := CASE WHEN v_expiring THEN NULL ELSE it_key[v_j] END;
            en_meta[v_e] := CASE WHEN v_expiring THEN '{{}}'::jsonb ELSE it_meta[v_j] END;
            en_member[v_e] := CASE WHEN v_expiring THEN NULL ELSE it_member[v_j] END;
            ac_digest[v_a] := user_credits_link(ac_digest[v_a], user_credits_entry_content(
                ac_id[v_a], ac_seq[v_a], v_kind, -v_take, ac_balance[v_a], v_lot, en_key[v_e],
                p_now));
            en_digest[v_e] := ac_digest[v_a];
        END LOOP;
        ac_available[v_a] := ac_available[v_a] - (it_count[v_j] - v_overdrawn);
        IF v_s IS NOT NULL THEN
            sl_spent[v_s] := sl_spent[v_s] + it_count[v_j];
        END IF;
        rs_status[v_j] := 'ok'; rs_x[v_j] := ac_balance[v_a];
        IF it_key[v_j] IS NOT NULL THEN
            rc_item := array_append(rc_item, v_j);
        END IF;
        v_done := v_j;
    END LOOP;

    -- The writes, set-based: the entries, the lots, the accounts, the idempotency records;
    -- then each item's result with the rows written for it.
    WITH pending AS MATERIALIZED (
        -- Ids drawn here, in write order: the results need no RETURNING.
        SELECT p.*, nextval({entry_id_sequence}) AS id
          FROM (SELECT * FROM unnest(en_item, en_account, en_seq, en_lot, en_kind, en_amount,
                                     en_balance, en_key, en_meta, en_member, en_digest)
                              WITH ORDINALITY
                           AS p(item, account_id, seq, lot_id, kind, amount, balance_after,
                                idempotency_key, metadata, member_id, digest, written)
                 ORDER BY written) p
    ), inserted AS (
        INSERT INTO {entry}
            (id, account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata,
             created_at, seq, digest, member_id)
        SELECT id, account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata,
               p_now, seq, digest, member_id
          FROM pending ORDER BY written
    ), lots AS (
        UPDATE {lot} l
           SET remaining = c.remaining,
               status = CASE WHEN c.due THEN {lot_expired} ELSE l.status END
          FROM unnest(lt_id, lt_remaining, lt_due, lt_changed) AS c(id, remaining, due, changed)
         WHERE l.id = c.id AND c.changed
    ), accounts AS (
        UPDATE {account} a
           SET balance = c.balance, overdraft = c.overdraft, last_seq = c.seq,
               last_digest = c.digest
          FROM unnest(ac_id, ac_balance, ac_overdraft, ac_seq, ac_digest, ac_consumed)
                   AS c(id, balance, overdraft, seq, digest, changed)
         WHERE a.id = c.id AND c.changed
    ), records AS (
        INSERT INTO {record}
            (holder_id, account_id, idempotency_key, count, balance_after, created_at)
        SELECT it_holder[r.j], ac_id[it_account[r.j]], it_key[r.j], it_count[r.j], rs_x[r.j], p_now
          FROM unnest(rc_item) AS r(j)
    ), written AS (
        -- The rows of each item, compact: the caller knows the rest (ROW_FIELDS).
        SELECT i.item, jsonb_agg(jsonb_build_array({row_fields}) ORDER BY i.id) AS rows
          FROM pending i
         WHERE i.item IS NOT NULL
         GROUP BY i.item
    )
    SELECT coalesce(jsonb_agg(CASE
               WHEN r.status = 'ok' THEN jsonb_build_object(
                   'status', 'ok', 'account', ac_id[it_account[r.j]], 'balance', r.x,
                   'rows', w.rows, 'recharge_below', ac_recharge[it_account[r.j]])
               WHEN r.status = 'replay' AND rq_item[r.j] IS NOT NULL THEN jsonb_build_object(
                   'status', 'replay', 'account', rq_account[r.j], 'balance', rq_balance[r.j],
                   'of', rq_item[r.j] - 1)
               WHEN r.status = 'replay' THEN jsonb_build_object(
                   'status', 'replay', 'account', rq_account[r.j], 'balance', rq_balance[r.j],
                   'entries', (SELECT coalesce(jsonb_agg(to_jsonb(old) ORDER BY old.id),
                                               '[]'::jsonb)
                                 FROM {entry} old
                                WHERE old.account_id = rq_account[r.j]
                                  AND old.idempotency_key = it_key[r.j]))
               WHEN r.status = 'conflict' THEN jsonb_build_object('status', 'conflict',
                                                                  'count', r.x)
               WHEN r.status = 'insufficient' THEN jsonb_build_object('status', 'insufficient',
                                                                      'available', r.x)
               ELSE jsonb_build_object('status', 'limit', 'limit', r.x, 'spent', r.y)
               END ORDER BY r.j), '[]'::jsonb)
      INTO v_results
      FROM (SELECT j, rs_status[j] AS status, rs_x[j] AS x, rs_y[j] AS y
              FROM generate_series(1, v_done) AS j) r
      LEFT JOIN written w ON w.item = r.j AND r.status = 'ok';
    IF v_stopped IS NOT NULL THEN
        -- Left to the portable path, and the items after it to a next call, in order.
        RETURN jsonb_build_object('results', v_results, 'stopped', v_stopped);
    END IF;
    RETURN jsonb_build_object('results', v_results);
END
$fn$;
"""


def chain_functions_sql() -> str:
    """``user_credits_entry_content`` and ``user_credits_link``: ``chain.content`` and
    ``chain.link`` in SQL; ``user_credits_chain``: ``link`` as a running window aggregate.

    ``content`` and ``link`` are STABLE, as their bodies are (``extract`` from a timestamptz and
    ``convert_to`` are): PostgreSQL inlines a SQL function only if it is declared no less
    volatile than its body, and run uninlined each call costs about four times as much. The
    aggregate's step is PL/pgSQL, whose expressions inline them; a SQL step is run by the
    SQL-function executor per row."""
    params = ", ".join(f"{name} {SQL_TYPES[how]}" for name, how in chain.CHAINED_FIELDS)
    return f"""
CREATE OR REPLACE FUNCTION user_credits_entry_content({params}) RETURNS text
LANGUAGE sql STABLE AS $fn$ SELECT {chain.content_sql(lambda name: name)} $fn$;
CREATE OR REPLACE FUNCTION user_credits_link(previous text, content text) RETURNS text
LANGUAGE sql STABLE AS $fn$
    SELECT encode(sha256(convert_to(previous || '|' || content, 'UTF8')), 'hex')
$fn$;
CREATE OR REPLACE FUNCTION user_credits_chain_step(state text, previous text, content text)
RETURNS text LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    RETURN user_credits_link(coalesce(state, previous), content);
END
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
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [LedgerEntry._meta.db_table])
        entry_id_sequence = cursor.fetchone()[0]
    return CONSUME_MANY_TEMPLATE.format(
        **_names(),
        **_key_types(connection),
        holder_table=quote(target.model._meta.db_table),
        holder_pk=quote(target.column),
        entry_id_sequence=literal(entry_id_sequence) + "::regclass",
    )


def expire_batch_function_sql(connection) -> str:
    return EXPIRE_BATCH_TEMPLATE.format(**_names(), **_key_types(connection))


#: Signatures the functions had before holders (``user_id`` columns), dropped by ``install``.
OBSOLETE_FUNCTIONS_SQL = """
DROP FUNCTION IF EXISTS user_credits_consume(
    bigint, bigint, bigint, text, jsonb, timestamptz, boolean);
DROP FUNCTION IF EXISTS user_credits_expire_batch(timestamptz, bigint, int);
"""
