import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command, load_command_class
from django.core.management.base import OutputWrapper
from django.db import connections

from user_credits import services, signals
from user_credits.exceptions import InvalidArgument, UnknownOfferGroup
from user_credits.holders import holder_is_user
from user_credits.models import (
    CreditAccount,
    CreditLot,
    EntryKind,
    LedgerEntry,
    LotStatus,
    OrderStatus,
)

from .factories import (
    assert_ledger_consistent,
    buy,
    holder_name,
    make_group,
    make_holder,
    make_user,
    table_snapshot,
)
from .faults import failing_ledger_insert

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def received():
    """Collect what the warning and expiry signals send."""
    got = {"expired": [], "expiring": [], "low": []}
    handlers = {
        signals.credits_expired: lambda **kw: got["expired"].append(
            (kw["offer_group"], kw["amount"])
        ),
        signals.credits_expiring: lambda **kw: got["expiring"].append(kw["lot"].pk),
        signals.credits_low: lambda **kw: got["low"].append(
            (kw["offer_group"], kw["balance"], kw["threshold"])
        ),
    }
    for signal, handler in handlers.items():
        signal.connect(handler, weak=False)
    yield got
    for signal, handler in handlers.items():
        signal.disconnect(handler)


def test_expiry_removes_only_the_expired_lots_remainder(
    catalog, holder, travel, on_commit, received
):
    with travel(T0):
        pack = buy(holder, catalog["3 Talks"])  # yearly
        forever = buy(holder, catalog["EventTalk"])  # never expires
        services.consume(holder, "talks", 1)
    with travel(T0 + timedelta(days=366)), on_commit():
        report = services.expire_credits()
    assert [lot.order_id for lot in report.expired] == [pack.pk]
    assert (report.expired_lots, report.expired_tokens, report.expired_orders) == (1, 2, 1)
    entry = LedgerEntry.objects.get(kind=EntryKind.EXPIRE)
    assert (entry.amount, entry.balance_after) == (-2, 1)
    pack.refresh_from_db()
    forever.refresh_from_db()
    assert pack.status == OrderStatus.EXPIRED and forever.status == OrderStatus.PAID
    assert pack.events.filter(status=OrderStatus.EXPIRED).count() == 1
    assert services.get_balance(holder, "talks") == 1
    assert received["expired"] == [("talks", 2)]
    assert_ledger_consistent()


def test_running_twice_changes_nothing(holder, travel):
    group = make_group("g")
    with travel(T0):
        services.grant(holder, group, 5, expires=T0 + timedelta(days=1))
    with travel(T0 + timedelta(days=2)):
        services.expire_credits()
        before = table_snapshot()
        report = services.expire_credits()
    assert (report.expired_lots, report.expired_orders) == (0, 0)
    assert table_snapshot() == before


def test_fully_consumed_order_still_ends(holder, travel):
    group = make_group("g")
    from .factories import make_offer

    with travel(T0):
        order = buy(holder, make_offer(group=group, token_count=3))
        services.consume(holder, group, 3)
    with travel(T0 + timedelta(days=40)):
        report = services.expire_credits()
    order.refresh_from_db()
    assert order.status == OrderStatus.EXPIRED
    assert (report.expired_lots, report.expired_orders) == (0, 1)
    assert not LedgerEntry.objects.filter(kind=EntryKind.EXPIRE).exists()


def test_batches_cover_every_account_and_only_the_given_user(travel):
    group = make_group("g")
    users = [make_holder() for _ in range(7)]
    with travel(T0):
        for u in users:
            services.grant(u, group, 2, expires=T0 + timedelta(hours=1))
            services.grant(u, group, 1)
    with travel(T0 + timedelta(hours=2)):
        one = services.expire_credits(user=users[0], batch_size=2)
        assert one.expired_lots == 1
        rest = services.expire_credits(batch_size=2)
    assert rest.expired_lots == 6
    assert set(CreditAccount.objects.values_list("balance", flat=True)) == {1}
    assert_ledger_consistent()


def test_expiring_warnings_fire_once_per_lot(catalog, holder, travel, on_commit, received):
    with travel(T0):
        buy(holder, catalog["Startup Standard Monthly"])  # ends Apr 1
        buy(holder, catalog["3 Talks"])  # ends next year
    with travel(T0 + timedelta(days=25)), on_commit():
        first = services.expire_credits(warn_before=timedelta(days=7))
    with travel(T0 + timedelta(days=26)), on_commit():
        second = services.expire_credits(warn_before=timedelta(days=7))
    assert [lot.account.offer_group.key for lot in first.expiring] == ["Startup"]
    assert second.expiring == []
    assert len(received["expiring"]) == 1
    assert CreditLot.objects.filter(expiry_warned_at__isnull=False).count() == 1


