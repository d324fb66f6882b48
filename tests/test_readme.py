"""The README, executed.

Its "Add it to a Django site" blocks are applied as written (found by their ``--8<-- [start:…]``
comments) to fresh ``startproject`` sites, each with its own virtualenv in which the built wheel
is installed (dependencies come from the project's virtualenv through a ``.pth`` line, so the
site imports ``user_credits`` from the wheel, never from this source tree); then ``check``,
``migrate``, the snippet's service journey and every API endpoint. The curl block runs as
written against a live example site with the demo catalog.

The manual-provider site and the curl block run on SQLite and, with ``DATABASE_URL``, on a fresh
PostgreSQL database. The Stripe site runs on SQLite only: dj-stripe's migrations take 1–2
minutes, and the PostgreSQL leg with every migration covers them on PostgreSQL.
"""

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DATABASE_URL = os.environ.get("DATABASE_URL") or ""
ON_POSTGRES = DATABASE_URL.startswith(("postgres://", "postgresql://"))
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def section(name, text=README):
    """The text between ``--8<-- [start:name]`` and ``--8<-- [end:name]``."""
    match = re.search(
        rf"--8<-- \[start:{name}\][^\n]*\n(.*?)\n[^\n]*--8<-- \[end:{name}\]", text, re.S
    )
    assert match, f"README.md has no '{name}' section (its --8<-- [start:{name}] comment)"
    return match[1]


def code_blocks(markdown):
    """``[(language, code), …]`` of the fenced blocks, in order."""
    return re.findall(r"^```(\w+)\n(.*?)^```$", markdown, re.S | re.M)


def run(args, *, cwd, env, timeout=600):
    """Run a command; its output is in the assertion message when it fails."""
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{args} exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    return done.stdout


def base_env(bin_dir, **extra):
    """The environment of a site's commands: its virtualenv first on PATH, none of this test
    run's Django settings or import paths."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "DATABASE_URL", "VIRTUAL_ENV")
        and not key.startswith("STRIPE_")
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


@contextmanager
def fresh_database():
    """A database URL for a site: ``None`` (its own SQLite file) on the SQLite leg, a new
    PostgreSQL database on the server of ``DATABASE_URL`` otherwise (dropped afterwards)."""
    if not ON_POSTGRES:
        yield None
        return
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(DATABASE_URL)
    name = f"uc_readme_{uuid.uuid4().hex[:12]}"
    server = {
        "host": config["HOST"],
        "port": config["PORT"] or 5432,
        "user": config["USER"],
        "password": config["PASSWORD"] or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**server) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield DATABASE_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(**server) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built from a copy of this source tree (no stale build/ folder can leak in)."""
    source = tmp_path_factory.mktemp("source") / "user-credits"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            ".tox",
            "build",
            "dist",
            "site",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            ".hypothesis",
            ".ruff_cache",
            "*.sqlite3",
        ),
    )
    out = tmp_path_factory.mktemp("dist")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        cwd=out,
        env=os.environ.copy(),
    )
    (built,) = out.glob("user_credits-*.whl")
    assert built.name == f"user_credits-{VERSION}-py3-none-any.whl"
    return built


class Site:
    """A ``django-admin startproject mysite`` site in its own virtualenv with the wheel."""

    def __init__(self, root, wheel, *, database_url=None, **env):
        self.root = root
        venv = root / "venv"
        run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, env=os.environ)
        self.python = str(venv / "bin" / "python")
        purelib = run(
            [self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=root,
            env=os.environ,
        ).strip()
        # The project's virtualenv provides the dependencies; the wheel comes first on sys.path.
        Path(purelib, "project-dependencies.pth").write_text(
            sysconfig.get_paths()["purelib"] + "\n"
        )
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                self.python,
                "install",
                "-q",
                "--no-deps",
                "--no-index",
                str(wheel),
            ],
            cwd=root,
            env=os.environ,
        )
        self.env = base_env(venv / "bin", **env)
        self.dir = root / "mysite"
        run(
            [self.python, "-m", "django", "startproject", "mysite"],
            cwd=root,
            env=self.env,
        )
        if database_url:  # the PostgreSQL leg: the test's line, not the README's
            self.append(
                "settings.py",
                f"import dj_database_url\nDATABASES = {{'default': "
                f"dj_database_url.parse({database_url!r})}}\n",
            )
        self.journeys = []

    def append(self, name, code):
        path = self.dir / "mysite" / name
        path.write_text(path.read_text() + "\n" + code)

    def manage(self, *args, **kwargs):
        return run([self.python, "manage.py", *args], cwd=self.dir, env=self.env, **kwargs)

    def apply(self, markdown):
        """Each block as its first line says: append to a file, run in the shell, run."""
        blocks = code_blocks(markdown)
        assert blocks, "no code block in the section"
        for language, code in blocks:
            first = code.splitlines()[0]
            if language == "python" and first.startswith("# mysite/settings.py"):
                self.append("settings.py", code)
            elif language == "python" and first.startswith("# mysite/urls.py"):
                self.append("urls.py", code)
            elif language == "python" and first.startswith("# python manage.py shell"):
                # Its last line is what the block prints (Django 5.2 first says what it
                # imported automatically).
                self.journeys.append(self.manage("shell", "-c", code).splitlines()[-1])
            elif language == "bash":
                run(["bash", "-euo", "pipefail", "-c", code], cwd=self.dir, env=self.env)
            else:
                raise AssertionError(f"A {language} block the test cannot apply: {first!r}")


