import django_filters

from ..models import EntryKind, LedgerEntry, Order, OrderStatus


class OrderFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=OrderStatus.choices)
    offer_group = django_filters.CharFilter(field_name="offer_group__key")
    created = django_filters.IsoDateTimeFromToRangeFilter(field_name="created_at")

    class Meta:
        model = Order
        fields = ["status", "offer_group", "created"]


class LedgerEntryFilter(django_filters.FilterSet):
    offer_group = django_filters.CharFilter(field_name="account__offer_group__key")
    kind = django_filters.MultipleChoiceFilter(choices=EntryKind.choices)
    created = django_filters.IsoDateTimeFromToRangeFilter(field_name="created_at")

    class Meta:
        model = LedgerEntry
        fields = ["offer_group", "kind", "created"]
