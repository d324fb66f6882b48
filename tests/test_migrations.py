import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


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