def assert_checks_pass(site):
    done = subprocess.run(
        [site.python, "manage.py", "check"],
        cwd=site.dir,
        env=site.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "user_credits." not in done.stdout + done.stderr, done.stdout + done.stderr


ENDPOINTS = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
import user_credits
from user_credits.models import Offer

client = Client(HTTP_HOST="localhost")  # session authentication, DRF's default
client.force_login(get_user_model().objects.create_superuser("root", "", None))
API = "/api/credits/"
seen = {}

def call(method, template, url=None, body=None, **headers):
    url = url or template
    kwargs = {"data": json.dumps(body), "content_type": "application/json"} if body else {}
    response = getattr(client, method)(API + url, **kwargs, **headers)
    seen[f"{method.upper()} {template}"] = response.status_code
    return response.json() if response.status_code < 500 and response.content else None

schema = client.get(API + "schema/", {"format": "json"})
seen["GET schema/"] = schema.status_code
paths = sorted(path.removeprefix(API) for path in json.loads(schema.content)["paths"])
offer = Offer.objects.get(name="1,000 calls")
call("get", "offers/")
call("get", "offers/{id}/", f"offers/{offer.pk}/")
order = call("post", "orders/", body={"offer": offer.pk, "quantity": 1})
call("get", "orders/")
call("get", "orders/{id}/", f"orders/{order['id']}/")
if PAY:
    call("post", "orders/{id}/pay/", f"orders/{order['id']}/pay/")
call("get", "credits/")
call("get", "ledger/")
root = get_user_model().objects.get(username="root").pk
grant = {"user": root, "offer_group": "api-calls", "tokens": 10, "reason": "README"}
call("post", "grants/", body=grant)
spend = {"user": root, "offer_group": "api-calls", "count": 2}
call("post", "consume/", body=spend, HTTP_IDEMPOTENCY_KEY="c1")
call("post", "consume/batch/", body={"items": [{**spend, "idempotency_key": "b1"}]})
hold = call("post", "holds/", body=spend, HTTP_IDEMPOTENCY_KEY="h1")
call("post", "holds/{id}/capture/", f"holds/{hold['id']}/capture/", body={"count": 1})
hold = call("post", "holds/", body=spend, HTTP_IDEMPOTENCY_KEY="h2")
call("post", "holds/{id}/release/", f"holds/{hold['id']}/release/")
free = Offer.objects.create(
    name="Free calls", offer_group=offer.offer_group, price=0, currency=offer.currency,
    token_count=5, cycle="monthly", billing="recurring",
)
sub = call("post", "subscriptions/", body={"offer": free.pk})
call("get", "subscriptions/")
call("get", "subscriptions/{id}/", f"subscriptions/{sub['id']}/")
at_end = {"at_period_end": True}
call("post", "subscriptions/{id}/cancel/", f"subscriptions/{sub['id']}/cancel/", body=at_end)
call("post", "subscriptions/{id}/resume/", f"subscriptions/{sub['id']}/resume/")
key = offer.offer_group.key
recharge = {"offer_group": key, "offer": offer.pk, "threshold": 5}
call("post", "auto-recharge/", body=recharge)
call("get", "auto-recharge/")
call("get", "auto-recharge/{offer_group}/", f"auto-recharge/{key}/")
call("patch", "auto-recharge/{offer_group}/", f"auto-recharge/{key}/", body={"threshold": 6})
call("delete", "auto-recharge/{offer_group}/", f"auto-recharge/{key}/")
if PAY:
    call("post", "auto-recharge/setup/")
import sys
print(json.dumps({
    "seen": seen, "paths": paths, "module": user_credits.__file__,
    "version": user_credits.__version__, "djstripe_imported": "djstripe" in sys.modules,
}))
"""

EXPECTED = {
    "GET schema/": 200,
    "GET offers/": 200,
    "GET offers/{id}/": 200,
    "POST orders/": 201,
    "GET orders/": 200,
    "GET orders/{id}/": 200,
    "POST orders/{id}/pay/": 200,
    "GET credits/": 200,
    "GET ledger/": 200,
    "POST grants/": 201,
    "POST consume/": 201,
    "POST consume/batch/": 200,
    "POST holds/": 201,
    "POST holds/{id}/capture/": 200,
    "POST holds/{id}/release/": 200,
    "POST subscriptions/": 201,
    "GET subscriptions/": 200,
    "GET subscriptions/{id}/": 200,
    "POST subscriptions/{id}/cancel/": 200,
    "POST subscriptions/{id}/resume/": 200,
    "POST auto-recharge/": 201,
    "GET auto-recharge/": 200,
    "GET auto-recharge/{offer_group}/": 200,
    "PATCH auto-recharge/{offer_group}/": 200,
    "DELETE auto-recharge/{offer_group}/": 204,
    "POST auto-recharge/setup/": 409,  # manual payments save no payment method
}


def assert_every_endpoint_answers(site, *, pay=True):
    """Every path of the schema is requested (signed in as a superuser) and answers."""
    out = site.manage("shell", "-v", "0", "-c", f"PAY = {pay}\n" + ENDPOINTS)
    result = json.loads(out)
    expected = {k: v for k, v in EXPECTED.items() if pay or not k.endswith(("/pay/", "/setup/"))}
    assert result["seen"] == expected
    assert set(result["paths"]) == {key.split(" ")[1] for key in EXPECTED}
    # The site imports the wheel's user_credits, not this source tree.
    assert result["module"].startswith(str(site.root / "venv")), result["module"]
    assert result["version"] == VERSION
    return result


def test_manual_provider_site_without_djstripe(wheel, tmp_path):
    with fresh_database() as database_url:
        site = Site(tmp_path, wheel, database_url=database_url)
        site.apply(section("site-manual"))
        assert site.journeys == ["997"]
        assert_checks_pass(site)
        installed = site.manage(
            "shell",
            "-v",
            "0",
            "-c",
            "from django.apps import apps\nprint(apps.is_installed('djstripe'))",
        )
        assert installed == "False\n"
        # Models, admin, API and services work without dj-stripe, and never import it.
        assert not assert_every_endpoint_answers(site)["djstripe_imported"]


@pytest.mark.skipif(
    ON_POSTGRES,
    reason="dj-stripe's migrations take 1–2 minutes: the Stripe site runs on the SQLite "
    "leg; the PostgreSQL leg with every migration applies them on PostgreSQL",
)
def test_stripe_provider_site_with_djstripe(wheel, tmp_path):
    site = Site(tmp_path, wheel, STRIPE_TEST_SECRET_KEY="sk_test_readme")
    site.apply(section("site-manual"))
    site.apply(section("site-stripe"))
    assert_checks_pass(site)
    tables = site.manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.db import connection\n"
        "print(len([t for t in connection.introspection.table_names() "
        "if t.startswith('djstripe_')]))",
    )
    assert int(tables) > 10
    provider = site.manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from user_credits.payments import get_provider\nprint(get_provider().name)",
    )
    assert provider == "stripe\n"
    assert_every_endpoint_answers(site, pay=False)  # paying would call Stripe


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def example_site(tmp_path, database_url):
    """The example site with the demo catalog, served by runserver on a free port."""
    url = database_url or f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    env = base_env(Path(sys.executable).parent, DATABASE_URL=url)
    run([sys.executable, "manage.py", "setup_demo"], cwd=ROOT, env=env)
    port = free_port()
    log = (tmp_path / "runserver.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    site = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # at most 30 s for the server to answer
            try:
                urllib.request.urlopen(site + "/api/credits/offers/", timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "runserver.log").read_text()
                time.sleep(0.1)
        else:
            raise AssertionError("runserver did not answer in 30 s")
        yield site, env
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def test_curl_block_buys_pays_consumes_and_reads_on_the_example_site(tmp_path):
    with fresh_database() as database_url, example_site(tmp_path, database_url) as (site, env):
        (curl,) = code_blocks(section("curl"))
        out = run(["bash", "-euo", "pipefail", "-c", curl[1]], cwd=ROOT, env={**env, "SITE": site})
        lines = out.splitlines()
        assert len(lines) == 4, out  # pay, simulated payment, consume, credits
        started, paid, consumed, credits = (json.loads(line) for line in lines)
        assert started["provider"] == "manual"
        assert paid["status"] == "paid"
        assert consumed["balance"] == 5 and consumed["entries"][0]["amount"] == -1
        (talks,) = [group for group in credits if group["offer_group"] == "talks"]
        assert talks["balance"] == 5  # available tokens
        # The same order paid through the API, as the admin sees it.
        auth = "Basic " + base64.b64encode(b"admin:admin").decode()
        request = urllib.request.Request(
            f"{site}/api/credits/orders/?status=paid", headers={"Authorization": auth}
        )
        with urllib.request.urlopen(request) as response:
            orders = json.load(response)["results"]
        assert [(o["name"], o["quantity"]) for o in orders] == [("3 Talks", 2)]

        (cron,) = code_blocks(section("cron-demo"))
        report = run(["bash", "-euo", "pipefail", "-c", cron[1]], cwd=ROOT, env=env)
        assert "Expired 0 lot(s)" in report and "0 low balance(s)" in report


def test_wheel_ships_the_french_catalog(wheel):
    """The translations install with the app: the catalog and its compiled form."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "user_credits/locale/fr/LC_MESSAGES/django.po",
        "user_credits/locale/fr/LC_MESSAGES/django.mo",
    } <= names
    assert not any(name.startswith("example_project/") for name in names)
