"""The admin an operator runs the business with. Every action calls one service."""

import json
from collections import Counter
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import EmptyResultSet, PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from . import money, services
from .exceptions import UserCreditsError
from .holders import get_holder_model, holder_is_user
from .models import (
    AutoRecharge,
    BundleItem,
    CreditAccount,
    CreditLot,
    LedgerEntry,
    Offer,
    OfferGroup,
    OfferPrice,
    Order,
    OrderEvent,
    OrderStatus,
    SpendingLimit,
    Subscription,
    SubscriptionStatus,
    Tag,
)
from .services.cycles import LIMIT_PERIODS


def holder_search_fields(prefix: str = "") -> tuple[str, ...]:
    """Search lookups of the holder: a user's username and email; another model's text fields
    (``name``, ``slug``, ``email``, ``username`` when it has them)."""
    model = get_holder_model()
    names = {field.name for field in model._meta.get_fields() if field.concrete}
    if holder_is_user():
        wanted = [model.USERNAME_FIELD, model.get_email_field_name()]
    else:
        wanted = ["name", "slug", "email", "username"]
    return tuple(f"{prefix}holder__{name}" for name in dict.fromkeys(wanted) if name in names)


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


def run_action(
    modeladmin, request, queryset, service, done_message, *, skip=None, done_args=None, **kwargs
):
    """Call ``service`` for each object and report exactly what happened, in one message:
    "2 paid, 1 skipped: already refunded, 1 failed." (then each failure's error); with
    several reasons "3 skipped: 1 already paid, 2 already refunded".

    ``done_message``: what was done, with a ``%(count)s`` placeholder (``_("%(count)s paid")``)
    and any other placeholders given in ``done_args``.
    ``skip(obj)``: why ``obj`` is left as it is (a reason), or ``None`` to call the service.
    """
    done, skipped, failed = 0, Counter(), []
    for obj in queryset:
        reason = skip(obj) if skip else None
        if reason:
            skipped[str(reason)] += 1
            continue
        try:
            service(obj, **kwargs)
            done += 1
        except UserCreditsError as exc:
            failed.append(gettext("%(object)s: %(error)s") % {"object": obj, "error": exc})
    parts = [done_message % {**(done_args or {}), "count": done}]
    if len(skipped) == 1:
        ((reason, count),) = skipped.items()
        parts.append(gettext("%(count)s skipped: %(reason)s") % {"count": count, "reason": reason})
    elif skipped:
        reasons = ", ".join(
            gettext("%(count)s %(reason)s") % {"count": count, "reason": reason}
            for reason, count in sorted(skipped.items())
        )
        parts.append(
            gettext("%(count)s skipped: %(reason)s") % {"count": skipped.total(), "reason": reasons}
        )
    if failed:
        parts.append(gettext("%(count)s failed") % {"count": len(failed)})
    level = messages.SUCCESS if not (skipped or failed) else messages.WARNING
    if not done:
        level = messages.ERROR if failed else messages.WARNING
    modeladmin.message_user(request, ", ".join(parts) + ".", level)
    for error in failed:
        modeladmin.message_user(request, error, messages.ERROR)


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
        # The admin's scripts and the form's (the grant form's calendar and clock).
        "media": modeladmin.media + form.media,
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


class OfferPriceInline(admin.TabularInline):
    model = OfferPrice
    extra = 0
    fields = ("currency", "price")
    verbose_name = _("price in another currency")
    verbose_name_plural = _("prices in other currencies (no conversion)")


