from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from user_credits import services
from user_credits.models import CreditAccount, LedgerEntry, Order, OrderStatus

from .factories import buy, make_group, make_offer, make_user, table_snapshot

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
    ],
)
def test_changelists_and_filters(staff, catalog, user, model, query):
    buy(user, catalog["Startup Standard Monthly"])
    services.consume(user, "Startup", 5)
    response = staff.get(url(model) + query)
    assert response.status_code == 200


def test_offer_list_shows_what_unlocks_what(staff, catalog):
    response = staff.get(url("offer") + "?q=VIP")
    assert "EbStartup" in response.text and "replaces “EventTalk”, weight 10" in response.text
    page = staff.get(url("offer", "change", catalog["Mobile Max"].pk))
    assert "Calls 120 min" in page.text  # bundle items inline


def test_order_page_shows_history_and_cannot_be_edited(staff, catalog, user):
    order = buy(user, catalog["Startup Standard Monthly"])
    page = staff.get(url("order", "change", order.pk))
    assert page.status_code == 200 and "Paid." in page.text
    before = table_snapshot()
    staff.post(url("order", "change", order.pk), {"status": "pending", "total": "0"})
    assert table_snapshot() == before
    assert staff.get(url("order", "add")).status_code == 403


def test_ledger_has_no_add_change_or_delete(staff, user):
    services.grant(user, make_group("g"), 5)
    entry = LedgerEntry.objects.get()
    assert staff.get(url("ledgerentry", "add")).status_code == 403
    assert staff.post(url("ledgerentry", "delete", entry.pk), {"post": "yes"}).status_code == 403
    staff.post(url("ledgerentry", "change", entry.pk), {"amount": 999})
    entry.refresh_from_db()
    assert entry.amount == 5


def test_mark_paid_action_asks_for_a_message_then_pays(staff, user):
    order = services.create_order(user, make_offer(token_count=7))
    data = {"action": "mark_paid", ACTION_CHECKBOX_NAME: [order.pk]}
    form = staff.post(url("order"), data)
    assert form.status_code == 200 and "Message for the order history" in form.text
    done = staff.post(
        url("order"), {**data, "apply": "1", "message": "Bank transfer 42"}, follow=True
    )
    assert "1 order(s) marked paid." in done.text
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert order.events.get(status="paid").message.startswith("Bank transfer 42 (by root)")
    assert services.get_balance(user, order.offer_group) == 7


def test_refund_action_and_its_failure(staff, user):
    paid = buy(user, make_offer(price=5, token_count=7))
    pending = services.create_order(user, make_offer(price=5))
    data = {"action": "refund", "apply": "1", "reason": "goodwill"}
    before = table_snapshot()
    failed = staff.post(url("order"), {**data, ACTION_CHECKBOX_NAME: [pending.pk]}, follow=True)
    assert "only a paid order can be refunded" in failed.text
    assert table_snapshot() == before
    done = staff.post(url("order"), {**data, ACTION_CHECKBOX_NAME: [paid.pk]}, follow=True)
    assert "1 order(s) refunded." in done.text
    assert Order.objects.get(pk=paid.pk).status == OrderStatus.REFUNDED
    assert services.get_balance(user, paid.offer_group) == 0


def test_grant_action_with_its_form(staff, user):
    account = CreditAccount.objects.create(user=user, offer_group=make_group("g"))
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
    assert services.get_balance(user, "g") == 0
    done = staff.post(url("creditaccount"), {**data, "tokens": "5", "reason": "sorry"}, follow=True)
    assert "Granted 5 token(s) to 1 account(s)." in done.text
    assert services.get_balance(user, "g") == 5
    assert LedgerEntry.objects.get().metadata["reason"] == "sorry (by root)"


def test_expire_action(staff, user, travel):
    group = make_group("g")
    services.grant(user, group, 3, expires=timezone.now() + timedelta(hours=1))
    account = CreditAccount.objects.get()
    with travel(timezone.now() + timedelta(hours=2)):
        done = staff.post(
            url("creditaccount"),
            {"action": "expire_due_lots", ACTION_CHECKBOX_NAME: [account.pk]},
            follow=True,
        )
    assert "Expired 1 lot(s), 3 token(s)." in done.text


def test_actions_need_permissions(client, user):
    clerk = make_user("clerk", is_staff=True)
    clerk.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_order", "view_creditaccount"])
    )
    client.force_login(clerk)
    order = services.create_order(user, make_offer())
    response = client.post(
        url("order"),
        {"action": "mark_paid", "apply": "1", "message": "x", ACTION_CHECKBOX_NAME: [order.pk]},
    )
    assert response.status_code in (200, 302)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.PENDING
    page = client.get(url("order"))
    assert "Mark paid" not in page.text


def test_ledger_list_queries_do_not_grow_with_rows(staff, user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    group = make_group("g")

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert staff.get(url("ledgerentry")).status_code == 200
        return len(captured)

    services.grant(user, group, 100)
    few = queries()
    for i in range(30):
        services.consume(user, group, 1, idempotency_key=f"k{i}")
    assert queries() == few  # each row's account, user, group and lot come with the page


@pytest.mark.postgres(reason="needs PostgreSQL: the estimate is its planner's")
def test_ledger_list_estimates_its_count_above_the_threshold():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from user_credits.admin import EstimatedCountPaginator

    user = make_user()
    group = make_group("g")
    for _ in range(12):
        services.grant(user, group, 1)
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


def test_ledger_search_by_username_or_key_exactly(staff, user, other_user):
    group = make_group("g")
    services.grant(user, group, 10)
    services.grant(other_user, group, 10)
    services.consume(other_user, group, 1, idempotency_key="req-42")

    def listed(term):
        response = staff.get(url("ledgerentry"), {"q": term})
        return sorted((e.account.user.username, e.kind) for e in response.context["cl"].result_list)

    assert listed("alice") == [("alice", "grant")]
    assert listed("bob") == [("bob", "consume"), ("bob", "grant")]
    assert listed("req-42") == [("bob", "consume")]
    assert listed("ali") == []  # exact terms only
