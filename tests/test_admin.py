import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from user_credits import services
from user_credits.exceptions import SpendingLimitExceeded
from user_credits.models import CreditAccount, LedgerEntry, OfferPrice, Order, OrderStatus

from .factories import (
    buy,
    holder_name,
    make_group,
    make_holder,
    make_offer,
    make_user,
    person,
    table_snapshot,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    admin_user = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    return client


def url(model, view="changelist", *args):
    return reverse(f"admin:user_credits_{model}_{view}", args=args)


@pytest.mark.parametrize(
    "model, query",
    [
        ("offer", "?offer_group__id__exact=1&kind=subscription&is_active__exact=1&q=Startup"),
        ("offergroup", "?q=talks"),
        ("tag", ""),
        ("order", "?status__exact=paid&q=alice"),
        ("creditaccount", "?q=alice"),
        ("creditlot", "?status__exact=active"),
        ("ledgerentry", "?kind__exact=consume"),
        ("ledgerentry", "?q=alice"),
        ("spendinglimit", "?q=alice"),
    ],
)
def test_changelists_and_filters(staff, catalog, holder, model, query):
    buy(holder, catalog["Startup Standard Monthly"])
    services.consume(holder, "Startup", 5)
    response = staff.get(url(model) + query)
    assert response.status_code == 200


def test_offer_list_shows_what_unlocks_what(staff, catalog):
    response = staff.get(url("offer") + "?q=VIP")
    assert "EbStartup" in response.text and "replaces “EventTalk”, weight 10" in response.text
    page = staff.get(url("offer", "change", catalog["Mobile Max"].pk))
    assert "Calls 120 min" in page.text  # bundle items inline


def test_order_page_shows_history_and_cannot_be_edited(staff, catalog, holder):
    order = buy(holder, catalog["Startup Standard Monthly"])
    page = staff.get(url("order", "change", order.pk))
    assert page.status_code == 200 and "Paid." in page.text
    before = table_snapshot()
    staff.post(url("order", "change", order.pk), {"status": "pending", "total": "0"})
    assert table_snapshot() == before
    assert staff.get(url("order", "add")).status_code == 403


def test_ledger_has_no_add_change_or_delete(staff, holder):
    services.grant(holder, make_group("g"), 5)
    entry = LedgerEntry.objects.get()
    assert staff.get(url("ledgerentry", "add")).status_code == 403
    assert staff.post(url("ledgerentry", "delete", entry.pk), {"post": "yes"}).status_code == 403
    staff.post(url("ledgerentry", "change", entry.pk), {"amount": 999})
    entry.refresh_from_db()
    assert entry.amount == 5


def test_mark_paid_action_asks_for_a_message_then_pays(staff, holder):
    order = services.create_order(holder, make_offer(token_count=7))
    data = {"action": "mark_paid", ACTION_CHECKBOX_NAME: [order.pk]}
    form = staff.post(url("order"), data)
    assert form.status_code == 200 and "Message for the order history" in form.text
    done = staff.post(
        url("order"), {**data, "apply": "1", "message": "Bank transfer 42"}, follow=True
    )
    assert "1 paid." in done.text
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert order.events.get(status="paid").message.startswith("Bank transfer 42 (by root)")
    assert services.get_balance(holder, order.offer_group) == 7
    root = get_user_model().objects.get(username="root")
    payload = order.events.get(status="paid").payload
    assert (payload["by"], payload["by_name"]) == (root.pk, "root")
    page = staff.get(url("order", "change", order.pk))
    assert f"root (#{root.pk})" in page.text  # the history shows who did it


def test_refund_action_and_its_failure(staff, holder):
    paid = buy(holder, make_offer(price=5, token_count=7))
    pending = services.create_order(holder, make_offer(price=5))
    data = {"action": "refund", "apply": "1", "reason": "goodwill"}
    before = table_snapshot()
    failed = staff.post(url("order"), {**data, ACTION_CHECKBOX_NAME: [pending.pk]}, follow=True)
    assert "0 refunded, 1 failed." in failed.text
    assert "only a paid order can be refunded" in failed.text
    assert table_snapshot() == before
    done = staff.post(url("order"), {**data, ACTION_CHECKBOX_NAME: [paid.pk]}, follow=True)
    assert "1 refunded." in done.text
    assert Order.objects.get(pk=paid.pk).status == OrderStatus.REFUNDED
    assert services.get_balance(holder, paid.offer_group) == 0
    payload = Order.objects.get(pk=paid.pk).events.get(status="refunded").payload
    assert (payload["by_name"], payload["reason"]) == ("root", "goodwill")


def test_grant_action_with_its_form(staff, holder):
    account = CreditAccount.objects.create(holder=holder, offer_group=make_group("g"))
    data = {"action": "grant_tokens", ACTION_CHECKBOX_NAME: [account.pk], "apply": "1"}
    past = timezone.localtime() - timedelta(days=1)
    bad = staff.post(
        url("creditaccount"),
        {
            **data,
            "tokens": "5",
            "reason": "x",
            "expires_0": past.date().isoformat(),
            "expires_1": "10:00:00",
        },
    )
    assert "The expiry must be in the future." in bad.text
    assert services.get_balance(holder, "g") == 0
    done = staff.post(url("creditaccount"), {**data, "tokens": "5", "reason": "sorry"}, follow=True)
    assert "1 account(s) granted 5 token(s)." in done.text
    assert services.get_balance(holder, "g") == 5
    entry = LedgerEntry.objects.get()
    assert entry.metadata["reason"] == "sorry (by root)"
    assert entry.metadata["by_name"] == "root" and entry.metadata["by"] > 0
    assert f"root (#{entry.metadata['by']})" in staff.get(url("ledgerentry")).text


def test_expire_action(staff, holder, travel):
    group = make_group("g")
    services.grant(holder, group, 3, expires=timezone.now() + timedelta(hours=1))
    account = CreditAccount.objects.get()
    with travel(timezone.now() + timedelta(hours=2)):
        done = staff.post(
            url("creditaccount"),
            {"action": "expire_due_lots", ACTION_CHECKBOX_NAME: [account.pk]},
            follow=True,
        )
    assert "Expired 1 lot(s), 3 token(s)." in done.text


def test_actions_need_permissions(client, holder):
    clerk = make_user("clerk", is_staff=True)
    clerk.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_order", "view_creditaccount"])
    )
    client.force_login(clerk)
    order = services.create_order(holder, make_offer())
    response = client.post(
        url("order"),
        {"action": "mark_paid", "apply": "1", "message": "x", ACTION_CHECKBOX_NAME: [order.pk]},
    )
    assert response.status_code in (200, 302)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.PENDING
    page = client.get(url("order"))
    assert "Mark paid" not in page.text


