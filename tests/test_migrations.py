from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from user_credits import models, services


@pytest.fixture(autouse=True)
def _needs_migrations(request):
    if request.config.getoption("nomigrations"):
        pytest.skip("migrations are off (--nomigrations); CI runs these with --migrations")


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "user_credits", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_migrations_are_named():
    executor = MigrationExecutor(connection)
    names = [name for app, name in executor.loader.disk_migrations if app == "user_credits"]
    assert names and all("auto_" not in name for name in names)


@pytest.mark.django_db
def test_app_tables_exist():
    tables = set(connection.introspection.table_names())
    for model in ("offer", "order", "creditaccount", "creditlot", "ledgerentry"):
        assert f"user_credits_{model}" in tables


@pytest.mark.django_db
def test_ledger_kind_index_exists():
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, "user_credits_ledgerentry")
    assert indexes["entry_kind_time_idx"]["columns"] == ["kind", "created_at", "id"]


MONEY_MIGRATION = "money_three_decimals_offer_prices"  # found by name: it may be renumbered

#: (price, currency) of offers saved at two decimals, up to the old column's largest value;
#: a half yen and a two-decimal KWD price saved before amounts were checked are kept as is.
OLD_PRICES = [
    (Decimal("0"), "usd"),
    (Decimal("0.01"), "usd"),
    (Decimal("12.50"), "eur"),
    (Decimal("9999999999.99"), "usd"),
    (Decimal("100.50"), "jpy"),
    (Decimal("1.13"), "kwd"),
]
#: (unit_price, quantity, total, amount_refunded) of orders, each at the old columns' limits.
OLD_ORDERS = [
    (Decimal("12.50"), 3, Decimal("37.50"), Decimal("12.49")),
    (Decimal("9999999999.99"), 100, Decimal("999999999999.00"), Decimal("999999999998.99")),
    (Decimal("0.01"), 1, Decimal("0.01"), Decimal("0")),
    (Decimal("100.50"), 2, Decimal("201.00"), Decimal("0.50")),
]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_money_migration_keeps_every_amount():
    """Rows written just before the money migration (two decimals) read back identical once it
    widened every money column to three decimals: nothing rounded, nothing lost."""
    graph = MigrationExecutor(connection).loader.graph
    (money,) = [
        key for key in graph.nodes if key[0] == "user_credits" and MONEY_MIGRATION in key[1]
    ]
    before = [dep for dep in graph.nodes[money].dependencies if dep[0] == "user_credits"]
    latest = graph.leaf_nodes("user_credits")
    old = _migrate(before)
    try:
        group = old.get_model("user_credits", "OfferGroup").objects.create(key="g", name="g")
        user = old.get_model("auth", "User").objects.create(username="legacy")
        Offer = old.get_model("user_credits", "Offer")
        Order = old.get_model("user_credits", "Order")
        offers = [
            Offer.objects.create(
                name=f"o{i}", offer_group=group, price=price, currency=currency, cycle="once"
            )
            for i, (price, currency) in enumerate(OLD_PRICES)
        ]
        for unit_price, quantity, total, refunded in OLD_ORDERS:
            Order.objects.create(
                user=user,
                offer=offers[0],
                status="partial" if refunded else "paid",
                name="legacy",
                offer_group=group,
                cycle="once",
                unit_price=unit_price,
                quantity=quantity,
                total=total,
                amount_refunded=refunded,
                currency="usd",
            )
        assert not {f.name for f in Offer._meta.get_fields()} & {"prices"}
    finally:
        _migrate(latest)  # the schema every other test expects

    assert sorted(models.Offer.objects.values_list("price", "currency")) == sorted(OLD_PRICES)
    assert sorted(
        models.Order.objects.values_list("unit_price", "quantity", "total", "amount_refunded")
    ) == sorted(OLD_ORDERS)
    column = models.Order._meta.get_field("total")
    assert (column.max_digits, column.decimal_places) == (15, 3)
    # The new table is there and takes three decimals.
    offer = models.Offer.objects.get(currency="kwd")
    models.OfferPrice.objects.create(offer=offer, currency="bhd", price=Decimal("9999999999.125"))
    assert offer.price_in("bhd") == Decimal("9999999999.125")


CHAIN_MIGRATION = "ledger_chain"


