"""Big ledgers: reads that must not grow with the ledger's size.

    DATABASE_URL=postgres://… .venv/bin/python bench/ledger.py [ENTRIES]

Generates ENTRIES ledger entries (default 10,000,000) set-based, over ENTRIES / 100 accounts
(two groups per user); one heavy user owns a tenth of them (two accounts of a year of calls
each), the others share the rest evenly. Then measures, each against its reference in the same
run:

- ``ledger/`` (the API, cursor pagination): a page deep in the heavy user's history against
  page 1 (goal: within 2×); and, as the former page-number pagination did, both with a count
  and an offset;
- ``get_balance(at=)`` in the middle of the history against ``get_balance`` (goal: within 2×);
- the admin's ledger list with its estimated count against an exact ``COUNT(*)``.

and prints the EXPLAIN (ANALYZE) plan of each query. ``USER_CREDITS_BENCH_SMOKE=1`` runs it
with 2,000 entries.
"""

import base64
import statistics
import time
from urllib.parse import urlencode

import common

ENTRIES = common.size(10_000_000, 2_000)
PER_ACCOUNT = 100  # entries per ordinary account: 10,000,000 over 100,000 accounts
HEAVY_SHARE = 0.1
REPEAT = 5 if common.smoke() else 30
ADMIN_REPEAT = 2 if common.smoke() else 5

GENERATE_SQL = """
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,
                       is_staff, is_active, date_joined)
SELECT '', false, 'ledger' || g, '', '', '', false, true, now()
  FROM generate_series(1, %(users)s) g;

INSERT INTO user_credits_creditaccount (holder_id, offer_group_id, balance, overdraft, last_seq,
                                        last_digest, created_at)
SELECT u.id, g.id, 0, 0, 0, '', now()
  FROM auth_user u CROSS JOIN user_credits_offergroup g
 WHERE u.username LIKE 'ledger%%' AND g.key IN ('api', 'storage');

-- One lot per account, granted enough for its history; n = the account's entry count.
CREATE TEMP TABLE sizes AS
SELECT a.id AS account_id,
       CASE WHEN u.username = 'ledger1' THEN %(heavy)s ELSE %(ordinary)s END AS n,
       random() AS phase
  FROM user_credits_creditaccount a JOIN auth_user u ON u.id = a.holder_id
 WHERE u.username LIKE 'ledger%%';

INSERT INTO user_credits_creditlot (account_id, granted, remaining, held, starts, expires,
                                    category, priority, status, reason, created_at)
SELECT account_id, n + 1000, 1000 + 1, 0, now() - interval '366 days', NULL, 'paid', 50,
       'active', '', now() - interval '366 days'
  FROM sizes;

-- Reads are measured here, not the chain: entries are numbered, their digests left empty.
UPDATE user_credits_creditaccount a SET balance = 1001, last_seq = s.n
  FROM sizes s WHERE s.account_id = a.id;

-- A grant, then n - 1 consumptions of one token, spread over a year: entry i at a random
-- instant of the account's i-th slot, the slots of each account shifted by a random phase,
-- so that accounts interleave evenly and each account's entries stay in order.
INSERT INTO user_credits_ledgerentry
    (account_id, lot_id, kind, amount, balance_after, idempotency_key, metadata, created_at, seq,
     digest)
SELECT s.account_id, l.id,
       CASE WHEN i = 0 THEN 'grant' ELSE 'consume' END,
       CASE WHEN i = 0 THEN l.granted ELSE -1 END,
       l.granted - i, NULL, '{}',
       now() - interval '365 days' + (s.phase + i + 0.9 * random()) * (interval '360 days' / s.n),
       i + 1, ''
  FROM sizes s JOIN user_credits_creditlot l ON l.account_id = s.account_id
 CROSS JOIN LATERAL generate_series(0, s.n - 1) i
"""

SECONDARY_INDEXES_SQL = """
SELECT indexname, indexdef FROM pg_indexes
 WHERE tablename = 'user_credits_ledgerentry' AND indexname NOT LIKE '%%_pkey'
   AND indexname NOT IN (SELECT conname FROM pg_constraint)  -- a constraint's index stays
"""