#: What *Sync prices* did to each offer (``services.sync_prices``' results).
SYNC_RESULTS = {
    "created": _("%(count)s created"),
    "updated": _("%(count)s updated"),
    "unchanged": _("%(count)s unchanged"),
}
#: Why *Sync prices* leaves an offer out.
SYNC_SKIPPED = {
    "one_time": _("sold once, not recurring"),
    "free": _("free (nothing to pay)"),
}


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "offer_group",
        "kind",
        "price_display",
        "currency_code",
        "other_prices",
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
    inlines = [OfferPriceInline, BundleItemInline]
    actions = ["sync_prices"]
    fieldsets = (
        (None, {"fields": ("name", "kind", "offer_group", "is_active", "popular")}),
        (_("Price"), {"fields": ("price", "currency", "quantity_limit")}),
        (
            _("Recurring plan"),
            {"fields": ("billing", "rollover", "rollover_cap", "stripe_price_id")},
        ),
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
        return super().get_queryset(request).prefetch_related("tags", "unlocked_by", "prices")

    @admin.action(description=_("Create or update the Stripe price of recurring offers"))
    def sync_prices(self, request, queryset):
        offers = list(queryset)
        try:
            results = services.sync_prices(offers)
        except UserCreditsError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        done = Counter(results.values())
        skipped = Counter(
            str(SYNC_SKIPPED["one_time" if not offer.is_recurring else "free"])
            for offer in offers
            if offer.pk not in results
        )
        parts = [
            SYNC_RESULTS[what] % {"count": done[what]} for what in SYNC_RESULTS if done[what]
        ] or [gettext("no offer synced")]
        parts += [
            gettext("%(count)s skipped: %(reason)s") % {"count": count, "reason": reason}
            for reason, count in sorted(skipped.items())
        ]
        level = messages.WARNING if skipped else messages.SUCCESS
        self.message_user(
            request,
            gettext("Recurring offers synced: %(summary)s.") % {"summary": ", ".join(parts)},
            level,
        )

    @admin.display(description=_("price"), ordering="price")
    def price_display(self, obj):
        return money.quantize(obj.price, obj.currency)

    @admin.display(description=_("currency"), ordering="currency")
    def currency_code(self, obj):
        return obj.currency.upper()

    @admin.display(description=_("other prices"))
    def other_prices(self, obj):
        prices = sorted(obj.prices.all(), key=lambda p: p.currency)
        return (
            ", ".join(f"{money.quantize(p.price, p.currency)} {p.currency.upper()}" for p in prices)
            or "—"
        )

    @admin.display(description=_("tags"))
    def tag_list(self, obj):
        return ", ".join(t.name for t in obj.tags.all())

    @admin.display(description=_("unlocked by"))
    def unlocked_by_list(self, obj):
        groups = ", ".join(g.key for g in obj.unlocked_by.all())
        if not groups:
            return "—"
        if not obj.overriding_key:
            return groups
        return gettext("%(groups)s (replaces “%(key)s”, weight %(weight)s)") % {
            "groups": groups,
            "key": obj.overriding_key,
            "weight": obj.weight,
        }


# --- orders ------------------------------------------------------------------------------


def acting_user(metadata):
    """Who made a manual write, as the services record it (``by``, ``by_name``)."""
    metadata = metadata or {}
    if "by" not in metadata:
        return "—"
    return f"{metadata.get('by_name') or '?'} (#{metadata['by']})"


def by_user(text, user):
    """``text`` signed by the operator who wrote it, for the order history or a lot's reason."""
    return gettext("%(text)s (by %(user)s)") % {"text": text, "user": user}


class OrderEventInline(ReadOnlyMixin, admin.TabularInline):
    model = OrderEvent
    extra = 0
    fields = ("created_at", "status", "message", "done_by", "payload")
    readonly_fields = fields

    @admin.display(description=_("by"))
    def done_by(self, obj):
        return acting_user(obj.payload)


#: Why *Mark paid* leaves an order as it is.
NOT_PAYABLE = {
    OrderStatus.PAID: _("already paid"),
    OrderStatus.PARTIAL: _("already paid and partly refunded"),
    OrderStatus.REFUNDED: _("already refunded"),
    OrderStatus.EXPIRED: _("already paid (expired)"),
}


def not_payable(order):
    """Why *Mark paid* skips ``order`` (paid once already, or a bundle's item), or ``None``."""
    if order.parent_id is not None:
        return _("a bundle item (mark its bundle order paid)")
    return NOT_PAYABLE.get(order.status)


def not_refundable(order):
    """Why *Refund in full* skips ``order``: refunded already. The service refuses the rest."""
    return _("already refunded") if order.status == OrderStatus.REFUNDED else None


class MarkPaidForm(forms.Form):
    message = forms.CharField(
        label=_("Message for the order history"),
        initial=_("Validated manually."),
        max_length=500,
    )


class RefundForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=200, required=False)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "holder",
        "placed_by",
        "name",
        "coloured_status",
        "total_display",
        "currency_code",
        "created_at",
        "starts",
        "expires",
    )
    list_filter = ("status", "offer_group", "created_at")
    date_hierarchy = "created_at"
    search_fields = (*holder_search_fields(), "payment_reference", "name")
    list_select_related = ("holder", "placed_by", "offer_group")
    inlines = [OrderEventInline]
    actions = ["mark_paid", "refund"]

    def has_add_permission(self, request):
        return False  # orders are created by buyers through the services

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a snapshot: viewed here, changed only by the actions' services

    @admin.display(description=_("total"), ordering="total")
    def total_display(self, obj):
        return money.quantize(obj.total, obj.currency)

    @admin.display(description=_("currency"), ordering="currency")
    def currency_code(self, obj):
        return obj.currency.upper()

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
        message = by_user(form.cleaned_data["message"], request.user)
        run_action(
            self,
            request,
            queryset,
            services.mark_paid,
            _("%(count)s paid"),
            skip=not_payable,
            message=message,
            by=request.user,
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
            _("%(count)s refunded"),
            skip=not_refundable,
            payload={"reason": form.cleaned_data["reason"]},
            by=request.user,
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
    fields = (
        "created_at",
        "kind",
        "amount",
        "balance_after",
        "lot",
        "idempotency_key",
        "member",
        "done_by",
        "metadata",
    )
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    max_num = 0

    @admin.display(description=_("by"))
    def done_by(self, obj):
        return acting_user(obj.metadata)


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


class HolderGrantForm(GrantForm):
    """Grant tokens to any holder, with or without an account yet."""

    field_order = ("holder", "offer_group", "tokens", "expires", "reason")

    def __init__(self, *args, admin_site, **kwargs):
        super().__init__(*args, **kwargs)
        relation = CreditAccount._meta.get_field("holder").remote_field
        self.fields["holder"] = forms.ModelChoiceField(
            queryset=get_holder_model()._default_manager.all(),
            widget=admin.widgets.ForeignKeyRawIdWidget(relation, admin_site),
            label=_("Holder"),
        )
        self.fields["offer_group"] = forms.ModelChoiceField(
            queryset=OfferGroup.objects.order_by("key"), label=_("Offer group")
        )
        self.order_fields(self.field_order)


@admin.register(CreditAccount)
class CreditAccountAdmin(admin.ModelAdmin):
    change_list_template = "user_credits/admin/account_change_list.html"
    list_display = (
        "holder",
        "offer_group",
        "available",
        "held",
        "total",
        "overdraft",
        "created_at",
    )
    list_filter = ("offer_group",)
    search_fields = (*holder_search_fields(), "offer_group__key")
    list_select_related = ("holder", "offer_group")
    readonly_fields = ("available", "held", "total", "spending_limits", "auto_recharge")
    inlines = [CreditLotInline, LedgerEntryInline]
    actions = ["grant_tokens", "expire_due_lots"]

    @admin.display(description=_("spending limits"))
    def spending_limits(self, obj):
        """The members' limits in this account's holder and group, each linked to its form,
        and a link to add one."""
        limits = SpendingLimit.objects.filter(
            holder_id=obj.holder_id, offer_group_id=obj.offer_group_id
        ).select_related("member")
        items = format_html_join(
            "",
            '<li><a href="{}">{}: {} / {}</a></li>',
            (
                (
                    reverse("admin:user_credits_spendinglimit_change", args=[limit.pk]),
                    limit.member,
                    limit.tokens,
                    limit.period,
                )
                for limit in limits
            ),
        )
        add = (
            reverse("admin:user_credits_spendinglimit_add")
            + "?"
            + urlencode({"holder": obj.holder_id, "offer_group": obj.offer_group_id})
        )
        return format_html('<ul>{}</ul><a href="{}">{}</a>', items, add, _("Add a limit"))

    @admin.display(description=_("auto-recharge"))
    def auto_recharge(self, obj):
        """The account's auto-recharge, linked to its form, or a link to add one."""
        recharge = AutoRecharge.objects.filter(
            holder_id=obj.holder_id, offer_group_id=obj.offer_group_id
        ).first()
        if recharge is None:
            add = (
                reverse("admin:user_credits_autorecharge_add")
                + "?"
                + urlencode({"holder": obj.holder_id, "offer_group": obj.offer_group_id})
            )
            return format_html('<a href="{}">{}</a>', add, _("Add an auto-recharge"))
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:user_credits_autorecharge_change", args=[recharge.pk]),
            recharge_summary(recharge),
        )

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
            return services.grant(account.holder_id, account.offer_group, data["tokens"], **kwargs)

        run_action(
            self,
            request,
            queryset,
            grant,
            _("%(count)s account(s) granted %(tokens)s token(s)"),
            done_args={"tokens": data["tokens"]},
            expires=data["expires"],
            reason=by_user(data["reason"], request.user),
            by=request.user,
        )
        return None

    def get_urls(self):
        grant = self.admin_site.admin_view(self.grant_to_holder)
        return [
            path("grant/", grant, name="user_credits_creditaccount_grant"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra = {"can_grant": self.has_grant_permission(request), **(extra_context or {})}
        return super().changelist_view(request, extra)

    def grant_to_holder(self, request):
        """The grant form that picks a holder (and a group) rather than existing accounts."""
        if not self.has_grant_permission(request):
            raise PermissionDenied
        form = HolderGrantForm(
            request.POST if request.method == "POST" else None, admin_site=self.admin_site
        )
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.grant(
                    data["holder"],
                    data["offer_group"],
                    data["tokens"],
                    expires=data["expires"],
                    reason=by_user(data["reason"], request.user),
                    by=request.user,
                )
            except UserCreditsError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request,
                    gettext("Granted %(tokens)s token(s) to %(holder)s in %(group)s.")
                    % {
                        "tokens": data["tokens"],
                        "holder": data["holder"],
                        "group": data["offer_group"].key,
                    },
                    messages.SUCCESS,
                )
                return redirect("admin:user_credits_creditaccount_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": _("Grant tokens to a holder"),
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "user_credits/admin/grant_to_holder.html", context)

    @admin.action(description=_("Expire due lots now"), permissions=["grant"])
    def expire_due_lots(self, request, queryset):
        expired = tokens = 0
        for holder_id in sorted(set(queryset.values_list("holder_id", flat=True))):
            report = services.expire_credits(holder=holder_id, collect=False)
            expired += report.expired_lots
            tokens += report.expired_tokens
        self.message_user(
            request,
            gettext("Expired %(lots)s lot(s), %(tokens)s token(s).")
            % {"lots": expired, "tokens": tokens},
            messages.SUCCESS,
        )

    def has_grant_permission(self, request):
        return request.user.has_perm("user_credits.add_creditlot")


def account_link(account):
    """The account (holder and group) linked to its page; not its ``str``, which carries the
    balance of today and would be wrong on every row of the past."""
    return format_html(
        '<a href="{}">{} · {}</a>',
        reverse("admin:user_credits_creditaccount_change", args=[account.pk]),
        account.holder,
        account.offer_group.key,
    )


@admin.register(CreditLot)
class CreditLotAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "account_link",
        "order",
        "category",
        "granted",
        "remaining",
        "starts",
        "expires",
        "status",
    )
    list_filter = ("status", "category", "account__offer_group")
    search_fields = (*holder_search_fields("account__"), "reason")
    list_select_related = ("account__holder", "account__offer_group", "order")

    @admin.display(description=_("account"), ordering="account")
    def account_link(self, obj):
        return account_link(obj.account)


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
    # Each row tells the balance after its own entry, never the account's balance of today.
    list_display = (
        "created_at",
        "account_link",
        "kind",
        "amount",
        "balance_after",
        "lot",
        "idempotency_key",
        "member",
        "done_by",
    )
    list_filter = ("kind", "account__offer_group", "created_at")
    # Exact terms: a holder's name (its accounts' entries, on the account index), else an
    # idempotency key. A substring search would read the whole ledger on every search.
    search_fields = tuple(f"={field}" for field in holder_search_fields("account__"))
    search_help_text = _("A holder's username (or name) or an idempotency key, exactly.")
    list_select_related = ("account__holder", "account__offer_group", "lot", "member")
    # The ledger grows without bound: no COUNT(*) of the whole table on every page, and no
    # date hierarchy (its SELECT DISTINCT date_trunc(...) reads every row on every page; the
    # created_at filter narrows by date without a scan).
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        holder = Q()
        for field in holder_search_fields():
            holder |= Q(**{field: term})
        accounts = list(CreditAccount.objects.filter(holder).values_list("pk", flat=True))
        if accounts:
            return queryset.filter(account_id__in=accounts), False
        return queryset.filter(idempotency_key=term), False

    @admin.display(description=_("account"), ordering="account")
    def account_link(self, obj):
        return account_link(obj.account)

    @admin.display(description=_("by"))
    def done_by(self, obj):
        return acting_user(obj.metadata)


