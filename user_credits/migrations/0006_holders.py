"""Holders: the owner of accounts, orders, holds and consumption records is
``settings.USER_CREDITS_HOLDER_MODEL`` (default: the user model).

The ``user`` foreign keys are renamed ``holder`` (the column is renamed; every row keeps its
value), then pointed at the holder model: with the default setting only the column name
changes. Orders gain ``placed_by`` (filled with the holder, who placed them), ledger entries
and holds ``member``, and spending limits get their table.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from user_credits.holders import holder_model_name

HOLDER = holder_model_name()


def placed_by_holder(apps, schema_editor):
    """Orders placed before holders existed were placed by their owner, a user."""
    if HOLDER.lower() != settings.AUTH_USER_MODEL.lower():
        return
    Order = apps.get_model("user_credits", "Order")
    Order.objects.filter(placed_by__isnull=True).update(placed_by=models.F("holder"))


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(HOLDER),
        ("user_credits", "0005_subscriptions"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="creditaccount", name="account_user_group_unique"),
        migrations.RemoveConstraint(
            model_name="consumptionrecord", name="consumption_user_key_unique"
        ),
        migrations.RemoveConstraint(model_name="hold", name="hold_user_key_unique"),
        migrations.RemoveIndex(model_name="order", name="order_user_group_status_idx"),
        migrations.RenameField(model_name="creditaccount", old_name="user", new_name="holder"),
        migrations.RenameField(model_name="consumptionrecord", old_name="user", new_name="holder"),
        migrations.RenameField(model_name="hold", old_name="user", new_name="holder"),
        migrations.RenameField(model_name="order", old_name="user", new_name="holder"),
        migrations.AlterField(
            model_name="subscription",
            name="holder",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="credit_subscriptions",
                to=HOLDER,
            ),
        ),
        migrations.AlterField(
            model_name="creditaccount",
            name="holder",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="credit_accounts",
                to=HOLDER,
            ),
        ),
        migrations.AlterField(
            model_name="consumptionrecord",
            name="holder",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to=HOLDER
            ),
        ),
        migrations.AlterField(
            model_name="hold",
            name="holder",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to=HOLDER
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="holder",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="credit_orders",
                to=HOLDER,
            ),
        ),
        migrations.AddConstraint(
            model_name="creditaccount",
            constraint=models.UniqueConstraint(
                fields=("holder", "offer_group"), name="account_holder_group_unique"
            ),
        ),
        migrations.AddConstraint(
            model_name="consumptionrecord",
            constraint=models.UniqueConstraint(
                fields=("holder", "idempotency_key"), name="consumption_holder_key_unique"
            ),
        ),
        migrations.AddConstraint(
            model_name="hold",
            constraint=models.UniqueConstraint(
                condition=models.Q(("idempotency_key__isnull", False)),
                fields=("holder", "idempotency_key"),
                name="hold_holder_key_unique",
            ),
        ),
        migrations.AddIndex(
            model_name="order",
            index=models.Index(
                fields=["holder", "offer_group", "status", "expires"],
                name="order_holder_group_status_idx",
            ),
        ),
        migrations.AddField(
            model_name="order",
            name="placed_by",
            field=models.ForeignKey(
                blank=True,
                help_text="The user who placed the order for the holder.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(placed_by_holder, migrations.RunPython.noop, elidable=True),
        migrations.AddField(
            model_name="ledgerentry",
            name="member",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="hold",
            name="member",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.CreateModel(
            name="SpendingLimit",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tokens", models.BigIntegerField(verbose_name="tokens per period")),
                (
                    "period",
                    models.CharField(default="monthly", max_length=16, verbose_name="period"),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "holder",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="credit_spending_limits",
                        to=HOLDER,
                    ),
                ),
                (
                    "member",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "offer_group",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="spending_limits",
                        to="user_credits.offergroup",
                    ),
                ),
            ],
            options={
                "verbose_name": "spending limit",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("holder", "member", "offer_group"), name="spending_limit_unique"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("tokens__gt", 0)), name="spending_limit_positive"
                    ),
                ],
            },
        ),
        migrations.AddIndex(
            model_name="ledgerentry",
            index=models.Index(
                fields=["account", "member", "created_at"],
                name="entry_member_spend_idx",
                condition=models.Q(("member__isnull", False)),
            ),
        ),
    ]
