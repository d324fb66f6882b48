"""An index for the ledger's rare kinds, newest first (the admin's kind filter, 10M rows).

Raw SQL rather than ``AddIndex``: built ``CONCURRENTLY`` on PostgreSQL, so that adding it to a
live ledger of millions of rows does not block writes.
"""

from django.db import migrations

from ._indexes import create_index, drop_index

INDEX = "entry_kind_time_idx"


def create(apps, schema_editor):
    create_index(schema_editor, INDEX, "ON user_credits_ledgerentry (kind, created_at, id)")


def drop(apps, schema_editor):
    drop_index(schema_editor, INDEX)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("user_credits", "0006_holders"),
    ]

    operations = [migrations.RunPython(create, drop)]
