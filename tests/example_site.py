"""The example site as a real, separate server: ``manage.py runserver`` in its own process, with
the example's own settings and a throw-away SQLite database prepared by ``setup_demo``.

The test process shares nothing with it but the network and that database file: pages are read
over HTTP, and the site's data is read or changed by ``manage.py shell`` in the site's settings.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Environment that would change what the site does (Stripe instead of the simulated payment,
# another settings module): dropped, so that the site runs as a newcomer's checkout does.
DROPPED = ("DJANGO_SETTINGS_MODULE", "STRIPE_TEST_SECRET_KEY", "STRIPE_TEST_PUBLIC_KEY")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ExampleSite:
    """``setup()`` makes the database (every migration, the demo catalog, the ``buyer`` and
    ``admin`` logins); ``serving()`` runs the server while its block runs."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in DROPPED}
        self.env.update(
            DJANGO_SETTINGS_MODULE="example_project.settings",
            DATABASE_URL=f"sqlite:///{folder / 'example.sqlite3'}",
            DJANGO_DEBUG="0",
            DEMO_ADMIN_USER="admin",
            DEMO_ADMIN_PASSWORD="admin",
            PYTHONUNBUFFERED="1",
        )

    def manage(self, *args, timeout=600):
        """Run a ``manage.py`` command of the site; its output, or an error showing it."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}{done.stderr}"
        return done.stdout

    def setup(self):
        return self.manage("setup_demo")

    def python(self, code, timeout=60):
        """Run ``code`` in the site's settings (``manage.py shell -c``); the last line printed."""
        return self.manage("shell", "-c", code, timeout=timeout).strip().splitlines()[-1]

    @contextmanager
    def serving(self, ready_timeout=60):
        log_path = self.folder / "runserver.log"
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_ready(server, ready_timeout, log_path)
            yield self
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)

    def _wait_until_ready(self, server, timeout, log_path):
        """Poll the login page until it answers, the server exits, or ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/accounts/login/", timeout=5) as page:
                    if page.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the example site did not answer on {self.url} within {timeout} s:\n"
                    + log_path.read_text()
                )
            try:  # the pause between attempts, ended early if the server dies
                server.wait(0.1)
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(
                f"the example site exited with {server.returncode}:\n" + log_path.read_text()
            )
