"""Translatable verbose names for the fields and models shown in the admin.

Labels only: no column, index or constraint changes, so no SQL runs. The holder foreign keys
keep pointing at ``USER_CREDITS_HOLDER_MODEL`` (as in 0006), not at the user model.
"""

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import user_credits.models.ledger
from user_credits.holders import holder_model_name

HOLDER = holder_model_name()


class Migration(migrations.Migration):
    dependencies = [
        ("user_credits", "0007_ledger_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(HOLDER),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="bundleitem",
            options={"ordering": ("id",), "verbose_name": "bundle item"},
        ),
        migrations.AlterModelOptions(
            name="offer",
            options={"ordering": ("id",), "verbose_name": "offer"},
        ),
        migrations.AlterModelOptions(
            name="order",
            options={"ordering": ("-created_at", "-id"), "verbose_name": "order"},
        ),
        migrations.AlterModelOptions(
            name="orderevent",
            options={"ordering": ("created_at", "id"), "verbose_name": "order event"},
        ),
        migrations.AlterModelOptions(
            name="tag",
            options={"ordering": ("name",), "verbose_name": "tag"},
        ),
        migrations.AlterField(
            model_name="bundleitem",
            name="bundle",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="bundle_items",
                to="user_credits.offer",
                verbose_name="bundle",
            ),
        ),
        migrations.AlterField(
            model_name="bundleitem",
            name="custom_cycle",
            field=models.PositiveIntegerField(blank=True, null=True, verbose_name="custom cycle"),
        ),
        migrations.AlterField(
            model_name="bundleitem",
            name="cycle",
            field=models.CharField(
                blank=True,
                choices=[
                    ("once", "once (never expires)"),
                    ("daily", "daily"),
                    ("weekly", "weekly"),
                    ("bi-weekly", "every two weeks"),
                    ("monthly", "monthly"),
                    ("trimester", "every three months"),
                    ("semester", "every six months"),
                    ("yearly", "yearly"),
                    ("custom", "custom (seconds)"),
                ],
                max_length=16,
                verbose_name="cycle",
            ),
        ),
        migrations.AlterField(
            model_name="bundleitem",
            name="offer",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="user_credits.offer",
                verbose_name="offer",
            ),
        ),
        migrations.AlterField(
            model_name="bundleitem",
            name="offer_group",
            field=models.ForeignKey(
                blank=True,
                help_text="Grant into this group instead of the item offer's group.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="user_credits.offergroup",
                verbose_name="offer group",
            ),
        ),
        migrations.AlterField(
            model_name="bundleitem",
            name="quantity",
            field=models.PositiveIntegerField(
                default=1,
                validators=[django.core.validators.MinValueValidator(1)],
                verbose_name="quantity",
            ),
        ),
        migrations.AlterField(
            model_name="creditaccount",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True, verbose_name="created at"),
        ),
        migrations.AlterField(
            model_name="creditaccount",
            name="holder",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="credit_accounts",
                to=HOLDER,
                verbose_name="holder",
            ),
        ),
        migrations.AlterField(
            model_name="creditaccount",
            name="offer_group",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="accounts",
                to="user_credits.offergroup",
                verbose_name="offer group",
            ),
        ),
        migrations.AlterField(
            model_name="creditlot",
            name="account",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="lots",
                to="user_credits.creditaccount",
                verbose_name="account",
            ),
        ),
        migrations.AlterField(
            model_name="creditlot",
            name="category",
            field=models.CharField(
                choices=[("paid", "paid"), ("promotional", "promotional")],
                default="paid",
                max_length=16,
                verbose_name="category",
            ),
        ),
        migrations.AlterField(
            model_name="creditlot",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True, verbose_name="created at"),
        ),
        migrations.AlterField(
            model_name="creditlot",
            name="expiry_warned_at",
            field=models.DateTimeField(
                blank=True, editable=False, null=True, verbose_name="expiry warned at"
            ),
        ),
        migrations.AlterField(
            model_name="creditlot",
            name="order",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="lots",
                to="user_credits.order",
                verbose_name="order",
            ),
        ),
        migrations.AlterField(
            model_name="creditlot",
            name="priority",
            field=models.SmallIntegerField(
                default=50,
                help_text="Lower burns first, before any expiry ordering.",
                verbose_name="priority",
            ),
        ),
        migrations.AlterField(
            model_name="creditlot",
            name="reason",
            field=models.CharField(blank=True, max_length=255, verbose_name="reason"),
        ),
        migrations.AlterField(
            model_name="creditlot",
            name="status",
            field=models.CharField(
                choices=[("active", "active"), ("expired", "expired"), ("revoked", "revoked")],
                default="active",
                max_length=16,
                verbose_name="status",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="account",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="entries",
                to="user_credits.creditaccount",
                verbose_name="account",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="amount",
            field=models.BigIntegerField(verbose_name="amount"),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="balance_after",
            field=models.BigIntegerField(verbose_name="balance after"),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="created_at",
            field=models.DateTimeField(
                db_index=True, default=user_credits.models.ledger.now, verbose_name="created at"
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="idempotency_key",
            field=models.CharField(
                blank=True, max_length=255, null=True, verbose_name="idempotency key"
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="kind",
            field=models.CharField(
                choices=[
                    ("grant", "grant"),
                    ("consume", "consume"),
                    ("overdraft", "overdraft"),
                    ("expire", "expire"),
                    ("revoke", "revoke"),
                    ("rollover", "rollover"),
                ],
                max_length=16,
                verbose_name="kind",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="lot",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="entries",
                to="user_credits.creditlot",
                verbose_name="lot",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="member",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="member",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="metadata",
            field=models.JSONField(blank=True, default=dict, verbose_name="metadata"),
        ),
        migrations.AlterField(
            model_name="offer",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True, verbose_name="created at"),
        ),
        migrations.AlterField(
            model_name="offer",
            name="tags",
            field=models.ManyToManyField(
                blank=True, related_name="offers", to="user_credits.tag", verbose_name="tags"
            ),
        ),
        migrations.AlterField(
            model_name="offer",
            name="unlocked_by",
            field=models.ManyToManyField(
                blank=True,
                help_text="Shown only to buyers with a paid, unexpired order in one of these groups.",
                related_name="unlocks",
                to="user_credits.offergroup",
                verbose_name="unlocked by",
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="amount_refunded",
            field=models.DecimalField(
                decimal_places=3, default=0, max_digits=15, verbose_name="amount refunded"
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="append_date",
            field=models.BooleanField(default=False, verbose_name="append date"),
        ),
        migrations.AlterField(
            model_name="order",
            name="bundle_items",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="Snapshot of the bundle's items at creation.",
                verbose_name="bundle items",
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True, db_index=True, verbose_name="created at"),
        ),
        migrations.AlterField(
            model_name="order",
            name="currency",
            field=models.CharField(
                max_length=3,
                validators=[
                    django.core.validators.RegexValidator(
                        "^[a-z]{3}$", "Use a lower-case ISO 4217 code such as 'usd' or 'eur'."
                    )
                ],
                verbose_name="currency",
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="custom_cycle",
            field=models.PositiveIntegerField(blank=True, null=True, verbose_name="custom cycle"),
        ),
        migrations.AlterField(
            model_name="order",
            name="holder",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="credit_orders",
                to=HOLDER,
                verbose_name="holder",
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="offer",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="orders",
                to="user_credits.offer",
                verbose_name="offer",
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="offer_group",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="orders",
                to="user_credits.offergroup",
                verbose_name="offer group",
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                help_text="The bundle order that created this order.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="children",
                to="user_credits.order",
                verbose_name="parent",
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="placed_by",
            field=models.ForeignKey(
                blank=True,
                help_text="The user who placed the order for the holder.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="placed by",
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="quantity",
            field=models.PositiveIntegerField(default=1, verbose_name="quantity"),
        ),
        migrations.AlterField(
            model_name="order",
            name="subscription",
            field=models.ForeignKey(
                blank=True,
                help_text="The subscription this order is one paid period of.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="orders",
                to="user_credits.subscription",
                verbose_name="subscription",
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="token_count",
            field=models.PositiveIntegerField(blank=True, null=True, verbose_name="token count"),
        ),
        migrations.AlterField(
            model_name="order",
            name="total",
            field=models.DecimalField(decimal_places=3, max_digits=15, verbose_name="total"),
        ),
        migrations.AlterField(
            model_name="order",
            name="unit_price",
            field=models.DecimalField(decimal_places=3, max_digits=13, verbose_name="unit price"),
        ),
        migrations.AlterField(
            model_name="order",
            name="updated_at",
            field=models.DateTimeField(auto_now=True, verbose_name="updated at"),
        ),
        migrations.AlterField(
            model_name="orderevent",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True, verbose_name="created at"),
        ),
        migrations.AlterField(
            model_name="orderevent",
            name="message",
            field=models.TextField(blank=True, verbose_name="message"),
        ),
        migrations.AlterField(
            model_name="orderevent",
            name="order",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="events",
                to="user_credits.order",
                verbose_name="order",
            ),
        ),
        migrations.AlterField(
            model_name="orderevent",
            name="payload",
            field=models.JSONField(blank=True, default=dict, verbose_name="payload"),
        ),
        migrations.AlterField(
            model_name="orderevent",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "pending"),
                    ("paid", "paid"),
                    ("refused", "refused"),
                    ("error", "error"),
                    ("inconsistent", "inconsistent"),
                    ("partial", "partly refunded"),
                    ("refunded", "refunded"),
                    ("expired", "expired"),
                ],
                max_length=16,
                verbose_name="status",
            ),
        ),
        migrations.AlterField(
            model_name="spendinglimit",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True, verbose_name="created at"),
        ),
        migrations.AlterField(
            model_name="spendinglimit",
            name="holder",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="credit_spending_limits",
                to=HOLDER,
                verbose_name="holder",
            ),
        ),
        migrations.AlterField(
            model_name="spendinglimit",
            name="member",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="member",
            ),
        ),
        migrations.AlterField(
            model_name="spendinglimit",
            name="offer_group",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="spending_limits",
                to="user_credits.offergroup",
                verbose_name="offer group",
            ),
        ),
        migrations.AlterField(
            model_name="spendinglimit",
            name="updated_at",
            field=models.DateTimeField(auto_now=True, verbose_name="updated at"),
        ),
        migrations.AlterField(
            model_name="subscription",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True, verbose_name="created at"),
        ),
        migrations.AlterField(
            model_name="subscription",
            name="holder",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="credit_subscriptions",
                to=HOLDER,
                verbose_name="holder",
            ),
        ),
        migrations.AlterField(
            model_name="subscription",
            name="offer",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="subscriptions",
                to="user_credits.offer",
                verbose_name="offer",
            ),
        ),
        migrations.AlterField(
            model_name="subscription",
            name="placed_by",
            field=models.ForeignKey(
                blank=True,
                help_text="The user who subscribed (for a holder that is not a user).",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="placed by",
            ),
        ),
        migrations.AlterField(
            model_name="subscription",
            name="updated_at",
            field=models.DateTimeField(auto_now=True, verbose_name="updated at"),
        ),
    ]
