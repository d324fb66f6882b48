from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models, router
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .. import money
from ..exceptions import InvalidArgument

currency_validator = RegexValidator(
    r"^[a-z]{3}$", _("Use a lower-case ISO 4217 code such as 'usd' or 'eur'.")
)


class Cycle(models.TextChoices):
    ONCE = "once", _("once (never expires)")
    DAILY = "daily", _("daily")
    WEEKLY = "weekly", _("weekly")
    BI_WEEKLY = "bi-weekly", _("every two weeks")
    MONTHLY = "monthly", _("monthly")
    TRIMESTER = "trimester", _("every three months")
    SEMESTER = "semester", _("every six months")
    YEARLY = "yearly", _("yearly")
    CUSTOM = "custom", _("custom (seconds)")


class OfferKind(models.TextChoices):
    SUBSCRIPTION = "subscription", _("subscription")
    TOKENS = "tokens", _("tokens")
    EXPERTISE = "expertise", _("expertise")


def custom_cycle_constraint(prefix):
    """`custom_cycle` is set (and positive) exactly when the cycle is custom."""
    return models.CheckConstraint(
        condition=(
            Q(cycle=Cycle.CUSTOM, custom_cycle__isnull=False, custom_cycle__gt=0)
            | (~Q(cycle=Cycle.CUSTOM) & Q(custom_cycle__isnull=True))
        ),
        name=f"{prefix}_custom_cycle_only_with_custom",
        violation_error_message=_(
            "Set a custom cycle (in seconds) exactly when the cycle is custom."
        ),
    )


# Code names a group by its key (``consume(user, "api-calls", 1)``) and running processes cache
# key → id (``services.common.resolve_group``): once a group has accounts, its key is its identity
# for good. The name is a label and may change.
KEY_IN_USE = _(
    "The key of a group with credit accounts cannot change: code and running processes refer "
    "to the group by it. Create a new group instead."
)


class Billing(models.TextChoices):
    ONE_TIME = "one_time", _("one-time purchase")
    RECURRING = "recurring", _("recurring (a subscription that renews)")


class Rollover(models.TextChoices):
    NONE = "none", _("none: unused tokens expire with their period")
    ALL = "all", _("all unused tokens move to the next period")
    CAPPED = "capped", _("unused tokens move to the next period, up to a cap")


