"""Members and spending limits (DESIGN §6): who may spend a holder's credits, and how much."""

import itertools
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from user_credits import models, services
from user_credits.exceptions import (
    InvalidArgument,
    SpendingLimitExceeded,
    SpendingNotAllowed,
)
from user_credits.services.cycles import period_start

from .factories import assert_ledger_consistent, make_group, make_holder, make_user, person

API = "/api/credits/"
KEYS = (f"key-{n}" for n in itertools.count())

#: The team: ``owner`` holds the credits (a user, or a workspace that its ``person`` owns);
#: members spend them.
TEAM = {}


def team_may_spend(user, holder):
    """The test's ``CAN_SPEND``: the holder and the members of their team."""
    return user.pk == person(holder).pk or user.pk in TEAM.get(holder.pk, ())


@pytest.fixture
def team(db):
    owner = make_holder("owner")
    members = [make_user(f"m{i}") for i in range(4)]
    outsider = make_user("outsider")
    TEAM.clear()
    TEAM[owner.pk] = {m.pk for m in members}
    group = make_group("g")
    services.grant(owner, group, 1000)
    with override_settings(USER_CREDITS={"CAN_SPEND": "tests.test_spending.team_may_spend"}):
        yield {"owner": owner, "members": members, "outsider": outsider, "group": group}
    TEAM.clear()


def _rows():
    return (
        models.LedgerEntry.objects.count(),
        models.Hold.objects.count(),
        list(models.CreditAccount.objects.values_list("balance", flat=True)),
    )


def test_member_is_recorded_on_the_entries(team):
    member = team["members"][0]
    result = services.consume(team["owner"], "g", 5, member=member)
    assert [e.member_id for e in result.entries] == [member.pk]
    assert models.LedgerEntry.objects.get(pk=result.entries[0].pk).member_id == member.pk
    hold = services.hold(team["owner"], "g", 3, member=member)
    assert hold.member_id == member.pk
    captured = services.capture(hold)
    assert {e.member_id for e in captured.entries} == {member.pk}


def test_a_member_whom_can_spend_refuses_writes_nothing(team):
    before = _rows()
    with pytest.raises(SpendingNotAllowed) as caught:
        services.consume(team["owner"], "g", 1, member=team["outsider"])
    assert caught.value.field == "member"
    with pytest.raises(SpendingNotAllowed):
        services.hold(team["owner"], "g", 1, member=team["outsider"].pk)
    assert _rows() == before


def test_a_holder_of_the_wrong_model_is_refused(team):
    with pytest.raises(InvalidArgument) as caught:
        services.consume(team["group"], "g", 1)
    assert caught.value.field == "holder"
    with pytest.raises(InvalidArgument) as caught:
        services.grant(models.Offer(), "g", 1)
    assert caught.value.field == "holder"


@pytest.mark.parametrize(
    ("tokens", "period", "field"),
    [
        (0, "monthly", "tokens"),
        (-5, "monthly", "tokens"),
        (True, "monthly", "tokens"),
        (5, "fortnightly", "period"),
        (5, "once", "period"),
        (5, "custom", "period"),
    ],
)
def test_bad_limits_are_refused(team, tokens, period, field):
    with pytest.raises(InvalidArgument) as caught:
        services.set_spending_limit(team["owner"], team["members"][0], "g", tokens, period=period)
    assert caught.value.field == field
    assert not models.SpendingLimit.objects.exists()


def test_setting_a_limit_again_changes_it_and_removing_lifts_it(team):
    owner, member = team["owner"], team["members"][0]
    services.set_spending_limit(owner, member, "g", 10)
    limit = services.set_spending_limit(owner, member, "g", 4, period="weekly")
    assert models.SpendingLimit.objects.count() == 1
    assert (limit.tokens, limit.period) == (4, "weekly")
    with pytest.raises(SpendingLimitExceeded):
        services.consume(owner, "g", 5, member=member)
    assert services.remove_spending_limit(owner, member, "g") is True
    assert services.consume(owner, "g", 5, member=member).balance == 995