def test_low_balance_warnings_fire_once_per_threshold_and_rearm(
    holder, other_holder, on_commit, received
):
    calls = make_group("calls")
    services.grant(holder, calls, 20)
    services.grant(other_holder, calls, 100)
    with on_commit():
        services.consume(holder, calls, 12)  # 8 left
        report = services.expire_credits(low={"calls": 10})
        again = services.expire_credits(low=[("calls", 10)])
    assert [a.holder_id for a in report.low] == [holder.pk]
    assert again.low == []
    assert received["low"] == [("calls", 8, 10)]
    # A lower threshold is a new warning; a refill re-arms it.
    with on_commit():
        services.consume(holder, calls, 4)
        assert len(services.expire_credits(low={"calls": 5}).low) == 1
        services.grant(holder, calls, 50)
        assert services.expire_credits(low={"calls": 5}).low == []
        services.consume(holder, calls, 52)
        assert len(services.expire_credits(low={"calls": 5}).low) == 1
    assert len(received["low"]) == 3


def test_bad_arguments(holder):
    with pytest.raises(UnknownOfferGroup):
        services.expire_credits(low={"nope": 3})
    make_group("g")
    with pytest.raises(InvalidArgument):
        services.expire_credits(low={"g": -1})
    with pytest.raises(InvalidArgument):
        services.expire_credits(warn_before="soon")


def test_dry_run_reports_and_writes_nothing(holder, travel, on_commit, received):
    group = make_group("g")
    with travel(T0):
        services.grant(holder, group, 5, expires=T0 + timedelta(days=1))
        services.grant(holder, group, 1, expires=T0 + timedelta(days=5))
    with travel(T0 + timedelta(days=2)):
        before = table_snapshot()
        with on_commit():
            report = services.expire_credits(
                dry_run=True, warn_before=timedelta(days=7), low={"g": 3}
            )
        assert table_snapshot() == before
    assert (report.expired_lots, report.expiring_lots, report.low_accounts) == (1, 1, 1)
    assert received == {"expired": [], "expiring": [], "low": []}


@pytest.mark.django_db(transaction=True)
def test_a_crash_in_a_batch_keeps_finished_batches(travel):
    group = make_group("g")
    users = [make_holder() for _ in range(4)]
    with travel(T0):
        for u in users:
            services.grant(u, group, 3, expires=T0 + timedelta(hours=1))
    third = CreditAccount.objects.get(holder=users[2])
    with travel(T0 + timedelta(hours=2)):
        with failing_ledger_insert("expire", from_account=third.pk) as error:
            with pytest.raises(error):
                services.expire_credits(batch_size=2)
        assert CreditLot.objects.filter(status=LotStatus.EXPIRED).count() == 2
        assert_ledger_consistent()
        assert services.expire_credits().expired_lots == 2
    assert not CreditLot.objects.filter(status=LotStatus.ACTIVE, remaining__gt=0).exists()
    assert_ledger_consistent()


# --- the command -------------------------------------------------------------------------


def run(*args, stderr=None):
    out = StringIO()
    call_command("user_credits_expire", *args, stdout=out, stderr=stderr or StringIO())
    return out.getvalue()


def test_command_expires_and_warns(holder, travel):
    group = make_group("calls")
    with travel(T0):
        services.grant(holder, group, 5, expires=T0 + timedelta(days=1))
        services.grant(holder, group, 2, expires=T0 + timedelta(days=4))
    with travel(T0 + timedelta(days=2)):
        dry = run("--dry-run")
        assert "Would expire 1 lot(s), 5 token(s)" in dry
        assert CreditLot.objects.filter(status=LotStatus.EXPIRED).count() == 0
        text = run("--warn-before", "7d", "--low", "calls=2", "--batch-size", "10")
        assert "Expired 1 lot(s), 5 token(s)" in text
        name = holder_name(holder)  # holders by natural key
        assert f"expiring: holder {name} calls: 2 token(s)" in text
        assert "on 2026-03-05 08:00:00+00:00" in text
        assert f"low: holder {name} calls: 2 token(s), minimum 2" in text
        data = json.loads(
            run("--json", "--warn-before", "7d", "--low", "calls=2", "--holder", str(holder.pk))
        )
    assert data["expired_lots"] == 0 and data["expiring"] == [] and data["low"] == []


@pytest.mark.parametrize(
    "args",
    [["--warn-before", "soon"], ["--low", "calls"], ["--low", "nope=3"], ["--batch-size", "0"]],
)
def test_command_rejects_bad_arguments(args):
    make_group("calls")
    with pytest.raises(CommandError):
        run(*args)


def test_unknown_low_group_is_a_usage_error_listing_the_groups_and_nothing_is_done(holder, travel):
    group = make_group("calls")
    make_group("talks")
    with travel(T0):
        services.grant(holder, group, 5, expires=T0 + timedelta(days=1))
    with travel(T0 + timedelta(days=2)):
        before = table_snapshot()
        with pytest.raises(CommandError) as exc:
            run("--low", "calls=1", "--low", "api-calls=100")
        assert exc.value.returncode == 2
        assert str(exc.value) == (
            "--low: unknown offer group(s) api-calls; nothing was done. Offer groups: calls, talks."
        )
        assert table_snapshot() == before  # the due lot was not expired either
        # From the command line: exit status 2, the message on stderr.
        command = load_command_class("user_credits", "user_credits_expire")
        err = StringIO()
        command.stderr = OutputWrapper(err)
        # (run_from_argv closes the connections when done; the test's must stay open.)
        with pytest.raises(SystemExit) as exit_, mock.patch.object(connections, "close_all"):
            command.run_from_argv(["manage.py", "user_credits_expire", "--low", "nope=1"])
        assert exit_.value.code == 2 and "unknown offer group(s) nope" in err.getvalue()
        assert table_snapshot() == before


