from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .. import money
from ..holders import holder_model_name
from .offers import Cycle, Offer, OfferGroup, currency_validator, custom_cycle_constraint


class OrderStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    PAID = "paid", _("paid")
    REFUSED = "refused", _("refused")
    ERROR = "error", _("error")
    INCONSISTENT = "inconsistent", _("inconsistent")
    PARTIAL = "partial", _("partly refunded")
    REFUNDED = "refunded", _("refunded")
    EXPIRED = "expired", _("expired")

    @classmethod
    def payable(cls):
        """Statuses from which a payment may still succeed."""
        return (cls.PENDING, cls.REFUSED, cls.ERROR, cls.INCONSISTENT)

    @classmethod
    def settled(cls):
        """Statuses of an order that was paid once (its tokens were granted)."""
        return (cls.PAID, cls.PARTIAL, cls.REFUNDED, cls.EXPIRED)

    @classmethod
    def active(cls):
        """Statuses of a paid order whose period counts (chaining, unlocking, subscriptions)."""
        return (cls.PAID, cls.PARTIAL)


class Order(models.Model):
    """A holder's intention to buy an offer (placed by a user), then its record.

    The snapshot fields copy the offer at creation; after payment only the status (and the
    refunded amount) changes.
    """

    holder = models.ForeignKey(
        holder_model_name(),
        on_delete=models.PROTECT,
        related_name="credit_orders",
        verbose_name=_("holder"),
    )
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("The user who placed the order for the holder."),
        verbose_name=_("placed by"),
    )
    offer = models.ForeignKey(
        Offer, on_delete=models.PROTECT, related_name="orders", verbose_name=_("offer")
    )
    parent = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="children",
        help_text=_("The bundle order that created this order."),
        verbose_name=_("parent"),
    )
    subscription = models.ForeignKey(
        "user_credits.Subscription",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orders",
        help_text=_("The subscription this order is one paid period of."),
        verbose_name=_("subscription"),
    )
    status = models.CharField(
        _("status"), max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING
    )
    # Snapshot of the offer.
    name = models.CharField(_("name"), max_length=200)
    offer_group = models.ForeignKey(
        OfferGroup, on_delete=models.PROTECT, related_name="orders", verbose_name=_("offer group")
    )
    cycle = models.CharField(_("cycle"), max_length=16, choices=Cycle.choices)
    custom_cycle = models.PositiveIntegerField(_("custom cycle"), null=True, blank=True)
    append_date = models.BooleanField(_("append date"), default=False)
    token_count = models.PositiveIntegerField(_("token count"), null=True, blank=True)
    unit_price = models.DecimalField(
        _("unit price"), max_digits=13, decimal_places=money.STORED_DECIMALS
    )
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    total = models.DecimalField(_("total"), max_digits=15, decimal_places=money.STORED_DECIMALS)
    currency = models.CharField(_("currency"), max_length=3, validators=[currency_validator])
    bundle_items = models.JSONField(
        _("bundle items"),
        default=list,
        blank=True,
        help_text=_("Snapshot of the bundle's items at creation."),
    )
    # Period, set when paid (or requested at creation).
    starts = models.DateTimeField(_("starts"), null=True, blank=True)
    expires = models.DateTimeField(_("expires"), null=True, blank=True)
    amount_refunded = models.DecimalField(
        _("amount refunded"), max_digits=15, decimal_places=money.STORED_DECIMALS, default=0
    )
    payment_reference = models.CharField(
        _("payment reference"), max_length=255, blank=True, db_index=True
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("order")
        ordering = ("-created_at", "-id")
        indexes = [
            models.Index(
                fields=["holder", "offer_group", "status", "expires"],
                name="order_holder_group_status_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="order_quantity_positive"),
            models.CheckConstraint(
                condition=Q(unit_price__gte=0), name="order_unit_price_not_negative"
            ),
            models.CheckConstraint(condition=Q(total__gte=0), name="order_total_not_negative"),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0) & Q(amount_refunded__lte=models.F("total")),
                name="order_refund_within_total",
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[a-z]{3}$"), name="order_currency_iso_lower"
            ),
            custom_cycle_constraint("order"),
            models.UniqueConstraint(
                fields=["subscription", "payment_reference"],
                condition=Q(subscription__isnull=False),
                name="order_one_per_subscription_payment",
            ),
        ]

    def __str__(self):
        return f"#{self.pk} {self.name} × {self.quantity} ({self.get_status_display()})"

    def clean(self):
        super().clean()
        money.clean_amounts(
            {
                "unit_price": self.unit_price,
                "total": self.total,
                "amount_refunded": self.amount_refunded,
            },
            self.currency,
        )


class OrderEvent(models.Model):
    """One line of an order's history."""

    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, related_name="events", verbose_name=_("order")
    )
    status = models.CharField(_("status"), max_length=16, choices=OrderStatus.choices)
    message = models.TextField(_("message"), blank=True)
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("order event")
        ordering = ("created_at", "id")

    def __str__(self):
        return f"{self.order_id}: {self.status}"
