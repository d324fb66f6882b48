from datetime import UTC

import django_filters
from django import forms
from django.utils.translation import gettext_lazy as _
from django_filters.fields import IsoDateTimeRangeField

from ..models import EntryKind, LedgerEntry, Order, OrderStatus


class UTCDateTimeRangeField(IsoDateTimeRangeField):
    """ISO 8601 bounds, converted to UTC: any offset Python accepts is valid here, though a
    database may refuse some (PostgreSQL stops at ±15:59)."""

    def compress(self, data_list):
        try:
            data_list = [value.astimezone(UTC) if value else value for value in data_list or []]
        except (OverflowError, ValueError):
            raise forms.ValidationError(_("Date out of range."), code="invalid") from None
        return super().compress(data_list)


class CreatedRangeFilter(django_filters.IsoDateTimeFromToRangeFilter):
    field_class = UTCDateTimeRangeField


class OrderFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=OrderStatus.choices)
    offer_group = django_filters.CharFilter(field_name="offer_group__key")
    created = CreatedRangeFilter(field_name="created_at")

    class Meta:
        model = Order
        fields = ["status", "offer_group", "created"]


class LedgerEntryFilter(django_filters.FilterSet):
    offer_group = django_filters.CharFilter(field_name="account__offer_group__key")
    kind = django_filters.MultipleChoiceFilter(choices=EntryKind.choices)
    created = CreatedRangeFilter(field_name="created_at")

    class Meta:
        model = LedgerEntry
        fields = ["offer_group", "kind", "created"]
