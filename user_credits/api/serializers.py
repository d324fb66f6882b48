from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import money, services
from ..conf import app_settings
from ..holders import get_holder_model, holder_is_user
from ..models import (
    BundleItem,
    CreditLot,
    Hold,
    LedgerEntry,
    LotCategory,
    Offer,
    Order,
    OrderEvent,
)
from ..services import ConsumeStatus


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: no strings, floats or booleans."""

    default_error_messages = {"invalid": _("A whole number is required.")}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def refuse_unknown(data: dict, known) -> None:
    """A field the body should not have is an error naming it, not a silent default."""
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise serializers.ValidationError({name: [_("Unknown field.")] for name in unknown})


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a typo is an error and not a silent default."""

    def validate(self, attrs):
        if isinstance(self.initial_data, dict):
            refuse_unknown(self.initial_data, self.fields)
        return attrs

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": [_("Expected a JSON object.")]})
        return super().to_internal_value(data)


class MoneyField(serializers.DecimalField):
    """An amount at its currency's decimals, as a string: "12.50" USD, "500" JPY, "1.125" KWD.

    The currency is the instance's ``currency_field``. Read-only: the API takes no amounts.
    """

    def __init__(self, *, currency_field="currency", **kwargs):
        self.currency_field = currency_field
        kwargs.setdefault("max_digits", 15)
        super().__init__(decimal_places=money.STORED_DECIMALS, read_only=True, **kwargs)

    def get_attribute(self, instance):
        return super().get_attribute(instance), getattr(instance, self.currency_field)

    def to_representation(self, value):
        amount, currency = value
        return str(money.quantize(amount, currency))


class ErrorSerializer(serializers.Serializer):
    """The shape of every error response."""

    code = serializers.CharField()
    detail = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


class BundleItemSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="offer.name")
    offer_group = serializers.SerializerMethodField()
    token_count = serializers.IntegerField(source="offer.token_count", allow_null=True)

    class Meta:
        model = BundleItem
        fields = ["offer", "name", "quantity", "offer_group", "token_count"]

    def get_offer_group(self, item) -> str:
        return (item.offer_group or item.offer.offer_group).key


class OfferPriceSerializer(serializers.Serializer):
    currency = serializers.CharField()
    price = serializers.CharField(help_text="At the currency's decimals.")


class OfferSerializer(serializers.ModelSerializer):
    """An offer; with ``context["currency"]``, ``price`` and ``currency`` are the offer's price in
    that currency (the offers are loaded for it, so each has one)."""

    offer_group = serializers.SlugRelatedField(slug_field="key", read_only=True)
    offer_group_name = serializers.CharField(source="offer_group.name", read_only=True)
    price = MoneyField()
    prices = serializers.SerializerMethodField(
        help_text="Every price of the offer: its own currency first, then its other currencies."
    )
    tags = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    bundle_items = BundleItemSerializer(many=True, read_only=True)

    class Meta:
        model = Offer
        fields = [
            "id",
            "name",
            "kind",
            "offer_group",
            "offer_group_name",
            "price",
            "currency",
            "prices",
            "token_count",
            "cycle",
            "custom_cycle",
            "append_date",
            "tags",
            "bundle_items",
            "overriding_key",
            "weight",
            "popular",
            "quantity_limit",
        ]

    @extend_schema_field(OfferPriceSerializer(many=True))
    def get_prices(self, offer) -> list[dict]:
        own = [(offer.currency, offer.price)]
        others = sorted((p.currency, p.price) for p in offer.prices.all())
        return [
            {"currency": currency, "price": str(money.quantize(price, currency))}
            for currency, price in own + others
        ]

    def to_representation(self, offer):
        data = super().to_representation(offer)
        currency = self.context.get("currency")
        if currency:
            code = str(currency).strip().lower()
            data["price"] = str(money.quantize(offer.price_in(code), code))
            data["currency"] = code
        return data


class OrderEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderEvent
        fields = ["status", "message", "created_at"]


class OrderSerializer(serializers.ModelSerializer):
    offer_group = serializers.SlugRelatedField(slug_field="key", read_only=True)
    unit_price = MoneyField(max_digits=13)
    total = MoneyField()
    amount_refunded = MoneyField()
    events = OrderEventSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "offer",
            "parent",
            "status",
            "name",
            "offer_group",
            "cycle",
            "custom_cycle",
            "token_count",
            "unit_price",
            "quantity",
            "total",
            "amount_refunded",
            "currency",
            "starts",
            "expires",
            "payment_reference",
            "created_at",
            "updated_at",
            "events",
        ]
        read_only_fields = fields


class OrderCreateSerializer(StrictSerializer):
    offer = StrictIntegerField(min_value=1)
    quantity = StrictIntegerField(min_value=1, max_value=1_000_000, default=1)
    currency = serializers.CharField(
        min_length=3,
        max_length=3,
        required=False,
        help_text="The offer's currency (default) or one of its other prices' currencies.",
    )
    starts = serializers.DateTimeField(required=False)


