"""Seal every account's ledger in a hash chain (``user_credits.chain``).

Existing entries get their ``seq`` (1, 2, 3… per account, in id order) and ``digest``, and each
account the end of its chain, so that ``user_credits_verify`` checks old and new entries alike.
"""

from django.db import migrations, models

from user_credits import chain

BATCH = 2000


def seal_existing_entries(apps, schema_editor):
    Account = apps.get_model("user_credits", "CreditAccount")
    Entry = apps.get_model("user_credits", "LedgerEntry")
    for account in Account.objects.order_by("pk").iterator(chunk_size=BATCH):
        seq, digest, changed = 0, chain.GENESIS, []
        for entry in (
            Entry.objects.filter(account_id=account.pk).order_by("pk").iterator(chunk_size=BATCH)
        ):
            seq += 1
            entry.seq = seq
            entry.digest = digest = chain.link(digest, entry)
            changed.append(entry)
            if len(changed) == BATCH:
                Entry.objects.bulk_update(changed, ["seq", "digest"])
                changed = []
        Entry.objects.bulk_update(changed, ["seq", "digest"])
        Account.objects.filter(pk=account.pk).update(last_seq=seq, last_digest=digest)


class Migration(migrations.Migration):
    dependencies = [
        ("user_credits", "0002_hold_capture_balance_entry_kinds"),
    ]

    operations = [
        migrations.AddField(
            model_name="creditaccount",
            name="last_digest",
            field=models.CharField(blank=True, default="", editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="creditaccount",
            name="last_seq",
            field=models.BigIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="digest",
            field=models.CharField(blank=True, default="", editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="seq",
            field=models.BigIntegerField(editable=False, null=True, verbose_name="sequence"),
        ),
        migrations.RunPython(seal_existing_entries, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="ledgerentry",
            name="seq",
            field=models.BigIntegerField(editable=False, verbose_name="sequence"),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.UniqueConstraint(
                fields=("account", "seq"), name="entry_account_seq_unique"
            ),
        ),
    ]
