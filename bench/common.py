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
    from django.db import connections
    from django.test.utils import teardown_databases

    connections.close_all()
    try:
        teardown_databases(state, verbosity=0)
    except Exception:  # a run stopped mid-query: its backend may still hold the database
        import psycopg

        params = connections["default"].get_connection_params()
        name = params.pop("dbname")
        params.pop("cursor_factory", None)
        params.pop("context", None)
        with psycopg.connect(**params, dbname="postgres", autocommit=True) as raw:
            raw.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    if connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
        # Behind PgBouncer 1.18 in transaction pooling: no prepared statements either.
        params["prepare_threshold"] = None
    return psycopg.connect(**params, autocommit=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_pgbouncer(pool_size: int = 8):
    """A throw-away PgBouncer in transaction pooling mode in front of the benchmark's server
    (Debian's ``pgbouncer`` package); returns ``(port, stop)``."""
    import shutil
    import socket
    import subprocess
    import tempfile

    from django.db import connection

    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        sys.exit("--pgbouncer needs PgBouncer: apt-get install pgbouncer")
    params = connection.settings_dict
    user = params["USER"] or "postgres"
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="uc-bench-pgbouncer."))
    (folder / "users.txt").write_text(f'"{user}" "{params["PASSWORD"] or ""}"\n')
    (folder / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={params["HOST"] or "127.0.0.1"} port={params["PORT"] or 5432}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder}/users.txt
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 200
logfile = {folder}/log
"""
    )
    command = [binary, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        shutil.chown(folder, "postgres")
        for name in ("users.txt", "pgbouncer.ini"):
            shutil.chown(folder / name, "postgres")
        command[1:1] = ["-u", "postgres"]
    # In the foreground (it logs to its logfile): stopped and reaped by stop().
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    else:
        process.kill()
        sys.exit(f"PgBouncer did not start: see {folder}/log")

    def stop():
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)

    return port, stop


def in_fresh_process(target, *args):
    """Run ``target(*args, queue)`` in a forked child (its peak memory its own); return what
    it put on the queue."""
    import multiprocessing

    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result