class PaymentStartSerializer(serializers.Serializer):
    provider = serializers.CharField()
    reference = serializers.CharField(allow_blank=True)
    client_secret = serializers.CharField(allow_blank=True)
    redirect_url = serializers.CharField(allow_blank=True)


class PaySerializer(serializers.Serializer):
    save_payment_method = serializers.BooleanField(
        default=False,
        help_text=_("Keep the payment method for off-session payments (auto-recharge)."),
    )


class LotSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    order = serializers.IntegerField(allow_null=True)
    granted = serializers.IntegerField()
    remaining = serializers.IntegerField()
    held = serializers.IntegerField()
    starts = serializers.DateTimeField()
    expires = serializers.DateTimeField(allow_null=True)
    category = serializers.CharField()


class GroupCreditsSerializer(serializers.Serializer):
    offer_group = serializers.CharField()
    name = serializers.CharField()
    available = serializers.IntegerField(help_text="Tokens that can be spent now.")
    held = serializers.IntegerField(help_text="Tokens reserved by holds.")
    total = serializers.IntegerField(help_text="available + held.")
    balance = serializers.IntegerField(
        help_text="Deprecated alias of available (removed in 1.0).", read_only=True
    )
    overdraft = serializers.IntegerField()
    starts = serializers.DateTimeField(allow_null=True)
    expires = serializers.DateTimeField(allow_null=True)
    lots = LotSerializer(many=True)


class LedgerEntrySerializer(serializers.ModelSerializer):
    offer_group = serializers.CharField(source="account.offer_group.key", read_only=True)

    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "offer_group",
            "kind",
            "amount",
            "balance_after",
            "lot",
            "idempotency_key",
            "metadata",
            "created_at",
        ]
        read_only_fields = fields


class ConsumedEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = LedgerEntry
        fields = ["id", "kind", "amount", "balance_after", "lot", "created_at"]


def pop_holder(attrs: dict):
    """The holder's key from ``holder``, or from ``user``, its alias while holders are users."""
    holder, user = attrs.pop("holder", None), attrs.pop("user", None)
    if user is not None:
        if not holder_is_user():
            raise serializers.ValidationError({"user": [_("Use holder.")]})
        if holder is not None and holder != user:
            raise serializers.ValidationError({"user": [_("Give holder or user, not both.")]})
    if holder is None and user is None:
        raise serializers.ValidationError({"holder": [_("This field is required.")]})
    return holder if holder is not None else user


class HolderSerializer(StrictSerializer):
    """``holder`` (its primary key); ``user`` is accepted for it when holders are users.
    ``member``: the user spending for the holder (recorded, checked against their limit)."""

    holder = StrictIntegerField(min_value=1, required=False)
    user = StrictIntegerField(
        min_value=1, required=False, help_text="Alias of holder when holders are users."
    )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        name = "holder" if attrs.get("holder") is not None or "user" not in attrs else "user"
        value = pop_holder(attrs)
        if not get_holder_model()._default_manager.filter(pk=value).exists():
            raise serializers.ValidationError({name: [_("Unknown %(field)s.") % {"field": name}]})
        attrs["holder"] = value
        member = attrs.get("member")
        if member is not None and not get_user_model().objects.filter(pk=member).exists():
            raise serializers.ValidationError({"member": [_("Unknown user.")]})
        return attrs


class ConsumeSerializer(HolderSerializer):
    offer_group = serializers.SlugField(max_length=64)
    count = StrictIntegerField(min_value=1, max_value=10**12)
    metadata = serializers.DictField(required=False, default=dict)
    member = StrictIntegerField(min_value=1, required=False, allow_null=True, default=None)


class ConsumptionSerializer(serializers.Serializer):
    balance = serializers.IntegerField(help_text="Tokens available after the consumption.")
    replayed = serializers.BooleanField()
    entries = ConsumedEntrySerializer(many=True)


class ConsumeBatchItemSerializer(StrictSerializer):
    """One item of ``consume/batch/``: the body of ``consume/`` and its idempotency key.
    Holders and groups are checked by the service, for the whole batch at once."""

    holder = StrictIntegerField(min_value=1, required=False)
    user = StrictIntegerField(
        min_value=1, required=False, help_text="Alias of holder when holders are users."
    )
    offer_group = serializers.SlugField(max_length=64)
    count = StrictIntegerField(min_value=1, max_value=10**12)
    idempotency_key = serializers.CharField(
        min_length=1,
        max_length=255,
        required=False,
        allow_null=True,
        default=None,
        help_text="Unique per consumption of a holder: a retried item replays its first result.",
    )
    metadata = serializers.DictField(required=False, default=dict)
    member = StrictIntegerField(min_value=1, required=False, allow_null=True, default=None)

    def to_internal_value(self, data):
        # Validated as a list (many=True), where initial_data is the whole list: check here.
        if isinstance(data, dict):
            refuse_unknown(data, self.fields)
        return super().to_internal_value(data)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        attrs["holder"] = pop_holder(attrs)
        return attrs


