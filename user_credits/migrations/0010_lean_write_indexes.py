"""Fewer indexes and checks to write per ledger entry and idempotency record.

The ledger's ``account`` and the records' ``holder`` lose their own indexes: the
``(account, seq)``, ``(account, created_at, id)`` and ``(holder, idempotency_key)`` indexes lead
with them and serve the same lookups. The records' ``holder`` loses its database constraint
too: it is the holder of the record's account, which the account's constraints already keep.
The ledger's ``member`` index covers only entries that have a member (most have none); it is
built ``CONCURRENTLY`` on PostgreSQL, as ``0007_ledger_indexes`` is, so that a live ledger of
millions of rows keeps taking writes while it is built, and before the full index is dropped,
so that a member's entries are never without one. Dropping an index or a constraint scans
nothing but takes the table's exclusive lock for a moment (after the reads under way finish);
migrating back rebuilds the dropped indexes without ``CONCURRENTLY``.

SQLite alters a column by copying its table, which keeps only the indexes Django knows of: the
ledger's kind index, added by ``0007_ledger_indexes`` in raw SQL, is made again after the copy
(either way; a no-op where it survived).
"""

import importlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from user_credits.holders import holder_model_name

from ._indexes import create_index, drop_index

HOLDER = holder_model_name()
MEMBER_INDEX = "entry_member_idx"
kind_index = importlib.import_module("user_credits.migrations.0007_ledger_indexes")


def create_member_index(apps, schema_editor):
    create_index(
        schema_editor,
        MEMBER_INDEX,
        "ON user_credits_ledgerentry (member_id) WHERE member_id IS NOT NULL",
    )


def drop_member_index(apps, schema_editor):
    drop_index(schema_editor, MEMBER_INDEX)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("user_credits", "0009_autorecharge"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(HOLDER),
    ]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, kind_index.create),
        migrations.AlterField(
            model_name="consumptionrecord",
            name="holder",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=HOLDER,
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="entries",
                to="user_credits.creditaccount",
                verbose_name="account",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="ledgerentry",
                    index=models.Index(
                        condition=models.Q(("member__isnull", False)),
                        fields=["member"],
                        name=MEMBER_INDEX,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(create_member_index, drop_member_index)],
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="member",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="member",
            ),
        ),
        migrations.RunPython(kind_index.create, migrations.RunPython.noop),
    ]
