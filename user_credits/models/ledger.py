from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..holders import holder_model_name
from .offers import Cycle, OfferGroup
from .orders import Order


def now():
    """Field default that reads the clock at call time (``timezone.now`` patched in tests)."""
    return timezone.now()


class CreditAccount(models.Model):
    """One row per (holder, offer group): the row every write locks.

    ``balance`` is the sum of the account's ledger amounts. Lots past their expiry still count
    in it until they are expired (lazily by the next write, or by the expiry command); reads go
    through the services, which never count them.
    """

    holder = models.ForeignKey(
        holder_model_name(),
        on_delete=models.PROTECT,
        related_name="credit_accounts",
        verbose_name=_("holder"),
    )
    offer_group = models.ForeignKey(
        OfferGroup, on_delete=models.PROTECT, related_name="accounts", verbose_name=_("offer group")
    )
    balance = models.BigIntegerField(_("balance"), default=0)
    overdraft = models.BigIntegerField(
        _("overdraft"),
        default=0,
        help_text=_("Tokens consumed on credit, settled by the next grant."),
    )
    # The end of the account's ledger chain (``user_credits.chain``): the last entry's
    # sequence number and digest, so that a write continues the chain without reading it.
    last_seq = models.BigIntegerField(default=0, editable=False)
    last_digest = models.CharField(max_length=64, blank=True, default="", editable=False)
    # The low-balance threshold already warned about; cleared when the balance rises above it.
    low_warned_threshold = models.BigIntegerField(null=True, blank=True, editable=False)
    # The enabled auto-recharge's threshold (``AutoRecharge``), copied here by its services so
    # that a write, which holds this row anyway, knows without a query whether to recharge
    # (null while a recharge is in flight).
    auto_recharge_below = models.BigIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("credit account")
        constraints = [
            models.UniqueConstraint(
                fields=["holder", "offer_group"], name="account_holder_group_unique"
            ),
            models.CheckConstraint(
                condition=Q(overdraft__gte=0), name="account_overdraft_not_negative"
            ),
        ]

    def __str__(self):
        return f"{self.holder} · {self.offer_group.key}: {self.balance}"


class LotCategory(models.TextChoices):
    PAID = "paid", _("paid")
    PROMOTIONAL = "promotional", _("promotional")


class LotStatus(models.TextChoices):
    ACTIVE = "active", _("active")
    EXPIRED = "expired", _("expired")
    REVOKED = "revoked", _("revoked")