@pytest.mark.django_db(transaction=True)
def test_chain_migration_seals_every_existing_entry():
    """Entries written before the ledger chain existed get their seq (per account, in write
    order) and digest; every balance and ledger row is kept, and the result verifies."""
    graph = MigrationExecutor(connection).loader.graph
    (sealing,) = [
        key for key in graph.nodes if key[0] == "user_credits" and CHAIN_MIGRATION in key[1]
    ]
    before = [dep for dep in graph.nodes[sealing].dependencies if dep[0] == "user_credits"]
    latest = graph.leaf_nodes("user_credits")
    old = _migrate(before)
    try:
        user = old.get_model("auth", "User").objects.create(username="legacy")
        Group = old.get_model("user_credits", "OfferGroup")
        Account = old.get_model("user_credits", "CreditAccount")
        Lot = old.get_model("user_credits", "CreditLot")
        Entry = old.get_model("user_credits", "LedgerEntry")
        now = timezone.now()
        for key, amounts in (("a", [50, -3, -7, -1]), ("b", [5]), ("c", [])):
            group = Group.objects.create(key=key, name=key)
            account = Account.objects.create(user=user, offer_group=group, balance=sum(amounts))
            if not amounts:
                continue
            lot = Lot.objects.create(
                account=account, granted=amounts[0], remaining=sum(amounts), starts=now
            )
            balance = 0
            for i, amount in enumerate(amounts):
                balance += amount
                Entry.objects.create(
                    account=account,
                    lot=lot,
                    kind="grant" if amount > 0 else "consume",
                    amount=amount,
                    balance_after=balance,
                    idempotency_key=None if amount > 0 else f"k{key}{i}",
                    created_at=now + timedelta(seconds=i),
                )
        rows = sorted(
            Entry.objects.values_list(
                "id", "account_id", "kind", "amount", "balance_after", "idempotency_key"
            )
        )
        balances = sorted(Account.objects.values_list("id", "balance"))
    finally:
        _migrate(latest)

    assert (
        sorted(
            models.LedgerEntry.objects.values_list(
                "id", "account_id", "kind", "amount", "balance_after", "idempotency_key"
            )
        )
        == rows
    )
    assert sorted(models.CreditAccount.objects.values_list("id", "balance")) == balances
    by_account = {}
    for account_id, seq in models.LedgerEntry.objects.order_by("id").values_list(
        "account_id", "seq"
    ):
        by_account.setdefault(account_id, []).append(seq)
    assert sorted(len(s) for s in by_account.values()) == [1, 4]
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_account.values())
    assert services.verify_ledger().problems == []
    # New writes continue the migrated chains.
    services.consume(models.CreditAccount.objects.get(offer_group__key="a").holder_id, "a", 2)
    assert services.verify_ledger().problems == []


HOLDERS_MIGRATION = "holders"


@pytest.mark.django_db(transaction=True)
def test_holders_migration_keeps_every_row():
    """User-owned accounts, lots, entries, orders, holds and consumption records written
    before holders existed belong to the same users after it, as holders: every balance and
    ledger row is kept, orders are placed by their owner, and the ledger verifies."""
    graph = MigrationExecutor(connection).loader.graph
    (holders,) = [
        key
        for key in graph.nodes
        if key[0] == "user_credits" and key[1].endswith(HOLDERS_MIGRATION)
    ]
    before = [dep for dep in graph.nodes[holders].dependencies if dep[0] == "user_credits"]
    latest = graph.leaf_nodes("user_credits")
    # Entries are written through the services, so that they carry a valid chain.
    from django.contrib.auth import get_user_model

    from tests.factories import make_group, make_offer

    group = make_group("g")
    make_group("other")
    users = [get_user_model().objects.create(username=f"legacy{i}") for i in range(3)]
    for i, user in enumerate(users):
        services.grant(user, "g", 40 + i)
        services.consume(user, "g", 3 + i, idempotency_key=f"k{i}")
        services.hold(user, "g", 2, idempotency_key=f"h{i}")
        services.create_order(user, make_offer(name=f"o{i}", group=group))
    services.grant(users[0], "other", 7)
    old = _migrate(before)
    try:
        Account = old.get_model("user_credits", "CreditAccount")
        Entry = old.get_model("user_credits", "LedgerEntry")
        Order = old.get_model("user_credits", "Order")
        Hold = old.get_model("user_credits", "Hold")
        Record = old.get_model("user_credits", "ConsumptionRecord")
        Lot = old.get_model("user_credits", "CreditLot")
        accounts = sorted(Account.objects.values_list("id", "user_id", "offer_group_id", "balance"))
        entries = sorted(
            Entry.objects.values_list(
                "id", "account_id", "lot_id", "kind", "amount", "balance_after", "seq", "digest"
            )
        )
        orders = sorted(Order.objects.values_list("id", "user_id", "status", "total"))
        holds = sorted(Hold.objects.values_list("id", "user_id", "account_id", "count"))
        records = sorted(Record.objects.values_list("id", "user_id", "account_id", "count"))
        lots = sorted(Lot.objects.values_list("id", "account_id", "remaining", "held"))
    finally:
        _migrate(latest)

    assert len(accounts) == 4 and len(entries) == 7 and len(holds) == 3 and len(records) == 3
    assert (
        sorted(
            models.CreditAccount.objects.values_list("id", "holder_id", "offer_group_id", "balance")
        )
        == accounts
    )
    assert (
        sorted(
            models.LedgerEntry.objects.values_list(
                "id", "account_id", "lot_id", "kind", "amount", "balance_after", "seq", "digest"
            )
        )
        == entries
    )
    assert sorted(models.Order.objects.values_list("id", "holder_id", "status", "total")) == orders
    assert all(o.placed_by_id == o.holder_id for o in models.Order.objects.all())
    assert (
        sorted(models.Hold.objects.values_list("id", "holder_id", "account_id", "count")) == holds
    )
    assert (
        sorted(
            models.ConsumptionRecord.objects.values_list("id", "holder_id", "account_id", "count")
        )
        == records
    )
    assert sorted(
        models.CreditLot.objects.values_list("id", "account_id", "remaining", "held")
    ) == (lots)
    assert not models.LedgerEntry.objects.filter(member__isnull=False).exists()
    assert services.verify_ledger().problems == []
    for i, user in enumerate(users):
        assert services.get_balance(user, "g") == 40 + i - (3 + i) - 2
        # The idempotency records still answer replays after the rename.
        assert services.consume(user, "g", 3 + i, idempotency_key=f"k{i}").replayed
    assert services.verify_ledger().problems == []