@pytest.mark.users_only(reason="--user, the deprecated alias of --holder, names users")
def test_user_by_primary_key_or_username_and_unknown_users_listed(user, travel):
    bob = make_user("bob")
    group = make_group("calls")
    with travel(T0):
        services.grant(user, group, 5, expires=T0 + timedelta(days=1))
        services.grant(bob, group, 7, expires=T0 + timedelta(days=1))
    with travel(T0 + timedelta(days=2)):
        before = table_snapshot()
        with pytest.raises(CommandError) as exc:
            run("--user", "carol")
        assert exc.value.returncode == 2
        assert str(exc.value) == (
            "--user carol: no user has this primary key or username. Users: alice, bob."
        )
        assert table_snapshot() == before
        err = StringIO()
        assert "Expired 1 lot(s), 7 token(s)" in run("--user", "bob", stderr=err)
        assert "--user is deprecated: use --holder" in err.getvalue()
        assert "Expired 1 lot(s), 5 token(s)" in run("--user", str(user.pk))
        for n in range(25):
            make_user(f"user{n}")
        with pytest.raises(CommandError) as exc:
            run("--user", "user9x")
        assert "27 users; no username contains 'user9x'." in str(exc.value)
        with pytest.raises(CommandError) as exc:
            run("--user", "ser2")
        assert "27 users; usernames containing 'ser2': user2, user20, user21" in str(exc.value)


def test_times_are_rounded_to_the_second(holder, travel):
    group = make_group("calls")
    with travel(T0):
        services.grant(holder, group, 2, expires=T0 + timedelta(days=3, microseconds=600_000))
        data = json.loads(run("--json", "--warn-before", "7d"))
    assert data["expiring"][0]["expires"] == "2026-03-04T08:00:01+00:00"
    assert data["expiring"][0]["holder"] == data["expiring"][0]["user"] == holder_name(holder)
    assert data["expiring"][0]["holder_id"] == data["expiring"][0]["user_id"] == holder.pk


def test_holder_by_primary_key_or_natural_key_and_unknown_holders_listed(holder, travel):
    bob = make_holder("bob")
    group = make_group("calls")
    with travel(T0):
        services.grant(holder, group, 5, expires=T0 + timedelta(days=1))
        services.grant(bob, group, 7, expires=T0 + timedelta(days=1))
    with travel(T0 + timedelta(days=2)):
        before = table_snapshot()
        with pytest.raises(CommandError) as exc:
            run("--holder", "carol")
        assert exc.value.returncode == 2
        noun = "user" if holder_is_user() else "workspace"
        field = "username" if holder_is_user() else "slug"
        names = ", ".join(sorted([holder_name(holder), holder_name(bob)]))
        assert str(exc.value) == (
            f"--holder carol: no {noun} has this primary key or {field}. "
            f"{noun.capitalize()}s: {names}."
        )
        with pytest.raises(CommandError) as exc:
            run("--holder", str(bob.pk), "--user", str(bob.pk))
        assert exc.value.returncode == 2 and "not both" in str(exc.value)
        if not holder_is_user():  # the deprecated --user names users only
            with pytest.raises(CommandError) as exc:
                run("--user", str(bob.pk))
            assert exc.value.returncode == 2 and "use --holder" in str(exc.value)
        assert table_snapshot() == before
        assert "Expired 1 lot(s), 7 token(s)" in run("--holder", holder_name(bob))
        assert "Expired 1 lot(s), 5 token(s)" in run("--holder", str(holder.pk))


class Terminal(StringIO):
    def isatty(self):
        return True


def test_progress_on_a_large_sweep_lines_or_a_bar(travel):
    group = make_group("g")
    users = [make_holder() for _ in range(10)]
    with travel(T0):
        for u in users:
            services.grant(u, group, 1, expires=T0 + timedelta(hours=1))
    with travel(T0 + timedelta(hours=2)):
        err = StringIO()  # not a terminal (cron, a log file): a line at each tenth
        run("--dry-run", "--batch-size", "4", stderr=err)
        assert err.getvalue().splitlines() == [
            "10 due lot(s) to expire.",
            "4/10 lots expired (40%).",
            "8/10 lots expired (80%).",
            "10/10 lots expired (100%).",
        ]
        terminal = Terminal()  # a bar redrawn in place
        text = run("--batch-size", "4", stderr=terminal)
        assert "Expired 10 lot(s)" in text
        assert terminal.getvalue() == (
            "\r[############------------------] 4/10 lots 40%"
            "\r[########################------] 8/10 lots 80%"
            "\r[##############################] 10/10 lots 100%\n"
        )
        quiet = StringIO()  # one batch, or -v 0: no progress
        run("--batch-size", "4", "--verbosity", "0", stderr=quiet)
        run(stderr=quiet)
        assert quiet.getvalue() == ""