def test_ledger_list_queries_do_not_grow_with_rows(staff, holder):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    group = make_group("g")

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert staff.get(url("ledgerentry")).status_code == 200
        return len(captured)

    services.grant(holder, group, 100)
    few = queries()
    for i in range(30):
        services.consume(holder, group, 1, idempotency_key=f"k{i}")
    assert queries() == few  # each row's account, holder, group and lot come with the page


@pytest.mark.postgres(reason="needs PostgreSQL: the estimate is its planner's")
def test_ledger_list_estimates_its_count_above_the_threshold():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from user_credits.admin import EstimatedCountPaginator

    holder = make_holder()
    group = make_group("g")
    for _ in range(12):
        services.grant(holder, group, 1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE user_credits_ledgerentry")

    class Small(EstimatedCountPaginator):
        exact_up_to = 5

    entries = LedgerEntry.objects.order_by("-created_at", "-id")
    with CaptureQueriesContext(connection) as captured:
        estimated = Small(entries, 100).count
    assert estimated == 12  # fresh statistics: the estimate is exact here
    assert [q["sql"].split()[0] for q in captured] == ["EXPLAIN"]  # no COUNT(*)
    with CaptureQueriesContext(connection) as captured:
        assert EstimatedCountPaginator(entries.filter(kind="grant"), 100).count == 12
    assert "COUNT(*)" in captured[-1]["sql"]  # few rows: counted exactly


def test_ledger_search_by_username_or_key_exactly(staff, holder, other_holder):
    group = make_group("g")
    services.grant(holder, group, 10)
    services.grant(other_holder, group, 10)
    services.consume(other_holder, group, 1, idempotency_key="req-42")

    def listed(term):
        response = staff.get(url("ledgerentry"), {"q": term})
        return sorted((str(e.account.holder), e.kind) for e in response.context["cl"].result_list)

    alice, bob = str(holder), str(other_holder)
    assert listed(holder_name(holder)) == [(alice, "grant")]
    assert listed(holder_name(other_holder)) == [(bob, "consume"), (bob, "grant")]
    assert listed("req-42") == [(bob, "consume")]
    assert listed("ali") == []  # exact terms only


def test_offer_prices_inline(staff):
    offer = make_offer("Inline", price=Decimal("20"), currency="usd")
    change = url("offer", "change", offer.pk)
    page = staff.get(change)
    assert "Prices in other currencies (no conversion)" in page.text
    form = {
        "name": offer.name,
        "kind": offer.kind,
        "offer_group": offer.offer_group_id,
        "is_active": "on",
        "price": "20",
        "currency": "usd",
        "cycle": offer.cycle,
        "billing": "one_time",
        "rollover": "none",
        "weight": "0",
        "prices-TOTAL_FORMS": "1",
        "prices-INITIAL_FORMS": "0",
        "prices-0-currency": "usd",
        "prices-0-price": "18",
        "bundle_items-TOTAL_FORMS": "0",
        "bundle_items-INITIAL_FORMS": "0",
    }
    refused = staff.post(change, form)
    assert refused.status_code == 200 and "own currency" in refused.text
    assert not OfferPrice.objects.exists()
    refused = staff.post(change, {**form, "prices-0-currency": "kwd", "prices-0-price": "5.1255"})
    assert refused.status_code == 200 and not OfferPrice.objects.exists()
    saved = staff.post(change, {**form, "prices-0-currency": "kwd", "prices-0-price": "5.125"})
    assert saved.status_code == 302
    assert list(OfferPrice.objects.values_list("currency", "price")) == [("kwd", Decimal("5.125"))]
    listed = staff.get(url("offer") + "?q=Inline")
    assert "5.125 KWD" in listed.text and "20.00" in listed.text


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_mark_paid_reports_what_it_skipped_and_why(staff, holder):
    offer = make_offer(price=5, token_count=7)
    pending = [services.create_order(holder, offer) for _ in range(2)]
    paid = buy(holder, offer)
    refunded = buy(holder, offer)
    services.refund(refunded)
    before = {o.pk: Order.objects.get(pk=o.pk).status for o in (paid, refunded)}
    events = {o.pk: o.events.count() for o in (paid, refunded)}
    chosen = [o.pk for o in (*pending, paid, refunded)]
    done = staff.post(
        url("order"),
        {"action": "mark_paid", "apply": "1", "message": "x", ACTION_CHECKBOX_NAME: chosen},
        follow=True,
    )
    assert messages_of(done) == ["2 paid, 2 skipped: 1 already paid, 1 already refunded."]
    assert "marked paid" not in done.text
    for order in pending:
        assert Order.objects.get(pk=order.pk).status == OrderStatus.PAID
    for order in (paid, refunded):  # nothing written for the skipped orders
        assert Order.objects.get(pk=order.pk).status == before[order.pk]
        assert order.events.count() == events[order.pk]
    assert services.get_balance(holder, offer.offer_group) == 7 * 3


def test_mark_paid_on_a_refunded_order_alone_says_nothing_was_paid(staff, holder):
    refunded = buy(holder, make_offer(price=5, token_count=7))
    services.refund(refunded)
    before = table_snapshot()
    done = staff.post(
        url("order"),
        {"action": "mark_paid", "apply": "1", "message": "x", ACTION_CHECKBOX_NAME: [refunded.pk]},
        follow=True,
    )
    assert messages_of(done) == ["0 paid, 1 skipped: already refunded."]
    assert [m.level_tag for m in done.context["messages"]] == ["warning"]
    assert table_snapshot() == before


def test_refund_reports_skipped_and_failed(staff, holder):
    offer = make_offer(price=5, token_count=7)
    paid, refunded = buy(holder, offer), buy(holder, offer)
    services.refund(refunded)
    pending = services.create_order(holder, offer)
    done = staff.post(
        url("order"),
        {
            "action": "refund",
            "apply": "1",
            "reason": "",
            ACTION_CHECKBOX_NAME: [paid.pk, refunded.pk, pending.pk],
        },
        follow=True,
    )
    shown = messages_of(done)
    assert shown[0] == "1 refunded, 1 skipped: already refunded, 1 failed."
    assert shown[1] == (
        f"{Order.objects.get(pk=pending.pk)}: Order #{pending.pk} is pending; "
        "only a paid order can be refunded."
    )
    assert Order.objects.get(pk=paid.pk).status == OrderStatus.REFUNDED
    assert Order.objects.get(pk=pending.pk).status == OrderStatus.PENDING


def test_grant_form_has_the_admin_date_time_widget(staff, holder):
    account = CreditAccount.objects.create(holder=holder, offer_group=make_group("g"))
    form = staff.post(
        url("creditaccount"), {"action": "grant_tokens", ACTION_CHECKBOX_NAME: [account.pk]}
    )
    assert form.status_code == 200
    # The split widget (a date box and a time box, classed for the calendar and the clock)
    # and the scripts that draw them.
    assert 'name="expires_0"' in form.text and 'class="vDateField"' in form.text
    assert 'name="expires_1"' in form.text and 'class="vTimeField"' in form.text
    for script in ("admin/js/core.js", "admin/js/calendar.js", "DateTimeShortcuts.js", "jsi18n"):
        assert script in form.text


def test_currencies_are_upper_case_in_the_admin_lists(staff, holder):
    offer = make_offer("Priced", price=Decimal("20"), currency="eur")
    services.create_order(holder, offer)
    offers = staff.get(url("offer") + "?q=Priced")
    orders = staff.get(url("order"))
    for page in (offers, orders):
        assert '<td class="field-currency_code">EUR</td>' in page.text
        assert ">eur<" not in page.text


def test_account_page_shows_its_spending_limits(staff, holder, other_user):
    group = make_group("g")
    services.grant(holder, group, 10)
    services.set_spending_limit(holder, other_user, group, 7, period="weekly")
    account = CreditAccount.objects.get(holder=holder)
    page = staff.get(url("creditaccount", "change", account.pk))
    assert page.status_code == 200
    assert "bob: 7 / weekly" in page.text
    assert f"?holder={holder.pk}&amp;offer_group={group.pk}" in page.text
    found = staff.get(url("spendinglimit"), {"q": "alice"})
    assert found.status_code == 200 and "bob" in found.text
    assert staff.get(url("order"), {"q": "alice"}).status_code == 200


def test_grant_form_picks_a_holder(staff, holder):
    group = make_group("g")
    page = staff.get(url("creditaccount"))
    assert "Grant tokens to a holder" in page.text
    form = staff.get(reverse("admin:user_credits_creditaccount_grant"))
    assert form.status_code == 200 and 'name="holder"' in form.text
    bad = staff.post(
        reverse("admin:user_credits_creditaccount_grant"),
        {"holder": "999999", "offer_group": group.pk, "tokens": "5", "reason": "r"},
    )
    assert bad.status_code == 200 and not CreditAccount.objects.exists()
    done = staff.post(
        reverse("admin:user_credits_creditaccount_grant"),
        {"holder": holder.pk, "offer_group": group.pk, "tokens": "5", "reason": "welcome"},
        follow=True,
    )
    assert f"Granted 5 token(s) to {holder} in g." in done.text
    assert services.get_balance(holder, "g") == 5
    entry = LedgerEntry.objects.get(kind="grant")
    assert entry.metadata["by_name"] == "root"


def test_grant_form_needs_the_grant_permission(client, holder):
    clerk = make_user("clerk", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_creditaccount"))
    client.force_login(clerk)
    assert "Grant tokens to a holder" not in client.get(url("creditaccount")).text
    assert client.get(reverse("admin:user_credits_creditaccount_grant")).status_code == 403


def test_ledger_rows_show_the_balance_after_each_entry_not_today(staff, holder):
    group = make_group("g")
    services.grant(holder, group, 10)
    services.consume(holder, group, 3)
    services.consume(holder, group, 2)
    account = CreditAccount.objects.get(holder=holder, offer_group=group)
    page = staff.get(url("ledgerentry"))
    after = re.findall(r'<td class="field-balance_after">(-?\d+)</td>', page.text)
    assert after == ["5", "7", "10"]  # newest first: each row its own balance
    link = f'<a href="{url("creditaccount", "change", account.pk)}">{holder} · g</a>'
    assert page.text.count(link) == 3
    assert str(account) not in page.text  # "alice · g: 5", today's balance, on no row
    lots = staff.get(url("creditlot"))
    assert link in lots.text and str(account) not in lots.text


def test_subscription_actions_report_what_they_did_and_skipped(staff, holder, other_holder):
    from user_credits.models import Billing, Subscription, SubscriptionStatus

    offer = make_offer(price=Decimal("20"), token_count=50, billing=Billing.RECURRING)
    running = services.subscribe(holder, offer)
    services.renew_subscription(
        running,
        period_start=timezone.now() - timedelta(days=1),
        period_end=timezone.now() + timedelta(days=29),
        reference="in_1",
    )
    incomplete = services.subscribe(other_holder, offer)  # no paid period yet
    chosen = [running.pk, incomplete.pk]

    def act(action):
        response = staff.post(
            url("subscription"), {"action": action, ACTION_CHECKBOX_NAME: chosen}, follow=True
        )
        return messages_of(response)

    assert act("cancel_at_period_end_action") == [
        "1 set to cancel at their period end, "
        "1 skipped: no current paid period (cancel it now instead)."
    ]
    running.refresh_from_db()
    assert running.status == SubscriptionStatus.ACTIVE and running.cancel_at_period_end
    assert Subscription.objects.get(pk=incomplete.pk).status == SubscriptionStatus.INCOMPLETE
    assert act("cancel_at_period_end_action") == [
        "0 set to cancel at their period end, 2 skipped: "
        "1 already set to cancel at the period end, "
        "1 no current paid period (cancel it now instead)."
    ]
    assert act("cancel_now") == ["2 canceled."]
    assert act("cancel_now") == ["0 canceled, 2 skipped: already canceled."]


def test_sync_prices_action_reports_the_offers_it_left_out(staff):
    from user_credits.models import Billing

    recurring = make_offer("Monthly plan", price=Decimal("20"), billing=Billing.RECURRING)
    free = make_offer("Free plan", price=Decimal("0"), billing=Billing.RECURRING)
    once = make_offer("Pack")
    response = staff.post(
        url("offer"),
        {"action": "sync_prices", ACTION_CHECKBOX_NAME: [recurring.pk, free.pk, once.pk]},
        follow=True,
    )
    assert messages_of(response) == [
        "Recurring offers synced: 1 unchanged, 1 skipped: free (nothing to pay), "
        "1 skipped: sold once, not recurring."
    ]


def test_period_inline_shows_the_currency_upper_case(staff, holder):
    from user_credits.models import Billing

    offer = make_offer(price=Decimal("20"), currency="eur", billing=Billing.RECURRING)
    sub = services.subscribe(holder, offer)
    services.renew_subscription(
        sub,
        period_start=timezone.now() - timedelta(days=1),
        period_end=timezone.now() + timedelta(days=29),
        reference="in_eur",
    )
    page = staff.get(url("subscription", "change", sub.pk))
    assert "in_eur" in page.text and "EUR" in page.text and ">eur<" not in page.text


def test_spending_limits_are_edited_inline_on_the_holders_page(staff, holder, rf, monkeypatch):
    """``SpendingLimitInline`` on the holder model's admin (the example's workspaces have it;
    a site whose holders are users adds it to its user admin, as here)."""
    from django.contrib import admin

    from user_credits.admin import SpendingLimitInline
    from user_credits.models import SpendingLimit

    model_admin = admin.site._registry[type(holder)]
    if SpendingLimitInline not in model_admin.inlines:
        monkeypatch.setattr(model_admin, "inlines", [*model_admin.inlines, SpendingLimitInline])
    meta = type(holder)._meta
    page = staff.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[holder.pk]))
    assert page.status_code == 200
    assert 'name="credit_spending_limits-TOTAL_FORMS"' in page.text
    assert "Spending limits" in page.text
    group, member = make_group("g"), person(holder)
    request = rf.post("/")
    request.user = get_user_model().objects.get(username="root")
    inline = SpendingLimitInline(type(holder), admin.site)
    FormSet = inline.get_formset(request, holder)
    prefix = FormSet.get_default_prefix()

    def submit(**row):
        data = {f"{prefix}-TOTAL_FORMS": "1", f"{prefix}-INITIAL_FORMS": "0"}
        data.update({f"{prefix}-0-{k}": v for k, v in row.items()})
        return FormSet(data, instance=holder, prefix=prefix)

    bad = submit(member=member.pk, offer_group=group.pk, tokens="5", period="fortnightly")
    assert not bad.is_valid() and "period" in bad.errors[0]
    zero = submit(member=member.pk, offer_group=group.pk, tokens="0", period="weekly")
    assert not zero.is_valid()
    assert not SpendingLimit.objects.exists()
    good = submit(member=member.pk, offer_group=group.pk, tokens="7", period="weekly")
    assert good.is_valid(), good.errors
    good.save()
    limit = SpendingLimit.objects.get()
    assert (limit.holder_id, limit.member, limit.tokens, limit.period) == (
        holder.pk,
        member,
        7,
        "weekly",
    )
    services.grant(holder, group, 20)
    with pytest.raises(SpendingLimitExceeded):  # the limit set inline is enforced
        services.consume(holder, group, 8, member=member)
    assert services.consume(holder, group, 7, member=member).balance == 13
