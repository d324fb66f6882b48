"""user_credits_verify: a clean ledger verifies; each kind of tampering (through raw SQL, as
someone editing the database by hand would) is reported precisely and exits 1."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from user_credits import services
from user_credits.models import CreditAccount, CreditLot, LedgerEntry

from .factories import make_group, make_holder


def verify(*args):
    out = StringIO()
    try:
        call_command("user_credits_verify", "--json", *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return 1, json.loads(out.getvalue()), str(exc)
    return 0, json.loads(out.getvalue()), ""


def sql(statement, params=()):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


@pytest.fixture
def ledger(db):
    """Two users, two groups, grants, consumption with keys, a hold and an expiry."""
    alice, bob = make_holder("alice"), make_holder("bob")
    calls, talks = make_group("calls"), make_group("talks")
    services.grant(alice, calls, 50, reason="welcome")
    services.grant(alice, calls, 10, expires=timezone.now() + timedelta(hours=1))
    services.grant(bob, talks, 5)
    for i in range(6):
        services.consume(alice, calls, 3, idempotency_key=f"k{i}")
    services.consume(bob, talks, 2)
    held = services.hold(alice, calls, 4)
    services.capture(held, 2)
    services.hold(alice, calls, 5)  # stays active: its tokens are held
    return {"alice": alice, "bob": bob, "account": CreditAccount.objects.get(holder=alice)}


def test_clean_ledger_verifies(ledger):
    code, report, _ = verify()
    assert code == 0
    assert report == {"accounts": 2, "entries": LedgerEntry.objects.count(), "problems": []}
    out = StringIO()
    call_command("user_credits_verify", stdout=out, stderr=StringIO())
    assert "2 account(s)" in out.getvalue() and "0 problem(s)" in out.getvalue()


def test_entries_are_numbered_and_chained(ledger):
    account = ledger["account"]
    seqs = list(
        LedgerEntry.objects.filter(account=account).order_by("id").values_list("seq", flat=True)
    )
    assert seqs == list(range(1, len(seqs) + 1))
    last = LedgerEntry.objects.filter(account=account).order_by("-seq").first()
    account.refresh_from_db()
    assert (account.last_seq, account.last_digest) == (last.seq, last.digest)
    assert len({e.digest for e in LedgerEntry.objects.all()}) == LedgerEntry.objects.count()


def _problems(report, **match):
    return [p for p in report["problems"] if all(p[k] == v for k, v in match.items())]


def test_edited_amount_is_reported(ledger):
    entry = LedgerEntry.objects.filter(account=ledger["account"], kind="consume").first()
    sql("UPDATE user_credits_ledgerentry SET amount = amount - 1 WHERE id = %s", [entry.pk])
    code, report, message = verify()
    assert code == 1 and "problem" in message
    found = _problems(report, entry=entry.pk)
    assert any("digest" in p["problem"] for p in found)
    assert any(p["problem"].startswith("balance_after") for p in found)
    alice = str(ledger["alice"])
    assert all(p["holder"] == alice and p["offer_group"] == "calls" for p in report["problems"])


def test_deleted_entry_is_reported(ledger):
    entries = list(LedgerEntry.objects.filter(account=ledger["account"]).order_by("seq"))
    gone, after = entries[3], entries[4]
    sql("DELETE FROM user_credits_ledgerentry WHERE id = %s", [gone.pk])
    code, report, _ = verify()
    assert code == 1
    missing = _problems(report, entry=after.pk, problem="entry missing before this one")
    assert missing and missing[0]["expected"] == gone.seq and missing[0]["found"] == after.seq


def test_inserted_entry_is_reported(ledger):
    account = ledger["account"]
    last = LedgerEntry.objects.filter(account=account).order_by("-seq").first()
    sql(
        "INSERT INTO user_credits_ledgerentry (account_id, lot_id, kind, amount, balance_after, "
        "idempotency_key, metadata, created_at, seq, digest) "
        "VALUES (%s, NULL, 'grant', 100, %s, NULL, '{}', %s, %s, %s)",
        [account.pk, last.balance_after + 100, timezone.now(), last.seq + 1, "f" * 64],
    )
    code, report, _ = verify("--account", str(account.pk))
    assert code == 1 and report["accounts"] == 1
    assert any("digest" in p["problem"] for p in report["problems"])
    assert any(
        p["problem"] == "account balance differs from its ledger" for p in report["problems"]
    )
    assert any("chain end" in p["problem"] for p in report["problems"])


def test_changed_lot_remaining_is_reported(ledger):
    lot = CreditLot.objects.filter(account=ledger["account"]).first()
    sql("UPDATE user_credits_creditlot SET remaining = remaining + 7 WHERE id = %s", [lot.pk])
    code, report, _ = verify()
    assert code == 1
    [problem] = report["problems"]
    assert problem["problem"] == f"lot #{lot.pk} remaining differs from its entries"
    assert problem["found"] == problem["expected"] + 7 and problem["entry"] is None


def test_changed_balance_is_reported(ledger):
    account = ledger["account"]
    sql("UPDATE user_credits_creditaccount SET balance = balance + 1 WHERE id = %s", [account.pk])
    code, report, _ = verify()
    assert code == 1
    [problem] = report["problems"]
    assert problem["problem"] == "account balance differs from its ledger"
    assert (problem["account"], problem["found"]) == (account.pk, problem["expected"] + 1)


def test_changed_held_is_reported(ledger):
    lot = CreditLot.objects.filter(account=ledger["account"], held__gt=0).first()
    sql("UPDATE user_credits_creditlot SET held = held - 1 WHERE id = %s", [lot.pk])
    code, report, _ = verify()
    assert code == 1
    [problem] = report["problems"]
    assert problem["problem"] == f"lot #{lot.pk} held differs from its active holds"


def test_expiry_sweep_continues_the_chain(ledger, travel):
    services.grant(ledger["bob"], "talks", 4, expires=timezone.now() + timedelta(hours=1))
    with travel(timezone.now() + timedelta(hours=2)):
        assert services.expire_credits().expired_lots == 1
    assert verify()[0] == 0


def test_text_output_names_the_account_and_entry(ledger):
    entry = LedgerEntry.objects.filter(account=ledger["account"]).order_by("seq")[2]
    sql("UPDATE user_credits_ledgerentry SET kind = 'revoke' WHERE id = %s", [entry.pk])
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("user_credits_verify", stdout=out, stderr=StringIO())
    holder = ledger["alice"]
    assert (
        f"account {entry.account_id} ({holder}, calls), entry {entry.pk}: digest" in out.getvalue()
    )
