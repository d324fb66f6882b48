"""The example site's "workspaces" mode: a custom holder model (``Workspace``), end to end.

The holder model is fixed when the models load, so this runs the example project in a
subprocess with ``example_project.settings_workspaces`` on a fresh SQLite file (or the empty
PostgreSQL database ``WORKSPACES_DATABASE_URL`` names, as CI's workspaces leg does): the migrations
apply with the custom model and match it, the demo team is set up, and its members spend
through the services and the pages, the limited one within their limit.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from user_credits import services
from user_credits.exceptions import InvalidArgument, SpendingLimitExceeded, SpendingNotAllowed
from user_credits.models import CreditAccount, LedgerEntry
from example_project.workspaces.models import Workspace

User = get_user_model()
team = Workspace.objects.get(slug="acme")
ada, bob, cy = (User.objects.get(username=n) for n in ("ada", "bob", "cy"))
outsider = User.objects.create_user("eve", password="x")
assert CreditAccount._meta.get_field("holder").related_model is Workspace
assert services.consume(team, "api-calls", 6, member=cy).balance == 94
try:
    services.consume(team, "api-calls", 5, member=cy)
except SpendingLimitExceeded as exc:
    assert (exc.limit, exc.spent, exc.requested) == (10, 6, 5)
else:
    raise AssertionError("cy went over the limit")
try:
    services.consume(team, "api-calls", 1, member=outsider)
except SpendingNotAllowed:
    pass
else:
    raise AssertionError("eve spent the team's credits")
try:
    services.consume(ada, "api-calls", 1)
except InvalidArgument as exc:
    assert exc.field == "holder"
else:
    raise AssertionError("a user was taken for a workspace")
assert services.consume(team, "api-calls", 40, member=bob).balance == 54
assert services.get_balance(team, "api-calls") == 54
spent = LedgerEntry.objects.filter(kind="consume").values_list("member__username", "amount")
assert sorted(spent) == [("bob", -40), ("cy", -6)]
assert services.verify_ledger().problems == []

# The pages show the requester's workspace (HOLDER_FROM_REQUEST), to its members only.
client = Client()
client.force_login(bob)
page = client.get("/credits/")
assert page.status_code == 200 and "54" in page.content.decode(), page.content[:500]
api = client.get("/api/credits/credits/")
assert api.status_code == 200 and api.json()[0]["balance"] == 54, api.content
client.force_login(outsider)
assert client.get("/api/credits/credits/").status_code == 403

# The header's switcher lists the user's workspaces, the current one selected; switching
# (``?workspace=<slug>``) changes the balance shown, and the choice sticks to the session.
import re
beta = Workspace.objects.create(name="Beta", slug="beta", owner=bob)
services.grant(beta, "api-calls", 7, reason="demo")
client = Client()
client.force_login(bob)

def shown(page):
    html = page.content.decode()
    switcher = html[html.index('id="workspace-select"'):]
    switcher = switcher[: switcher.index("</select>")]
    selected = re.search(r'<option value="([a-z]+)" selected>', switcher)
    return (
        re.findall(r'<span class="balance">(\d+)</span>', html),
        re.findall(r'<option value="([a-z]+)"', switcher),
        selected and selected.group(1),
    )

page = client.get("/credits/")
assert '<label for="workspace-select">Workspace</label>' in page.content.decode()
assert shown(page) == (["54"], ["acme", "beta"], "acme"), shown(page)
assert shown(client.get("/credits/", {"workspace": "beta"})) == (["7"], ["acme", "beta"], "beta")
assert shown(client.get("/credits/")) == (["7"], ["acme", "beta"], "beta")
assert shown(client.get("/credits/", {"workspace": "acme"}))[0] == ["54"]
# A workspace the user is not in is not chosen: the current one stays.
client.force_login(cy)
assert shown(client.get("/credits/", {"workspace": "beta"})) == (["54"], ["acme"], "acme")
print("workspaces ok")
"""


def run(*args, env):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.skipif(os.name != "posix", reason="runs the example project in a subprocess")
def test_workspaces_mode_end_to_end(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings_workspaces",
        "WORKSPACES_DB": str(tmp_path / "db.sqlite3"),
        "DATABASE_URL": os.environ.get("WORKSPACES_DATABASE_URL", ""),
    }
    for args in (
        ("manage.py", "migrate", "-v0"),
        ("manage.py", "makemigrations", "--check", "--dry-run"),
        ("manage.py", "setup_workspaces"),
        ("-c", SCRIPT),
    ):
        done = run(*args, env=env)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-4000:])
    assert "workspaces ok" in done.stdout
