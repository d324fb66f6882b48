"""Auto-recharge: one ``AutoRecharge`` per holder and offer group, and the account's copy of
its threshold (``auto_recharge_below``) that every write reads with the account row."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from user_credits.holders import holder_model_name

HOLDER = holder_model_name()


class Migration(migrations.Migration):
    dependencies = [
        ("user_credits", "0008_verbose_names"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(HOLDER),
    ]

    operations = [
        migrations.AddField(
            model_name="creditaccount",
            name="auto_recharge_below",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.CreateModel(
            name="AutoRecharge",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "threshold",
                    models.BigIntegerField(
                        help_text="Recharge when the available balance falls under this.",
                        verbose_name="threshold",
                    ),
                ),
                ("quantity", models.PositiveIntegerField(default=1, verbose_name="quantity")),
                ("enabled", models.BooleanField(default=True, verbose_name="enabled")),
                (
                    "failures",
                    models.PositiveIntegerField(default=0, verbose_name="failures in a row"),
                ),
                (
                    "last_failure",
                    models.CharField(blank=True, max_length=255, verbose_name="last failure"),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "holder",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="credit_auto_recharges",
                        to=HOLDER,
                    ),
                ),
                (
                    "offer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="auto_recharges",
                        to="user_credits.offer",
                    ),
                ),
                (
                    "offer_group",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="auto_recharges",
                        to="user_credits.offergroup",
                    ),
                ),
                (
                    "pending_order",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="user_credits.order",
                        verbose_name="recharge in flight",
                    ),
                ),
            ],
            options={
                "verbose_name": "auto-recharge",
                "verbose_name_plural": "auto-recharges",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("holder", "offer_group"), name="auto_recharge_holder_group_unique"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("threshold__gt", 0)),
                        name="auto_recharge_threshold_positive",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("quantity__gte", 1)),
                        name="auto_recharge_quantity_positive",
                    ),
                ],
            },
        ),
    ]