# --- subscriptions -----------------------------------------------------------------------


class PeriodOrderInline(ReadOnlyMixin, admin.TabularInline):
    model = Order
    fk_name = "subscription"
    extra = 0
    fields = ("id", "status", "starts", "expires", "total", "currency_code", "payment_reference")
    readonly_fields = fields
    ordering = ("-starts",)
    verbose_name = _("paid period")
    verbose_name_plural = _("periods")

    @admin.display(description=_("currency"))
    def currency_code(self, obj):
        return obj.currency.upper()


def not_cancelable(subscription):
    """Why *Cancel now* skips ``subscription``: canceled already."""
    if subscription.status == SubscriptionStatus.CANCELED:
        return _("already canceled")
    return None


def not_cancelable_at_period_end(subscription):
    """Why *Cancel at the period end* skips ``subscription``: canceled, set to already, or
    without a current paid period to end with."""
    if subscription.status == SubscriptionStatus.CANCELED:
        return _("already canceled")
    if subscription.cancel_at_period_end:
        return _("already set to cancel at the period end")
    if subscription.status != SubscriptionStatus.ACTIVE or subscription.current_period_end is None:
        # The service would cancel these at once: that is the other action's job.
        return _("no current paid period (cancel it now instead)")
    return None


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "holder",
        "offer",
        "quantity",
        "status",
        "cancel_at_period_end",
        "current_period_end",
        "reference",
    )
    list_filter = ("status", "cancel_at_period_end", "offer")
    search_fields = ("holder__username", "holder__email", "reference")
    list_select_related = ("holder", "offer")
    readonly_fields = (
        "holder",
        "placed_by",
        "offer",
        "quantity",
        "status",
        "cancel_at_period_end",
        "current_period_start",
        "current_period_end",
        "reference",
        "canceled_at",
        "created_at",
        "updated_at",
    )
    inlines = [PeriodOrderInline]
    actions = ["cancel_at_period_end_action", "cancel_now"]

    def has_add_permission(self, request):
        return False  # subscriptions are made by services.subscribe

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description=_("Cancel at the period end"), permissions=["change"])
    def cancel_at_period_end_action(self, request, queryset):
        run_action(
            self,
            request,
            queryset,
            services.cancel_subscription,
            _("%(count)s set to cancel at their period end"),
            skip=not_cancelable_at_period_end,
            at_period_end=True,
        )

    @admin.action(description=_("Cancel now (keeps the current tokens)"), permissions=["change"])
    def cancel_now(self, request, queryset):
        run_action(
            self,
            request,
            queryset,
            services.cancel_subscription,
            _("%(count)s canceled"),
            skip=not_cancelable,
            at_period_end=False,
        )