class CreditLot(models.Model):
    """Tokens granted at once (by an order, a bundle item or a manual grant) to one account."""

    account = models.ForeignKey(
        CreditAccount, on_delete=models.PROTECT, related_name="lots", verbose_name=_("account")
    )
    order = models.ForeignKey(
        Order,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="lots",
        verbose_name=_("order"),
    )
    granted = models.BigIntegerField(_("granted"))
    remaining = models.BigIntegerField(_("remaining"))
    starts = models.DateTimeField(_("starts"), default=now)
    expires = models.DateTimeField(_("expires"), null=True, blank=True)
    category = models.CharField(
        _("category"), max_length=16, choices=LotCategory.choices, default=LotCategory.PAID
    )
    priority = models.SmallIntegerField(
        _("priority"), default=50, help_text=_("Lower burns first, before any expiry ordering.")
    )
    status = models.CharField(
        _("status"), max_length=16, choices=LotStatus.choices, default=LotStatus.ACTIVE
    )
    held = models.BigIntegerField(
        _("held"), default=0, help_text=_("Tokens of this lot reserved by active holds.")
    )
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    expiry_warned_at = models.DateTimeField(
        _("expiry warned at"), null=True, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ("id",)
        verbose_name = _("credit lot")
        indexes = [
            # Burnable lots of an account, in burn order (PostgreSQL sorts NULL expiries last
            # in an ascending index, as the burn order wants).
            models.Index(
                fields=["account", "priority", "expires", "id"],
                name="lot_burn_order_idx",
                condition=Q(remaining__gt=0, status=LotStatus.ACTIVE),
            ),
            # The expiry sweep: due lots with tokens left.
            models.Index(
                fields=["expires"],
                name="lot_due_idx",
                condition=Q(remaining__gt=0, status=LotStatus.ACTIVE),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(granted__gt=0), name="lot_granted_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=models.F("granted")),
                name="lot_remaining_within_granted",
            ),
            models.CheckConstraint(
                condition=Q(expires__isnull=True) | Q(expires__gt=models.F("starts")),
                name="lot_expires_after_start",
            ),
            models.CheckConstraint(
                condition=Q(held__gte=0) & Q(held__lte=models.F("remaining")),
                name="lot_held_within_remaining",
            ),
        ]

    def __str__(self):
        return f"lot #{self.pk}: {self.remaining}/{self.granted}"


class EntryKind(models.TextChoices):
    GRANT = "grant", _("grant")
    CONSUME = "consume", _("consume")
    OVERDRAFT = "overdraft", _("overdraft")
    EXPIRE = "expire", _("expire")
    REVOKE = "revoke", _("revoke")
    ROLLOVER = "rollover", _("rollover")

    # A rollover moves unused tokens of a subscription's previous period to its new one: two
    # entries of kind ``rollover`` written together, negative on the old lot (out) and positive
    # on the new lot (in), so the account's balance does not move. It is therefore both a
    # credit and a debit kind: its sign says the direction, its lot says which end.

    @classmethod
    def credits(cls):
        """Kinds that add tokens (a positive amount)."""
        return (cls.GRANT, cls.ROLLOVER)

    @classmethod
    def debits(cls):
        """Kinds that take tokens (a negative amount)."""
        return (cls.CONSUME, cls.OVERDRAFT, cls.EXPIRE, cls.REVOKE, cls.ROLLOVER)


class LedgerEntry(models.Model):
    """Append-only token ledger. Corrections are new entries, never edits."""

    # No index of its own: ``(account, seq)`` and ``(account, created_at, id)`` lead with it,
    # and every index less is one less write per entry (``consume_many`` writes thousands).
    account = models.ForeignKey(
        CreditAccount,
        on_delete=models.PROTECT,
        related_name="entries",
        verbose_name=_("account"),
        db_index=False,
    )
    lot = models.ForeignKey(
        CreditLot,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="entries",
        verbose_name=_("lot"),
    )
    kind = models.CharField(_("kind"), max_length=16, choices=EntryKind.choices)
    amount = models.BigIntegerField(_("amount"))
    balance_after = models.BigIntegerField(_("balance after"))
    idempotency_key = models.CharField(_("idempotency key"), max_length=255, null=True, blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), default=now, db_index=True)
    # Position in the account's ledger (1, 2, 3…) and the chained digest sealing it and every
    # entry before it (``user_credits.chain``); ``user_credits_verify`` recomputes both.
    seq = models.BigIntegerField(_("sequence"), editable=False)
    digest = models.CharField(max_length=64, blank=True, default="", editable=False)
    # The user who spent for the holder (``member=`` of consume, hold and capture). Indexed
    # where set only (``entry_member_idx``): most entries have none.
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("member"),
        db_index=False,
    )

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        permissions = [("consume_credits", _("Can consume users' credits (server to server)"))]
        indexes = [
            models.Index(fields=["account", "created_at", "id"], name="entry_account_time_idx"),
            models.Index(
                fields=["account", "idempotency_key"],
                name="entry_idempotency_idx",
                condition=Q(idempotency_key__isnull=False),
            ),
            # A member's spend in the current period (spending limits).
            models.Index(
                fields=["account", "member", "created_at"],
                name="entry_member_spend_idx",
                condition=Q(member__isnull=False),
            ),
            # A member's entries, for the protection of a user who spent (deletion).
            models.Index(
                fields=["member"], name="entry_member_idx", condition=Q(member__isnull=False)
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="entry_amount_not_zero"),
            models.UniqueConstraint(fields=["account", "seq"], name="entry_account_seq_unique"),
            models.CheckConstraint(
                condition=(
                    Q(kind__in=EntryKind.credits(), amount__gt=0)
                    | Q(kind__in=EntryKind.debits(), amount__lt=0)
                ),
                name="entry_amount_sign_matches_kind",
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.amount:+d}"


class ConsumptionRecord(models.Model):
    """The first result of a consumption made with an idempotency key, to answer replays."""

    # The account's holder. No index of its own: the unique ``(holder, idempotency_key)`` leads
    # with it. No database constraint either: the account's foreign key, and the account's own
    # to its holder, already keep the holder from being deleted under the record (``PROTECT``
    # still refuses it in Django), and a check per record is a tenth of a batch's commit.
    holder = models.ForeignKey(
        holder_model_name(),
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="+")
    idempotency_key = models.CharField(max_length=255)
    count = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["holder", "idempotency_key"], name="consumption_holder_key_unique"
            ),
        ]

    def __str__(self):
        return f"{self.idempotency_key}: {self.count}"