def add_migration_indexes():
    """The indexes that migrations add with raw SQL (the benchmark's tables come from the
    models, as the test suite's do)."""
    import importlib

    from django.db import connection

    migration = importlib.import_module("user_credits.migrations.0007_ledger_indexes")
    with connection.schema_editor(atomic=False) as editor:
        migration.create(None, editor)


def generate():
    """Fill the ledger set-based, secondary indexes dropped meanwhile and rebuilt after."""
    users = max(2, ENTRIES // PER_ACCOUNT // 2)  # two accounts per user
    heavy = int(ENTRIES * HEAVY_SHARE) // 2  # per heavy account
    ordinary = max(2, (ENTRIES - 2 * heavy) // (2 * (users - 1)))
    with common.raw_connection() as raw:
        indexes = raw.execute(SECONDARY_INDEXES_SQL).fetchall()
        for name, _ in indexes:
            raw.execute(f'DROP INDEX "{name}"')
        try:  # foreign keys are right by construction; skip their per-row checks if allowed
            raw.execute("SET session_replication_role = replica")
        except Exception:  # not a superuser: the checks run, more slowly
            pass
        params = {"users": users, "heavy": heavy, "ordinary": ordinary}
        for statement in GENERATE_SQL.split(";\n\n"):
            raw.execute(statement, params)
        raw.execute("RESET session_replication_role")
        for _, definition in indexes:
            raw.execute(definition)
        raw.execute("VACUUM ANALYZE")
        total = raw.execute("SELECT count(*) FROM user_credits_ledgerentry").fetchone()[0]
        accounts = raw.execute("SELECT count(*) FROM user_credits_creditaccount").fetchone()[0]
    return total, accounts


def best_ms(fn, repeat=REPEAT):
    """Median of ``repeat`` calls after a warm one, in milliseconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def last_queries(fn):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        fn()
    return [q["sql"] for q in captured]


def explain(raw, title, sql):
    plan = raw.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql).fetchall()
    print(f"\n-- {title}\n{sql}")
    for (line,) in plan:
        print("   " + line)


def cursor_for(position):
    """The ``cursor`` query value DRF's CursorPagination gives for a position."""
    return base64.b64encode(urlencode({"p": position}).encode()).decode()


def main():
    state = common.setup()
    try:
        run()
    finally:
        common.teardown(state)


def run():
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.core.paginator import Paginator
    from django.test import Client
    from django.test.utils import override_settings
    from rest_framework.pagination import PageNumberPagination
    from rest_framework.test import APIRequestFactory, force_authenticate

    from tests.factories import make_group
    from user_credits import services
    from user_credits.api.views import LedgerViewSet
    from user_credits.models import LedgerEntry

    make_group("api")
    make_group("storage")
    add_migration_indexes()
    start = time.perf_counter()
    total, accounts = generate()
    print(
        f"generated {total:,} ledger entries over {accounts:,} accounts set-based in "
        f"{time.perf_counter() - start:.0f} s ({common.machine()})"
    )
    User = get_user_model()
    heavy = User.objects.get(username="ledger1")
    ordinary = User.objects.get(username="ledger2")
    raw = common.raw_connection()

    # --- ledger/ --------------------------------------------------------------------------
    factory = APIRequestFactory()

    class PageNumbers(PageNumberPagination):  # what ledger/ paginated with before
        page_size = 50

    def page(user, view_class=LedgerViewSet, **query):
        view = view_class.as_view({"get": "list"})

        def get():
            request = factory.get("/api/credits/ledger/", query)
            force_authenticate(request, user)
            response = view(request)
            response.render()
            assert response.status_code == 200, response.data
            assert response.data["results"], query
            return response

        return get

    history = LedgerEntry.objects.filter(account__holder=heavy).order_by("-created_at", "-id")
    depth = int(history.count() * 0.9)
    deep = history.values_list("created_at", flat=True)[depth]
    deep_cursor = cursor_for(str(deep))

    class Numbered(LedgerViewSet):
        pagination_class = PageNumbers

    api = {
        "cursor, page 1": page(heavy),
        "cursor, deep (90% into history)": page(heavy, cursor=deep_cursor),
        "cursor, ordinary user, page 1": page(ordinary),
        "page number, page 1 (before)": page(heavy, Numbered),
        "page number, deep (before)": page(heavy, Numbered, page=depth // 50 + 1),
    }
    api_ms = {name: best_ms(fn) for name, fn in api.items()}
    first = api_ms["cursor, page 1"]
    common.table(
        f"ledger/ of a user with {depth * 10 // 9:,} entries (2 accounts); ms, median of {REPEAT}",
        ("request", "ms", "× cursor page 1"),
        [(name, f"{ms:.1f}", f"{ms / first:.2f}") for name, ms in api_ms.items()],
    )
    deep_ratio = api_ms["cursor, deep (90% into history)"] / first
    print(f"ledger/ cursor pages, deep/page 1: {deep_ratio:.2f} (goal ≤ 2)")

    # --- get_balance(at=) -----------------------------------------------------------------
    middle = history.values_list("created_at", flat=True)[depth // 2]
    balances = {
        "get_balance, heavy user": lambda: services.get_balance(heavy, "api"),
        "get_balance(at=middle), heavy user": lambda: services.get_balance(heavy, "api", at=middle),
        "get_balance, ordinary user": lambda: services.get_balance(ordinary, "api"),
        "get_balance(at=middle), ordinary user": lambda: services.get_balance(
            ordinary, "api", at=middle
        ),
    }
    balance_ms = {name: best_ms(fn) for name, fn in balances.items()}
    rows = []
    for who in ("heavy user", "ordinary user"):
        now_ms = balance_ms[f"get_balance, {who}"]
        at_ms = balance_ms[f"get_balance(at=middle), {who}"]
        rows.append((who, f"{now_ms:.2f}", f"{at_ms:.2f}", f"{at_ms / now_ms:.2f}"))
    common.table(
        f"get_balance, ms (median of {REPEAT})",
        ("account", "get_balance", "get_balance(at=)", "at=/now"),
        rows,
    )

    # --- the admin's ledger list ----------------------------------------------------------
    staff = User.objects.create_superuser("ledger-admin", "", "pw")
    client = Client()
    client.force_login(staff)
    url = "/admin/user_credits/ledgerentry/"
    entry_admin = admin.site._registry[LedgerEntry]

    def changelist(query=""):
        def get():
            response = client.get(url + query)
            assert response.status_code == 200
            return response

        return get

    admin_rows = []
    reference = None
    for name, paginator, full_count in (
        ("exact COUNT(*) (Django's default)", Paginator, True),
        ("estimated count", entry_admin.paginator, False),
    ):
        saved = (entry_admin.paginator, entry_admin.show_full_result_count)
        entry_admin.paginator, entry_admin.show_full_result_count = paginator, full_count
        try:
            with override_settings(DEBUG=False):
                page1 = best_ms(changelist(), ADMIN_REPEAT)
                filtered = best_ms(changelist("?kind__exact=grant"), ADMIN_REPEAT)
                user_page = best_ms(changelist(f"?q={heavy.username}"), ADMIN_REPEAT)
        finally:
            entry_admin.paginator, entry_admin.show_full_result_count = saved
        reference = reference or page1
        admin_rows.append(
            (
                name,
                f"{page1:.1f}",
                f"{filtered:.1f}",
                f"{user_page:.1f}",
                f"{page1 / reference:.2f}",
            )
        )
    common.table(
        f"admin ledger list, ms (median of {ADMIN_REPEAT})",
        ("count", "page 1", "kind = grant", "the heavy user", "estimated/exact"),
        admin_rows,
    )

    # --- plans ----------------------------------------------------------------------------
    print("\nPlans (EXPLAIN ANALYZE, BUFFERS) of the queries above:")
    plans = [
        ("ledger/ page 1 (heavy user)", api["cursor, page 1"]),
        ("ledger/ deep page (heavy user)", api["cursor, deep (90% into history)"]),
        ("ledger/ page 1 (ordinary user)", api["cursor, ordinary user, page 1"]),
        ("get_balance (heavy user)", balances["get_balance, heavy user"]),
        ("get_balance(at=) (heavy user)", balances["get_balance(at=middle), heavy user"]),
        ("admin ledger list, page 1", changelist()),
        ("admin ledger list, kind = grant", changelist("?kind__exact=grant")),
        ("admin ledger list, the heavy user", changelist(f"?q={heavy.username}")),
    ]
    for title, fn in plans:
        for sql in last_queries(fn):
            if sql.lstrip("(").startswith("SELECT") and "user_credits_" in sql:
                explain(raw, title, sql)
    raw.close()


if __name__ == "__main__":
    main()