class ConsumeBatchSerializer(serializers.Serializer):
    items = ConsumeBatchItemSerializer(
        many=True, help_text="At most USER_CREDITS['BATCH_MAX'] items (default 1000)."
    )

    def to_internal_value(self, data):
        """Errors name the item and its field: ``items[3].count``."""
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": [_("Expected a JSON object.")]})
        refuse_unknown(data, {"items"})
        items = data.get("items")
        if not isinstance(items, list) or not items:
            raise serializers.ValidationError({"items": [_("A non-empty list of items.")]})
        limit = app_settings.BATCH_MAX
        if len(items) > limit:
            message = _("At most %(max)d items, got %(count)d.") % {
                "max": limit,
                "count": len(items),
            }
            raise serializers.ValidationError({"items": [message]})
        checked = ConsumeBatchItemSerializer(data=items, many=True)
        if checked.is_valid():
            return {"items": checked.validated_data}
        errors = {}
        # {index: errors}; a list with a blank per valid item in DRF before 3.15.
        found = checked.errors
        found = found.items() if isinstance(found, dict) else enumerate(found)
        for index, item_errors in found:
            where = f"items[{index}]"
            if not isinstance(item_errors, dict):  # a null item
                errors[where] = item_errors
                continue
            for name, messages in item_errors.items():
                errors[where if name == "non_field_errors" else f"{where}.{name}"] = messages
        raise serializers.ValidationError(errors)


class ConsumeBatchResultSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=ConsumeStatus.ALL,
        help_text="ok: consumed; replayed: the key's first result, nothing written; "
        "insufficient: not enough tokens; conflict: the key was used for another request; "
        "limit: the member's spending limit. Only ok writes.",
    )
    balance = serializers.IntegerField(
        allow_null=True,
        help_text="Available after ok; the first result's for replayed; the unchanged "
        "available for insufficient; null for conflict and limit.",
    )
    account = serializers.IntegerField(allow_null=True, help_text="The account consumed from.")
    entries = ConsumedEntrySerializer(many=True)


class ConsumeBatchResultsSerializer(serializers.Serializer):
    results = ConsumeBatchResultSerializer(many=True, help_text="One per item, in order.")


class GrantSerializer(HolderSerializer):
    offer_group = serializers.SlugField(max_length=64)
    tokens = StrictIntegerField(min_value=1, max_value=10**12)
    expires = serializers.DateTimeField(required=False, allow_null=True, default=None)
    category = serializers.ChoiceField(choices=LotCategory.choices, default=LotCategory.PROMOTIONAL)
    reason = serializers.CharField(max_length=200)


class CreditLotSerializer(serializers.ModelSerializer):
    offer_group = serializers.CharField(source="account.offer_group.key", read_only=True)
    holder = serializers.IntegerField(source="account.holder_id", read_only=True)
    user = serializers.IntegerField(
        source="account.holder_id", read_only=True, help_text="Alias of holder."
    )

    class Meta:
        model = CreditLot
        fields = [
            "id",
            "holder",
            "user",
            "offer_group",
            "granted",
            "remaining",
            "starts",
            "expires",
            "category",
            "priority",
            "status",
            "reason",
        ]
        read_only_fields = fields


class HoldCreateSerializer(HolderSerializer):
    offer_group = serializers.SlugField(max_length=64)
    count = StrictIntegerField(min_value=1, max_value=10**12)
    ttl = StrictIntegerField(
        min_value=1,
        max_value=7 * 24 * 3600,
        required=False,
        help_text="Seconds before the hold is released automatically.",
    )
    metadata = serializers.DictField(required=False, default=dict)
    member = StrictIntegerField(min_value=1, required=False, allow_null=True, default=None)


class CaptureSerializer(StrictSerializer):
    count = StrictIntegerField(
        min_value=1,
        max_value=10**12,
        required=False,
        help_text="Tokens used; default: all that is held.",
    )
    over = serializers.ChoiceField(choices=["consume", "raise"], default="consume")
    metadata = serializers.DictField(required=False, default=dict)


class HoldSerializer(serializers.ModelSerializer):
    offer_group = serializers.CharField(source="account.offer_group.key", read_only=True)
    held = serializers.SerializerMethodField()
    user = serializers.IntegerField(
        source="holder_id", read_only=True, help_text="Alias of holder."
    )

    class Meta:
        model = Hold
        fields = [
            "id",
            "holder",
            "user",
            "member",
            "offer_group",
            "count",
            "held",
            "captured",
            "status",
            "expires_at",
            "created_at",
            "settled_at",
            "metadata",
        ]
        read_only_fields = fields

    def get_held(self, hold) -> int:
        return services.held_tokens(hold)