@admin.register(SpendingLimit)
class SpendingLimitAdmin(admin.ModelAdmin):
    """What each member may spend of a holder's credits per period."""

    list_display = ("holder", "member", "offer_group", "tokens", "period", "updated_at")
    list_filter = ("offer_group", "period")
    search_fields = (*holder_search_fields(), "member__username")
    list_select_related = ("holder", "member", "offer_group")
    raw_id_fields = ("holder", "member")


class SpendingLimitForm(forms.ModelForm):
    """A limit's period is one of the limit periods (``services.set_spending_limit``'s)."""

    period = forms.ChoiceField(
        label=_("period"), choices=[(period, period) for period in LIMIT_PERIODS]
    )

    class Meta:
        model = SpendingLimit
        fields = ("member", "offer_group", "tokens", "period")


class SpendingLimitInline(admin.TabularInline):
    """The limits of a holder's members, edited inline on the holder's admin page: add it to
    the ``inlines`` of the holder model's ``ModelAdmin`` (the example's ``WorkspaceAdmin``
    does; for users, the site's ``UserAdmin``)."""

    model = SpendingLimit
    form = SpendingLimitForm
    fk_name = "holder"
    fields = ("member", "offer_group", "tokens", "period")
    raw_id_fields = ("member",)
    extra = 0
    verbose_name_plural = _("spending limits")


