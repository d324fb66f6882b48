"""Every benchmark runs at a tiny size, so that a schema or API change that breaks one fails
the suite. Nothing is timed here: each script must exit 0 and print its table of ratios."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL: the benchmarks measure it (and its PL/pgSQL fast paths)",
)

# script → lines its output must have: the ratio against its reference, measured in the run.
BENCHES = {
    "consume.py": ["README/limit", "objects/limit", "README/naive", "recharge/plain"],
    "consume_batch.py": ["one-by-one/batch", "portable/batch", "queries/batch"],
    "hot_account.py": ["services / limit throughput"],
    "expire.py": ["× reference"],
    "reads.py": ["× raw SQL balance"],
    "metering.py": ["× consume"],
    "ledger.py": ["deep/page 1", "at=/now", "estimated/exact"],
    "verify.py": ["× reference"],
}


def test_every_bench_is_listed():
    assert sorted(BENCHES) == sorted(
        p.name for p in (ROOT / "bench").glob("*.py") if p.name != "common.py"
    )


def run_bench(*args):
    env = {**os.environ, "USER_CREDITS_BENCH_SMOKE": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the scripts set their own
    env.pop("USER_CREDITS_TEST_PGBOUNCER", None)  # they reach PostgreSQL as DATABASE_URL says
    run = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "------" in run.stdout  # the table's rule: a table was printed
    return run.stdout


@needs_postgresql
@pytest.mark.parametrize("script", sorted(BENCHES))
def test_bench_runs_at_smoke_size(script):
    output = run_bench(str(ROOT / "bench" / script))
    for expected in BENCHES[script]:
        assert expected in output, output


@needs_postgresql
@pytest.mark.skipif(
    not (shutil.which("pgbouncer") or os.path.exists("/usr/sbin/pgbouncer")),
    reason="needs PgBouncer (apt-get install pgbouncer; .ci/run installs it)",
)
def test_hot_account_through_pgbouncer_at_smoke_size():
    output = run_bench(str(ROOT / "bench" / "hot_account.py"), "--pgbouncer")
    assert "through PgBouncer (transaction pooling" in output
    assert "services / limit throughput" in output
