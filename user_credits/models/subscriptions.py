from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from ..holders import holder_model_name
from .offers import Offer


class SubscriptionStatus(models.TextChoices):
    INCOMPLETE = "incomplete", _("incomplete (first payment not made)")
    ACTIVE = "active", _("active")
    PAST_DUE = "past_due", _("past due (a renewal failed)")
    CANCELED = "canceled", _("canceled")

    @classmethod
    def live(cls):
        """Statuses of a subscription that still renews (one per holder and offer)."""
        return (cls.INCOMPLETE, cls.ACTIVE, cls.PAST_DUE)


class Subscription(models.Model):
    """A holder's recurring plan: each paid period is an ``Order`` of it (``orders``)."""

    holder = models.ForeignKey(
        holder_model_name(),
        on_delete=models.PROTECT,
        related_name="credit_subscriptions",
        verbose_name=_("holder"),
    )
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("The user who subscribed (for a holder that is not a user)."),
        verbose_name=_("placed by"),
    )
    offer = models.ForeignKey(
        Offer, on_delete=models.PROTECT, related_name="subscriptions", verbose_name=_("offer")
    )
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=SubscriptionStatus.choices,
        default=SubscriptionStatus.INCOMPLETE,
    )
    cancel_at_period_end = models.BooleanField(_("cancels at period end"), default=False)
    current_period_start = models.DateTimeField(_("current period start"), null=True, blank=True)
    current_period_end = models.DateTimeField(_("current period end"), null=True, blank=True)
    reference = models.CharField(
        _("provider reference"), max_length=255, blank=True, db_index=True, help_text="sub_…"
    )
    canceled_at = models.DateTimeField(_("canceled at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = _("subscription")
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=1), name="subscription_quantity_positive"
            ),
            models.UniqueConstraint(
                fields=["holder", "offer"],
                condition=Q(status__in=["incomplete", "active", "past_due"]),
                name="subscription_one_live_per_holder_offer",
                violation_error_message=_("This holder already subscribes to this offer."),
            ),
            models.CheckConstraint(
                condition=Q(current_period_end__isnull=True)
                | Q(current_period_end__gt=models.F("current_period_start")),
                name="subscription_period_end_after_start",
            ),
        ]

    def __str__(self):
        return f"subscription #{self.pk}: {self.offer} ({self.get_status_display()})"
