"""Shared set-up for the benchmarks: Django on a throw-away PostgreSQL test database.

Each run creates its own database, ``test_user_credits_bench_<pid>``, so runs never clash with
each other or with the test suite's ``test_…`` database. ``USER_CREDITS_BENCH_SMOKE=1`` (or a
size argument) makes every script run at a tiny size: the test suite runs them so, to prove
they still work (no timing is asserted).
"""

import os
import platform
import resource
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def smoke() -> bool:
    """Whether to run at the tiny smoke-test size."""
    return os.environ.get("USER_CREDITS_BENCH_SMOKE", "") not in ("", "0")


def size(default: int, tiny: int) -> int:
    """The first numeric argument, else ``tiny`` in a smoke run, else ``default``."""
    for arg in sys.argv[1:]:
        if arg.isdigit():
            return int(arg)
    return tiny if smoke() else default


def setup():
    """Configure Django with the test settings and create a fresh ``test_…`` database."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set DATABASE_URL=postgres://… (the benchmarks measure PostgreSQL).")
    # A run stopped with SIGTERM (a timeout) still drops its database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    django.setup()

    class NoMigrations(dict):  # tables straight from the models, as the test suite does
        def __contains__(self, item):
            return True

        def __getitem__(self, item):
            return None

    settings.MIGRATION_MODULES = NoMigrations()
    from django.db import connections
    from django.test.utils import setup_databases

    # A database of this run's own: never the suite's, never another run's.
    test = connections["default"].settings_dict.setdefault("TEST", {})
    test["NAME"] = f"test_user_credits_bench_{os.getpid()}"

    return setup_databases(verbosity=0, interactive=False, keepdb=False)


def teardown(state):
    from django.test.utils import teardown_databases

    teardown_databases(state, verbosity=0)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine():
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(title, header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    line = " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def raw_connection():
    """A psycopg connection of its own, in autocommit, to the benchmark database."""
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)