def test_limit_counts_consumptions_and_holds_of_the_member_only(team):
    owner, (alice, bob, *_) = team["owner"], team["members"]
    services.set_spending_limit(owner, alice, "g", 10)
    services.consume(owner, "g", 4, member=alice)
    services.consume(owner, "g", 50, member=bob)  # bob has no limit
    services.consume(owner, "g", 50)  # nor the server
    hold = services.hold(owner, "g", 3, member=alice)
    before = _rows()
    with pytest.raises(SpendingLimitExceeded) as caught:
        services.consume(owner, "g", 4, member=alice)
    error = caught.value
    assert (error.limit, error.spent, error.requested, error.available) == (10, 7, 4, 3)
    assert _rows() == before
    with pytest.raises(SpendingLimitExceeded):
        services.hold(owner, "g", 4, member=alice)
    services.consume(owner, "g", 3, member=alice)  # exactly the limit
    # Capturing what was held stays within the limit; capturing more does not.
    with pytest.raises(SpendingLimitExceeded):
        services.capture(hold, 4)
    assert services.capture(hold, 3).balance == 1000 - 4 - 100 - 3 - 3


def test_the_period_is_the_calendar_month_in_the_site_time_zone(team, travel, settings):
    owner, member = team["owner"], team["members"][0]
    services.set_spending_limit(owner, member, "g", 10)
    settings.TIME_ZONE = "Europe/Paris"
    # 23:30 UTC on Jan 31 is already February 1st in Paris.
    with travel(datetime(2026, 1, 31, 22, 30, tzinfo=UTC)):
        services.consume(owner, "g", 10, member=member)
        with pytest.raises(SpendingLimitExceeded):
            services.consume(owner, "g", 1, member=member)
    with travel(datetime(2026, 1, 31, 23, 30, tzinfo=UTC)):
        assert period_start(datetime(2026, 1, 31, 23, 30, tzinfo=UTC), "monthly") == datetime(
            2026, 1, 31, 23, 0, tzinfo=UTC
        )
        services.consume(owner, "g", 10, member=member)
        with pytest.raises(SpendingLimitExceeded):
            services.consume(owner, "g", 1, member=member)


def test_period_starts():
    now = datetime(2026, 5, 20, 15, 0, tzinfo=UTC)  # a Wednesday
    assert period_start(now, "daily") == datetime(2026, 5, 20, tzinfo=UTC)
    assert period_start(now, "weekly") == datetime(2026, 5, 18, tzinfo=UTC)
    assert period_start(now, "bi-weekly") in (
        datetime(2026, 5, 18, tzinfo=UTC),
        datetime(2026, 5, 11, tzinfo=UTC),
    )
    assert period_start(now, "trimester") == datetime(2026, 4, 1, tzinfo=UTC)
    assert period_start(now, "semester") == datetime(2026, 1, 1, tzinfo=UTC)
    assert period_start(now, "yearly") == datetime(2026, 1, 1, tzinfo=UTC)
    fortnight = period_start(now, "bi-weekly")
    assert period_start(fortnight + timedelta(days=13), "bi-weekly") == fortnight


# --- API -------------------------------------------------------------------------------------


@pytest.fixture
def consumer(db):
    robot = make_user("robot")
    robot.user_permissions.add(Permission.objects.get(codename="consume_credits"))
    client = APIClient()
    client.force_authenticate(robot)
    return client


