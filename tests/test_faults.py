"""Faults that lose nothing, on a real PostgreSQL server.

- The server restarted (``pg_ctl restart -m fast``) while 4 processes consume and a sweep runs:
  in-flight calls fail, nothing is half-written, a retry with the same idempotency key spends
  once, and the ledger verifies afterwards. Needs ``USER_CREDITS_PG_RESTART``: a shell command
  that restarts the server (``.ci/run`` sets it).
- The expiry command killed with SIGKILL mid-sweep: finished batches stay, the next run
  finishes the rest, each lot expired exactly once.
- A lock or statement timeout while waiting for a hot account: ``AccountBusy`` (retryable),
  nothing written.
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import InterfaceError, OperationalError, connection, connections, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from user_credits import chain, services
from user_credits.exceptions import AccountBusy, InsufficientCredits
from user_credits.models import (
    ConsumptionRecord,
    CreditAccount,
    CreditLot,
    EntryKind,
    LedgerEntry,
    LotCategory,
)

from .factories import (
    assert_ledger_consistent,
    bulk_holders,
    make_group,
    make_holder,
    table_snapshot,
)

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
RESTART = os.environ.get("USER_CREDITS_PG_RESTART", "")
LOST_CONNECTION = (OperationalError, InterfaceError)


def _retrying(call, deadline):
    """Call until it goes through; a lost connection is dropped and the call retried (the
    same arguments, so the same idempotency key). Returns (result, failures seen)."""
    failures = 0
    while True:
        try:
            return call(), failures
        except LOST_CONNECTION:
            failures += 1
            connections.close_all()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def consumer(index, user_id, calls, results):
    connections.close_all()
    deadline = time.monotonic() + 60
    log, failures = [], 0
    try:
        for n in range(calls):
            key = f"p{index}-{n}"

            def call(key=key, n=n):
                return services.consume(user_id, "calls", 1 + n % 3, idempotency_key=key)

            result, failed = _retrying(call, deadline)
            failures += failed
            log.append((key, 1 + n % 3, result.replayed))
        results.put((index, log, failures, None))
    except Exception:
        results.put((index, log, failures, traceback.format_exc()))
    finally:
        connections.close_all()


def sweeper(stop_at, results):
    connections.close_all()
    failures = 0
    try:
        while time.monotonic() < stop_at:
            _, failed = _retrying(services.expire_credits, stop_at + 30)
            failures += failed
        results.put(("sweeper", [], failures, None))
    except Exception:
        results.put(("sweeper", [], failures, traceback.format_exc()))
    finally:
        connections.close_all()


@pytest.mark.skipif(
    not RESTART, reason="set USER_CREDITS_PG_RESTART to a command restarting the server"
)
def test_server_restart_mid_traffic_loses_nothing():
    holder = make_holder()
    group = make_group("calls")
    services.grant(holder, group, 5000)
    soon = timezone.now() + timedelta(seconds=2)
    for _ in range(20):  # lots for the sweep to expire while the consumers run
        services.grant(holder, group, 3, expires=soon)
    connections.close_all()

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    calls = 150
    workers = [
        context.Process(target=consumer, args=(i, holder.pk, calls, results)) for i in range(4)
    ]
    workers.append(context.Process(target=sweeper, args=(time.monotonic() + 6, results)))
    for worker in workers:
        worker.start()
    time.sleep(1.5)
    subprocess.run(RESTART, shell=True, check=True, timeout=60, capture_output=True)
    reports = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)

    errors = [error for *_, error in reports if error]
    assert not errors, errors[0]
    assert sum(failures for _, _, failures, _ in reports) >= 1, "the restart hit no call"
    connections.close_all()
    spent = 0
    for _, log, _, _ in reports:
        for key, count, _ in log:
            record = ConsumptionRecord.objects.get(holder_id=holder.pk, idempotency_key=key)
            assert record.count == count
            taken = LedgerEntry.objects.filter(idempotency_key=key).aggregate(t=Sum("amount"))
            assert taken["t"] == -count, key  # spent once, whatever the retries
            spent += count
    assert len({key for _, log, _, _ in reports for key, *_ in log}) == 4 * calls
    consumed = LedgerEntry.objects.filter(kind=EntryKind.CONSUME).aggregate(t=Sum("amount"))
    assert -consumed["t"] == spent
    assert_ledger_consistent()
    assert services.verify_ledger().problems == []


def _due_lots(n):
    """``n`` accounts with one due lot each, written with the ORM in three statements."""
    group = make_group("sweep")
    now = timezone.now()
    users = bulk_holders("sweep", n)
    accounts = CreditAccount.objects.bulk_create(
        CreditAccount(holder=u, offer_group=group, balance=10) for u in users
    )
    lots = CreditLot.objects.bulk_create(
        CreditLot(
            account=a,
            granted=10,
            remaining=10,
            starts=now - timedelta(days=2),
            expires=now - timedelta(days=1),
            category=LotCategory.PAID,
        )
        for a in accounts
    )
    entries = []
    for account, lot in zip(accounts, lots, strict=True):
        entry = LedgerEntry(
            account=account,
            lot=lot,
            kind=EntryKind.GRANT,
            amount=10,
            balance_after=10,
            created_at=now - timedelta(days=2),
            seq=1,
        )
        entry.digest = account.last_digest = chain.link(chain.GENESIS, entry)
        account.last_seq = 1
        entries.append(entry)
    LedgerEntry.objects.bulk_create(entries)
    CreditAccount.objects.bulk_update(accounts, ["last_seq", "last_digest"])
    return lots


def _expire_command(*args):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "user_credits_expire", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _database_url():
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def _expired_entries():
    return LedgerEntry.objects.filter(kind=EntryKind.EXPIRE).count()


def test_expiry_command_killed_mid_sweep_finishes_on_the_next_run():
    lots = _due_lots(3000)
    connections.close_all()
    process = _expire_command("--batch-size", "5")
    deadline = time.monotonic() + 120
    while _expired_entries() < 50 and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    done = _expired_entries()
    assert 50 <= done < len(lots), "the command was not stopped mid-sweep"
    # Finished batches stay whole: every emptied lot has its one entry, and only those.
    emptied = set(CreditLot.objects.filter(remaining=0).values_list("pk", flat=True))
    entered = set(LedgerEntry.objects.filter(kind=EntryKind.EXPIRE).values_list("lot", flat=True))
    assert emptied == entered and done % 5 == 0
    assert services.verify_ledger().problems == []

    again = _expire_command()
    assert again.wait(timeout=300) == 0, again.stderr.read().decode()
    per_lot = (
        LedgerEntry.objects.filter(kind=EntryKind.EXPIRE).values("lot").annotate(n=Count("id"))
    )
    assert per_lot.count() == len(lots) and {row["n"] for row in per_lot} == {1}
    assert set(
        CreditAccount.objects.filter(offer_group__key="sweep").values_list("balance", flat=True)
    ) == {0}
    assert services.verify_ledger().problems == []


@pytest.mark.parametrize("fast_path", [True, False], ids=["sql", "portable"])
@pytest.mark.parametrize("timeout", ["lock_timeout", "statement_timeout"])
def test_lock_wait_timeout_is_account_busy_and_writes_nothing(fast_path, timeout, settings):
    settings.USER_CREDITS = {"POSTGRES_FAST_PATH": fast_path}
    holder = make_holder()
    group = make_group("hot")
    services.grant(holder, group, 10)
    locked, release = threading.Event(), threading.Event()
    errors = []

    def hold_the_lock():
        try:
            with transaction.atomic():
                CreditAccount.objects.select_for_update().get(holder=holder, offer_group=group)
                locked.set()
                release.wait(timeout=30)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    locker = threading.Thread(target=hold_the_lock)
    locker.start()
    try:
        assert locked.wait(timeout=10)
        before = table_snapshot()
        with connection.cursor() as cursor:
            cursor.execute(f"SET {timeout} = '200ms'")
        with pytest.raises(AccountBusy) as caught:
            services.consume(holder, group, 3, idempotency_key="busy")
        assert caught.value.retryable and "hot" in str(caught.value)
        with pytest.raises(AccountBusy):
            services.hold(holder, group, 3)
        assert table_snapshot() == before
    finally:
        release.set()
        locker.join(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute(f"RESET {timeout}")
    assert not errors
    result = services.consume(holder, group, 3, idempotency_key="busy")  # the retry goes through
    assert (result.balance, result.replayed) == (7, False)
    with pytest.raises(InsufficientCredits):
        services.consume(holder, group, 8)
