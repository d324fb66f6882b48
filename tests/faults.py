"""Fault injection: make the ledger insert fail after the first writes of an operation.

On PostgreSQL the fast paths write inside the database, so a trigger raises there; elsewhere
the ORM's bulk insert raises. Either way the operation must leave the database as it was.
"""

from contextlib import contextmanager
from unittest import mock

from django.db import DatabaseError, connection

from user_credits.models import LedgerEntry


@contextmanager
def failing_ledger_insert(kind, *, from_account=None):
    """Fail inserts of ``kind`` entries (only for accounts with id ≥ ``from_account``)."""
    if connection.vendor != "postgresql":
        real = LedgerEntry.objects.bulk_create

        def bulk_create(objs, *args, **kwargs):
            objs = list(objs)
            if any(
                o.kind == kind and (from_account is None or o.account_id >= from_account)
                for o in objs
            ):
                raise RuntimeError("injected fault")
            return real(objs, *args, **kwargs)

        with mock.patch.object(LedgerEntry.objects, "bulk_create", bulk_create):
            yield RuntimeError
        return
    condition = f"NEW.kind = '{kind}'"
    if from_account is not None:
        condition += f" AND NEW.account_id >= {int(from_account)}"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION uc_test_fault() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'injected fault'; END $$;"
            "CREATE TRIGGER uc_test_fault BEFORE INSERT ON user_credits_ledgerentry "
            f"FOR EACH ROW WHEN ({condition}) EXECUTE FUNCTION uc_test_fault();"
        )
    try:
        yield DatabaseError
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER uc_test_fault ON user_credits_ledgerentry;"
                "DROP FUNCTION uc_test_fault();"
            )