def recharge_summary(recharge) -> str:
    values = {
        "quantity": recharge.quantity,
        "offer": recharge.offer,
        "threshold": recharge.threshold,
    }
    if recharge.enabled:
        return _("%(quantity)s × %(offer)s under %(threshold)s tokens") % values
    return _("disabled (%(quantity)s × %(offer)s under %(threshold)s tokens)") % values


@admin.register(AutoRecharge)
class AutoRechargeAdmin(admin.ModelAdmin):
    """Off-session top-ups when a balance runs low. Saving goes through the services, which
    keep the account's copy of the threshold in step."""

    list_display = (
        "holder",
        "offer_group",
        "offer",
        "threshold",
        "quantity",
        "enabled",
        "failures",
        "pending_order",
        "updated_at",
    )
    list_filter = ("enabled", "offer_group")
    search_fields = (*holder_search_fields(), "offer_group__key")
    list_select_related = ("holder", "offer_group", "offer")
    raw_id_fields = ("holder",)
    fields = ("holder", "offer_group", "offer", "threshold", "quantity", "enabled")
    readonly_fields = ("pending_order", "failures", "last_failure")

    def get_fields(self, request, obj=None):
        return self.fields + (self.readonly_fields if obj is not None else ())

    def save_model(self, request, obj, form, change):
        recharge = services.enable_auto_recharge(
            obj.holder_id,
            obj.offer_group,
            obj.offer,
            threshold=obj.threshold,
            quantity=obj.quantity,
        )
        if not obj.enabled:
            recharge = services.disable_auto_recharge(obj.holder_id, obj.offer_group)
        obj.pk = recharge.pk

    def delete_model(self, request, obj):
        services.disable_auto_recharge(obj.holder_id, obj.offer_group)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for recharge in queryset.select_related("offer_group"):
            self.delete_model(request, recharge)