class HoldStatus(models.TextChoices):
    ACTIVE = "active", _("active")
    CAPTURED = "captured", _("captured")
    RELEASED = "released", _("released")
    EXPIRED = "expired", _("expired")


class Hold(models.Model):
    """Tokens reserved before metered work, then captured (consumed) or released.

    The reservation lives in ``HoldLine`` rows (one per lot, in burn order) and in
    ``CreditLot.held``; a hold writes no ledger entry: the account's balance keeps counting
    held tokens (balance = available + held) until the capture consumes them.
    """

    holder = models.ForeignKey(holder_model_name(), on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="holds")
    # The user who placed the hold for the holder; its capture is spent by them.
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    count = models.BigIntegerField(_("tokens requested"))
    status = models.CharField(max_length=16, choices=HoldStatus.choices, default=HoldStatus.ACTIVE)
    expires_at = models.DateTimeField(_("released automatically at"))
    captured = models.BigIntegerField(_("tokens captured"), default=0)
    # The available balance the capture left, answered again when the capture is replayed.
    available_after = models.BigIntegerField(null=True, blank=True, editable=False)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            models.Index(
                fields=["expires_at"],
                name="hold_active_expiry_idx",
                condition=Q(status=HoldStatus.ACTIVE),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(count__gt=0), name="hold_count_positive"),
            models.CheckConstraint(condition=Q(captured__gte=0), name="hold_captured_not_negative"),
            models.UniqueConstraint(
                fields=["holder", "idempotency_key"],
                name="hold_holder_key_unique",
                condition=Q(idempotency_key__isnull=False),
            ),
        ]

    #: Not stored: ``services.hold`` sets it on the hold it returns, true when an idempotency
    #: key answered an earlier hold (as ``Consumption.replayed`` does for consumptions).
    replayed = False

    def __str__(self):
        return f"hold #{self.pk}: {self.count} ({self.status})"


class HoldLine(models.Model):
    """The tokens one hold reserves on one lot."""

    hold = models.ForeignKey(Hold, on_delete=models.CASCADE, related_name="lines")
    lot = models.ForeignKey(CreditLot, on_delete=models.PROTECT, related_name="hold_lines")
    count = models.BigIntegerField()

    class Meta:
        ordering = ("id",)
        constraints = [
            models.CheckConstraint(condition=Q(count__gte=0), name="holdline_count_not_negative"),
        ]

    def __str__(self):
        return f"{self.count} of lot #{self.lot_id}"


class SpendingLimit(models.Model):
    """At most ``tokens`` of a holder's ``offer_group`` spent by one member per ``period``.

    The period is the calendar period of the cycle (this month, this week…) in the site's time
    zone. Consumptions by the member and the tokens of their active holds count against it;
    the check is made under the account lock, with the spend.
    """

    holder = models.ForeignKey(
        holder_model_name(),
        on_delete=models.CASCADE,
        related_name="credit_spending_limits",
        verbose_name=_("holder"),
    )
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("member"),
    )
    offer_group = models.ForeignKey(
        OfferGroup,
        on_delete=models.CASCADE,
        related_name="spending_limits",
        verbose_name=_("offer group"),
    )
    tokens = models.BigIntegerField(_("tokens per period"))
    period = models.CharField(_("period"), max_length=16, default=Cycle.MONTHLY)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("spending limit")
        constraints = [
            models.UniqueConstraint(
                fields=["holder", "member", "offer_group"], name="spending_limit_unique"
            ),
            models.CheckConstraint(condition=Q(tokens__gt=0), name="spending_limit_positive"),
        ]

    def __str__(self):
        return f"{self.member} · {self.offer_group_id}: {self.tokens}/{self.period}"
