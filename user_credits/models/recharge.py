from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from ..holders import holder_model_name
from .offers import Billing, Offer, OfferGroup
from .orders import Order


class AutoRecharge(models.Model):
    """Buy ``offer`` again, off-session, when a holder's available balance in ``offer_group``
    falls under ``threshold`` (one per holder and group).

    ``pending_order`` is the recharge in flight: it is claimed with a conditional update (only
    while empty), so concurrent writes under the threshold start one payment, and it is cleared
    when that order is paid or fails. ``failures`` counts failed recharges in a row; at
    ``USER_CREDITS["AUTO_RECHARGE_MAX_FAILURES"]`` the recharge disables itself.
    """

    holder = models.ForeignKey(
        holder_model_name(), on_delete=models.CASCADE, related_name="credit_auto_recharges"
    )
    offer_group = models.ForeignKey(
        OfferGroup, on_delete=models.CASCADE, related_name="auto_recharges"
    )
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="auto_recharges")
    threshold = models.BigIntegerField(
        _("threshold"), help_text=_("Recharge when the available balance falls under this.")
    )
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    enabled = models.BooleanField(_("enabled"), default=True)
    pending_order = models.ForeignKey(
        Order,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("recharge in flight"),
    )
    failures = models.PositiveIntegerField(_("failures in a row"), default=0)
    last_failure = models.CharField(_("last failure"), max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("auto-recharge")
        verbose_name_plural = _("auto-recharges")
        constraints = [
            models.UniqueConstraint(
                fields=["holder", "offer_group"], name="auto_recharge_holder_group_unique"
            ),
            models.CheckConstraint(
                condition=Q(threshold__gt=0), name="auto_recharge_threshold_positive"
            ),
            models.CheckConstraint(
                condition=Q(quantity__gte=1), name="auto_recharge_quantity_positive"
            ),
        ]

    def __str__(self):
        return f"{self.holder} · {self.offer_group_id}: {self.offer} under {self.threshold}"

    def clean(self):
        """The offer is one of the group's, sold once, with tokens and a price (as
        ``services.enable_auto_recharge`` checks)."""
        super().clean()
        offer = self.offer if self.offer_id else None
        if offer is None or not self.offer_group_id:
            return
        if offer.offer_group_id != self.offer_group_id:
            raise ValidationError({"offer": _("This offer is not one of the group's offers.")})
        if offer.billing != Billing.ONE_TIME or not offer.token_count or not offer.price:
            raise ValidationError({"offer": _("Choose a one-time offer with tokens and a price.")})
        if offer.quantity_limit is not None and self.quantity > offer.quantity_limit:
            raise ValidationError({"quantity": _("This is over the offer's quantity limit.")})
