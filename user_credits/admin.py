"""The admin an operator runs the business with. Every action calls one service."""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connections
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from . import services
from .exceptions import UserCreditsError
from .models import (
    BundleItem,
    CreditAccount,
    CreditLot,
    LedgerEntry,
    Offer,
    OfferGroup,
    Order,
    OrderEvent,
    OrderStatus,
    Tag,
)

STATUS_COLOURS = {
    OrderStatus.PENDING: "#8a6d3b",
    OrderStatus.PAID: "#2e7d32",
    OrderStatus.REFUSED: "#c62828",
    OrderStatus.ERROR: "#c62828",
    OrderStatus.INCONSISTENT: "#ad1457",
    OrderStatus.PARTIAL: "#1565c0",
    OrderStatus.REFUNDED: "#455a64",
    OrderStatus.EXPIRED: "#757575",
}


class ReadOnlyMixin:
    """Rows written only by services: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def run_action(modeladmin, request, queryset, service, done, **kwargs):
    """Call ``service`` for each object; report what changed and each error, in messages."""
    ok = 0
    for obj in queryset:
        try:
            service(obj, **kwargs)
            ok += 1
        except UserCreditsError as exc:
            modeladmin.message_user(request, f"{obj}: {exc}", messages.ERROR)
    if ok:
        modeladmin.message_user(request, done.format(count=ok), messages.SUCCESS)


def action_form(modeladmin, request, queryset, form_class, title, action):
    """Show ``form_class`` for an action; returns the bound valid form once submitted."""
    form = form_class(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        return form
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "objects": queryset,
        "action": action,
        "opts": modeladmin.model._meta,
        "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
    }
    return TemplateResponse(request, "user_credits/admin/action_form.html", context)


# --- catalog -----------------------------------------------------------------------------


@admin.register(OfferGroup)
class OfferGroupAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "unlocks_offers")
    search_fields = ("key", "name")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("unlocks")

    @admin.display(description=_("buying here unlocks"))
    def unlocks_offers(self, obj):
        return ", ".join(o.name for o in obj.unlocks.all()) or "—"


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ("name",)


class BundleItemInline(admin.TabularInline):
    model = BundleItem
    fk_name = "bundle"
    extra = 0
    autocomplete_fields = ("offer", "offer_group")


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "offer_group",
        "kind",
        "price",
        "currency",
        "cycle",
        "token_count",
        "tag_list",
        "unlocked_by_list",
        "popular",
        "is_active",
    )
    list_filter = ("offer_group", "kind", "tags", "is_active", "cycle")
    list_editable = ("is_active",)
    search_fields = ("name", "overriding_key")
    filter_horizontal = ("tags", "unlocked_by")
    list_select_related = ("offer_group",)
    inlines = [BundleItemInline]
    fieldsets = (
        (None, {"fields": ("name", "kind", "offer_group", "is_active", "popular")}),
        (_("Price"), {"fields": ("price", "currency", "quantity_limit")}),
        (
            _("Tokens and period"),
            {"fields": ("token_count", "cycle", "custom_cycle", "append_date")},
        ),
        (
            _("Display and unlocking"),
            {"fields": ("tags", "unlocked_by", "overriding_key", "weight")},
        ),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tags", "unlocked_by")

    @admin.display(description=_("tags"))
    def tag_list(self, obj):
        return ", ".join(t.name for t in obj.tags.all())

    @admin.display(description=_("unlocked by"))
    def unlocked_by_list(self, obj):
        groups = ", ".join(g.key for g in obj.unlocked_by.all())
        if not groups:
            return "—"
        key = (
            f" (replaces “{obj.overriding_key}”, weight {obj.weight})" if obj.overriding_key else ""
        )
        return groups + key


# --- orders ------------------------------------------------------------------------------


class OrderEventInline(ReadOnlyMixin, admin.TabularInline):
    model = OrderEvent
    extra = 0
    fields = ("created_at", "status", "message", "payload")
    readonly_fields = fields


class MarkPaidForm(forms.Form):
    message = forms.CharField(
        label=_("Message for the order history"), initial="Validated manually.", max_length=500
    )


class RefundForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=200, required=False)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "name",
        "coloured_status",
        "total",
        "currency",
        "created_at",
        "starts",
        "expires",
    )
    list_filter = ("status", "offer_group", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("user__username", "user__email", "payment_reference", "name")
    list_select_related = ("user", "offer_group")
    inlines = [OrderEventInline]
    actions = ["mark_paid", "refund"]

    def has_add_permission(self, request):
        return False  # orders are created by buyers through the services

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a snapshot: viewed here, changed only by the actions' services

    @admin.display(description=_("status"), ordering="status")
    def coloured_status(self, obj):
        return format_html(
            '<b style="color:{}">{}</b>',
            STATUS_COLOURS.get(obj.status, "#000"),
            obj.get_status_display(),
        )

    @admin.action(description=_("Mark paid (manual validation)"), permissions=["validate"])
    def mark_paid(self, request, queryset):
        form = action_form(
            self, request, queryset, MarkPaidForm, _("Mark orders paid"), "mark_paid"
        )
        if not isinstance(form, forms.Form):
            return form
        message = f"{form.cleaned_data['message']} (by {request.user})"
        run_action(
            self,
            request,
            queryset,
            services.mark_paid,
            "{count} order(s) marked paid.",
            message=message,
        )
        return None

    @admin.action(
        description=_("Refund in full (revokes remaining tokens)"), permissions=["validate"]
    )
    def refund(self, request, queryset):
        form = action_form(self, request, queryset, RefundForm, _("Refund orders"), "refund")
        if not isinstance(form, forms.Form):
            return form
        run_action(
            self,
            request,
            queryset,
            services.refund,
            "{count} order(s) refunded.",
            payload={"reason": form.cleaned_data["reason"], "by": str(request.user)},
        )
        return None

    def has_validate_permission(self, request):
        return request.user.has_perm("user_credits.change_order")


# --- credits -----------------------------------------------------------------------------


class CreditLotInline(ReadOnlyMixin, admin.TabularInline):
    model = CreditLot
    extra = 0
    fields = (
        "id",
        "order",
        "category",
        "granted",
        "remaining",
        "starts",
        "expires",
        "status",
        "reason",
    )
    readonly_fields = fields
    ordering = ("-id",)


class LedgerEntryInline(ReadOnlyMixin, admin.TabularInline):
    model = LedgerEntry
    extra = 0
    fields = ("created_at", "kind", "amount", "balance_after", "lot", "idempotency_key", "metadata")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    max_num = 0


class GrantForm(forms.Form):
    tokens = forms.IntegerField(min_value=1, label=_("Tokens"))
    expires = forms.SplitDateTimeField(
        required=False, label=_("Expires"), widget=admin.widgets.AdminSplitDateTime
    )
    reason = forms.CharField(max_length=200, label=_("Reason"))

    def clean_expires(self):
        expires = self.cleaned_data["expires"]
        if expires is not None and expires <= timezone.now():
            raise forms.ValidationError(_("The expiry must be in the future."))
        return expires


@admin.register(CreditAccount)
class CreditAccountAdmin(admin.ModelAdmin):
    list_display = ("user", "offer_group", "available", "held", "total", "overdraft", "created_at")
    list_filter = ("offer_group",)
    search_fields = ("user__username", "user__email", "offer_group__key")
    list_select_related = ("user", "offer_group")
    readonly_fields = ("available", "held", "total")
    inlines = [CreditLotInline, LedgerEntryInline]
    actions = ["grant_tokens", "expire_due_lots"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # balances move only through the ledger (the actions' services)

    def get_queryset(self, request):
        return services.with_balances(super().get_queryset(request))

    @admin.display(description=_("available"), ordering="available")
    def available(self, obj):
        return obj.available

    @admin.display(description=_("held"), ordering="held")
    def held(self, obj):
        return obj.held

    @admin.display(description=_("total"), ordering="total")
    def total(self, obj):
        return obj.total

    @admin.action(description=_("Grant tokens"), permissions=["grant"])
    def grant_tokens(self, request, queryset):
        form = action_form(self, request, queryset, GrantForm, _("Grant tokens"), "grant_tokens")
        if not isinstance(form, forms.Form):
            return form
        data = form.cleaned_data

        def grant(account, **kwargs):
            return services.grant(account.user_id, account.offer_group, data["tokens"], **kwargs)

        run_action(
            self,
            request,
            queryset,
            grant,
            f"Granted {data['tokens']} token(s) to {{count}} account(s).",
            expires=data["expires"],
            reason=f"{data['reason']} (by {request.user})",
        )
        return None

    @admin.action(description=_("Expire due lots now"), permissions=["grant"])
    def expire_due_lots(self, request, queryset):
        expired = tokens = 0
        for user_id in sorted(set(queryset.values_list("user_id", flat=True))):
            report = services.expire_credits(user=user_id, collect=False)
            expired += report.expired_lots
            tokens += report.expired_tokens
        self.message_user(
            request, f"Expired {expired} lot(s), {tokens} token(s).", messages.SUCCESS
        )

    def has_grant_permission(self, request):
        return request.user.has_perm("user_credits.add_creditlot")


@admin.register(CreditLot)
class CreditLotAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "account",
        "order",
        "category",
        "granted",
        "remaining",
        "starts",
        "expires",
        "status",
    )
    list_filter = ("status", "category", "account__offer_group")
    search_fields = ("account__user__username", "reason")
    list_select_related = ("account__user", "account__offer_group", "order")


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ``exact_up_to`` rows; above, on PostgreSQL, takes the planner's
    estimate (``EXPLAIN``: the table's statistics, no scan), so that a list of ten million
    rows does not count them on every page. The count shown is then approximate."""

    exact_up_to = 10_000

    @cached_property
    def count(self):
        queryset = self.object_list
        if connections[queryset.db].vendor == "postgresql":
            estimate = _planned_rows(queryset)
            if estimate > self.exact_up_to:
                return estimate
        return Paginator.count.func(self)


def _planned_rows(queryset) -> int:
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:  # a filter that matches nothing, known without a query
        return 0
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "account",
        "kind",
        "amount",
        "balance_after",
        "lot",
        "idempotency_key",
    )
    list_filter = ("kind", "account__offer_group", "created_at")
    # Exact terms: a username (its accounts' entries, on the account index), else an
    # idempotency key. A substring search would read the whole ledger on every search.
    search_fields = ("=account__user__username", "=idempotency_key")
    search_help_text = _("A username or an idempotency key, exactly.")
    list_select_related = ("account__user", "account__offer_group", "lot")
    # The ledger grows without bound: no COUNT(*) of the whole table on every page, and no
    # date hierarchy (its SELECT DISTINCT date_trunc(...) reads every row on every page; the
    # created_at filter narrows by date without a scan).
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        accounts = list(
            CreditAccount.objects.filter(user__username=term).values_list("pk", flat=True)
        )
        if accounts:
            return queryset.filter(account_id__in=accounts), False
        return queryset.filter(idempotency_key=term), False