def test_api_limit_is_402_with_its_figures_and_refusal_403(team, consumer):
    owner, member = team["owner"], team["members"][0]
    services.set_spending_limit(owner, member, "g", 5)
    body = {"holder": owner.pk, "offer_group": "g", "count": 4, "member": member.pk}
    first = consumer.post(API + "consume/", body, format="json", HTTP_IDEMPOTENCY_KEY=next(KEYS))
    assert first.status_code == 201, first.json()
    over = consumer.post(API + "consume/", body, format="json", HTTP_IDEMPOTENCY_KEY=next(KEYS))
    assert over.status_code == 402
    data = over.json()
    assert data["code"] == "spending_limit_exceeded"
    assert (data["limit"], data["spent"], data["requested"]) == (5, 4, 4)
    refused = consumer.post(
        API + "consume/",
        {**body, "member": team["outsider"].pk},
        format="json",
        HTTP_IDEMPOTENCY_KEY=next(KEYS),
    )
    assert refused.status_code == 403 and refused.json()["code"] == "spending_not_allowed"
    held = consumer.post(
        API + "holds/", {**body, "count": 1}, format="json", HTTP_IDEMPOTENCY_KEY=next(KEYS)
    )
    assert held.status_code == 201 and held.json()["member"] == member.pk
    assert models.LedgerEntry.objects.filter(member=member).count() == 1


@pytest.mark.users_only(reason="the API takes `user` for `holder` only when holders are users")
def test_api_takes_holder_and_user_as_its_alias(team, consumer):
    owner = team["owner"]
    by_holder = consumer.post(
        API + "consume/",
        {"holder": owner.pk, "offer_group": "g", "count": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY=next(KEYS),
    )
    by_user = consumer.post(
        API + "consume/",
        {"user": owner.pk, "offer_group": "g", "count": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY=next(KEYS),
    )
    assert (by_holder.status_code, by_user.status_code) == (201, 201)
    assert by_user.json()["balance"] == 998
    both = consumer.post(
        API + "consume/",
        {"holder": owner.pk, "user": team["outsider"].pk, "offer_group": "g", "count": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY=next(KEYS),
    )
    assert both.status_code == 400 and "user" in both.json()["fields"]
    neither = consumer.post(
        API + "consume/",
        {"offer_group": "g", "count": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY=next(KEYS),
    )
    assert neither.status_code == 400 and "holder" in neither.json()["fields"]
    assert services.get_balance(owner, "g") == 998


# --- PostgreSQL: members racing under their limits -------------------------------------------


@pytest.mark.postgres
def test_members_never_exceed_their_limits_under_concurrency(team):
    """8 threads, 4 members of one team with limits, one account: no member goes over their
    limit, the team never spends more than it has, and the ledger stays consistent."""
    owner, members = team["owner"], team["members"]
    limits = [40, 55, 70, 85]
    for member, tokens in zip(members, limits, strict=True):
        services.set_spending_limit(owner, member, "g", tokens)
    # Fewer tokens than the limits add up to: the account runs dry too.
    services.consume(owner, "g", 1000 - 200)
    errors, outcomes = [], []
    barrier = threading.Barrier(8)

    def spend(index):
        member = members[index % 4]
        try:
            barrier.wait()
            for n in range(30):
                try:
                    if n % 5 == 4:
                        hold = services.hold(owner, "g", 2, member=member)
                        services.capture(hold)
                    else:
                        services.consume(owner, "g", 1 + (index + n) % 4, member=member)
                    outcomes.append("ok")
                except SpendingLimitExceeded:
                    outcomes.append("limit")
                except services.consumption.InsufficientCredits:
                    outcomes.append("dry")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    with override_settings(USER_CREDITS={"CAN_SPEND": "tests.test_spending.team_may_spend"}):
        threads = [threading.Thread(target=spend, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    spent = {
        member.pk: -sum(
            models.LedgerEntry.objects.filter(member=member, kind="consume").values_list(
                "amount", flat=True
            )
        )
        for member in members
    }
    for member, tokens in zip(members, limits, strict=True):
        assert spent[member.pk] <= tokens
    assert sum(spent.values()) <= 200
    assert services.get_balance(owner, "g") == 200 - sum(spent.values()) >= 0
    assert "limit" in outcomes and "ok" in outcomes
    assert_ledger_consistent()
    assert services.verify_ledger().problems == []