class OfferGroup(models.Model):
    """A basket of tokens with its own calendar; offers of one group share tokens."""

    key = models.SlugField(_("key"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=120)

    class Meta:
        ordering = ("key",)
        verbose_name = _("offer group")

    def __str__(self):
        return self.name or self.key

    def save(self, *args, **kwargs):
        update_fields = kwargs.get("update_fields")
        if (update_fields is None or "key" in update_fields) and self.key_change_refused():
            raise InvalidArgument(str(KEY_IN_USE), field="key")
        super().save(*args, **kwargs)

    def clean(self):
        super().clean()
        if self.key_change_refused():
            raise ValidationError({"key": KEY_IN_USE})

    def key_change_refused(self) -> bool:
        """Whether this key differs from the stored key of a group that has accounts."""
        if self.pk is None:
            return False
        using = self._state.db or router.db_for_write(type(self), instance=self)
        stored = type(self)._base_manager.using(using)
        return stored.filter(pk=self.pk, accounts__isnull=False).exclude(key=self.key).exists()


class Tag(models.Model):
    name = models.CharField(_("name"), max_length=64, unique=True)

    class Meta:
        ordering = ("name",)
        verbose_name = _("tag")

    def __str__(self):
        return self.name


class Offer(models.Model):
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(
        _("kind"), max_length=16, choices=OfferKind.choices, default=OfferKind.TOKENS
    )
    offer_group = models.ForeignKey(
        OfferGroup, on_delete=models.PROTECT, related_name="offers", verbose_name=_("offer group")
    )
    price = models.DecimalField(
        _("price"),
        max_digits=13,
        decimal_places=money.STORED_DECIMALS,
        validators=[MinValueValidator(0)],
        help_text=_("In the currency's major unit, with at most the currency's decimals."),
    )
    currency = models.CharField(
        _("currency"), max_length=3, default="usd", validators=[currency_validator]
    )
    token_count = models.PositiveIntegerField(_("tokens"), null=True, blank=True)
    cycle = models.CharField(_("cycle"), max_length=16, choices=Cycle.choices, default=Cycle.ONCE)
    custom_cycle = models.PositiveIntegerField(_("custom cycle (seconds)"), null=True, blank=True)
    append_date = models.BooleanField(
        _("chain expiry"),
        default=False,
        help_text=_("Start at the latest expiry of the buyer's paid orders in the group."),
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="offers", verbose_name=_("tags"))
    unlocked_by = models.ManyToManyField(
        OfferGroup,
        blank=True,
        related_name="unlocks",
        help_text=_("Shown only to buyers with a paid, unexpired order in one of these groups."),
        verbose_name=_("unlocked by"),
    )
    overriding_key = models.CharField(_("overriding key"), max_length=64, blank=True)
    weight = models.IntegerField(_("weight"), default=0)
    popular = models.BooleanField(_("popular"), default=False)
    quantity_limit = models.PositiveIntegerField(
        _("quantity limit"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    is_active = models.BooleanField(_("active"), default=True)
    billing = models.CharField(
        _("billing"), max_length=16, choices=Billing.choices, default=Billing.ONE_TIME
    )
    rollover = models.CharField(
        _("rollover"),
        max_length=16,
        choices=Rollover.choices,
        default=Rollover.NONE,
        help_text=_("Recurring offers: what happens to a period's unused tokens at renewal."),
    )
    rollover_cap = models.PositiveIntegerField(
        _("rollover cap"),
        null=True,
        blank=True,
        help_text=_("Most tokens moved to the next period (required with a capped rollover)."),
    )
    stripe_price_id = models.CharField(
        _("Stripe price"),
        max_length=255,
        blank=True,
        help_text=_("price_… of a recurring offer, set by user_credits_sync_prices."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("offer")
        ordering = ("id",)
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="offer_price_not_negative"),
            models.CheckConstraint(
                condition=(
                    Q(rollover=Rollover.CAPPED, rollover_cap__isnull=False)
                    | (~Q(rollover=Rollover.CAPPED) & Q(rollover_cap__isnull=True))
                ),
                name="offer_rollover_cap_only_with_capped",
                violation_error_message=_(
                    "Set a rollover cap exactly when the rollover is capped."
                ),
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[a-z]{3}$"), name="offer_currency_iso_lower"
            ),
            models.CheckConstraint(
                condition=Q(quantity_limit__isnull=True) | Q(quantity_limit__gte=1),
                name="offer_quantity_limit_positive",
            ),
            custom_cycle_constraint("offer"),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        super().clean()
        errors = money.validation_errors({"price": self.price}, self.currency)
        if (
            self.pk
            and "currency" not in errors
            and self.currency
            and self.prices.filter(currency=self.currency).exists()
        ):
            errors["currency"] = [
                _("This offer also has a price in %(currency)s: remove it first.")
                % {"currency": self.currency.upper()}
            ]
        if self.rollover == Rollover.CAPPED and self.rollover_cap is None:
            errors["rollover_cap"] = [_("A capped rollover needs a cap (in tokens).")]
        elif self.rollover != Rollover.CAPPED and self.rollover_cap is not None:
            errors["rollover_cap"] = [_("Only a capped rollover takes a cap.")]
        if errors:
            raise ValidationError(errors)

    @property
    def is_recurring(self) -> bool:
        return self.billing == Billing.RECURRING

    def price_in(self, currency: str):
        """The price in ``currency``: the offer's own, or an ``OfferPrice``; else ``None``.

        No conversion. Reads ``prices`` through the prefetch cache when there is one.
        """
        code = str(currency or "").lower()
        if code == self.currency:
            return self.price
        return next((p.price for p in self.prices.all() if p.currency == code), None)


class OfferPrice(models.Model):
    """An offer's price in another currency; an order in that currency pays this price."""

    offer = models.ForeignKey(
        Offer, on_delete=models.CASCADE, related_name="prices", verbose_name=_("offer")
    )
    currency = models.CharField(_("currency"), max_length=3, validators=[currency_validator])
    price = models.DecimalField(
        _("price"),
        max_digits=13,
        decimal_places=money.STORED_DECIMALS,
        validators=[MinValueValidator(0)],
    )

    class Meta:
        ordering = ("offer", "currency")
        verbose_name = _("price in another currency")
        verbose_name_plural = _("prices in other currencies")
        constraints = [
            models.UniqueConstraint(
                fields=["offer", "currency"], name="offerprice_one_per_offer_currency"
            ),
            models.CheckConstraint(condition=Q(price__gte=0), name="offerprice_price_not_negative"),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[a-z]{3}$"), name="offerprice_currency_iso_lower"
            ),
        ]

    def __str__(self):
        return f"{self.offer}: {self.price} {self.currency.upper()}"

    def clean(self):
        super().clean()
        errors = money.validation_errors({"price": self.price}, self.currency)
        offer = self.offer if self.offer_id else None
        if offer is not None and self.currency and self.currency == offer.currency:
            errors.setdefault("currency", []).append(
                _("%(currency)s is the offer's own currency: set its price on the offer.")
                % {"currency": self.currency.upper()}
            )
        if errors:
            raise ValidationError(errors)


class BundleItem(models.Model):
    """One offer inside a bundle offer, with optional group and cycle overrides."""

    bundle = models.ForeignKey(
        Offer, on_delete=models.CASCADE, related_name="bundle_items", verbose_name=_("bundle")
    )
    offer = models.ForeignKey(
        Offer, on_delete=models.PROTECT, related_name="+", verbose_name=_("offer")
    )
    quantity = models.PositiveIntegerField(
        _("quantity"), default=1, validators=[MinValueValidator(1)]
    )
    offer_group = models.ForeignKey(
        OfferGroup,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Grant into this group instead of the item offer's group."),
        verbose_name=_("offer group"),
    )
    cycle = models.CharField(_("cycle"), max_length=16, choices=Cycle.choices, blank=True)
    custom_cycle = models.PositiveIntegerField(_("custom cycle"), null=True, blank=True)

    class Meta:
        verbose_name = _("bundle item")
        ordering = ("id",)
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=1), name="bundleitem_quantity_positive"
            ),
            models.CheckConstraint(
                condition=~Q(bundle=models.F("offer")), name="bundleitem_not_itself"
            ),
            custom_cycle_constraint("bundleitem"),
        ]

    def __str__(self):
        return f"{self.quantity} × {self.offer}"