INDEX_MIGRATION = "lean_write_indexes"
ENTRY_FIELDS = ("id", "account_id", "lot_id", "kind", "amount", "seq", "digest", "member_id")


def _ledger_indexes():
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, "user_credits_ledgerentry")
    return {
        name: tuple(info["columns"])
        for name, info in found.items()
        if info["index"] and not info["unique"] and not info["primary_key"]
    }


def _record_foreign_keys():
    """The columns of the consumption records' foreign key constraints."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, "user_credits_consumptionrecord")
    return sorted(tuple(info["columns"]) for info in found.values() if info["foreign_key"])


@pytest.mark.django_db(transaction=True)
def test_index_migration_keeps_every_entry_and_index_both_ways(holder, user):
    """Dropping the ledger's redundant indexes (and the records' holder constraint) keeps every
    row (SQLite copies the tables) and the raw-SQL kind index, migrating forward and back; the
    member index covers set members."""
    graph = MigrationExecutor(connection).loader.graph
    (lean,) = [key for key in graph.nodes if key[0] == "user_credits" and INDEX_MIGRATION in key[1]]
    before = [dep for dep in graph.nodes[lean].dependencies if dep[0] == "user_credits"]
    latest = graph.leaf_nodes("user_credits")
    group = models.OfferGroup.objects.create(key="lean", name="lean")
    services.grant(holder, group, 50)
    services.consume(holder, group, 3, idempotency_key="k1")
    services.consume(holder, group, 4, idempotency_key="k2", member=user)
    rows = sorted(models.LedgerEntry.objects.values_list(*ENTRY_FIELDS))
    assert [r[-1] for r in rows].count(user.pk) == 1
    records = sorted(models.ConsumptionRecord.objects.values_list("holder_id", "idempotency_key"))
    assert ("account_id",) not in _ledger_indexes().values()
    assert _ledger_indexes()["entry_member_idx"] == ("member_id",)
    assert _record_foreign_keys() == [("account_id",)]
    try:
        _migrate(before)
        assert _record_foreign_keys() == [("account_id",), ("holder_id",)]
        indexes = _ledger_indexes()
        assert ("account_id",) in indexes.values() and ("member_id",) in indexes.values()
        assert "entry_member_idx" not in indexes
        assert indexes["entry_kind_time_idx"] == ("kind", "created_at", "id")
    finally:
        _migrate(latest)
    indexes = _ledger_indexes()
    assert indexes["entry_kind_time_idx"] == ("kind", "created_at", "id")
    assert ("account_id",) not in indexes.values()
    assert _record_foreign_keys() == [("account_id",)]
    assert sorted(models.LedgerEntry.objects.values_list(*ENTRY_FIELDS)) == rows
    assert (
        sorted(models.ConsumptionRecord.objects.values_list("holder_id", "idempotency_key"))
        == records
    )
    assert services.verify_ledger().problems == []
