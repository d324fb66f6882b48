"""The example site over HTTP, as its own server (``tests/example_site.py``): the buyer's
journey through it without a browser (the browser test walks it in Chromium), and what the
operator sees."""

import re

import pytest
import requests

from .example_site import ExampleSite


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = ExampleSite(tmp_path_factory.mktemp("example_http"))
    site.setup()
    with site.serving():
        yield site


def new_user(site, username):
    site.python(
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({username!r}, password='pw'); print('ok')"
    )


def offer_id(site, name):
    return int(
        site.python(
            f"from user_credits.models import Offer; print(Offer.objects.get(name={name!r}).pk)"
        )
    )


def csrf(session, site, page):
    """The CSRF token of a form of ``page`` (the cookie is set on the way)."""
    html = session.get(site.url + page).text
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def post(session, site, path, data=None, page=None):
    """Submit a form of ``page`` (default: ``path``) to ``path``, without following redirects."""
    token = csrf(session, site, page or path)
    return session.post(
        site.url + path,
        data={"csrfmiddlewaretoken": token, **(data or {})},
        allow_redirects=False,
        headers={"Referer": site.url + (page or path), "Accept": "text/html"},
    )


def log_in(session, site, username, password="pw", next_url=""):
    page = "/accounts/login/" + (f"?next={next_url}" if next_url else "")
    token = csrf(session, site, page)
    return session.post(
        site.url + page,
        data={"csrfmiddlewaretoken": token, "username": username, "password": password},
        allow_redirects=False,
        headers={"Referer": site.url + page},
    )


def buy_and_pay(session, site, name, currency="usd"):
    bought = post(
        session, site, f"/buy/{offer_id(site, name)}/", {"currency": currency}, "/pricing/"
    )
    assert bought.status_code == 302 and "/simulate/" in bought.headers["Location"]
    paid = post(session, site, bought.headers["Location"])
    assert paid.status_code == 302 and paid.headers["Location"] == "/credits/"


def test_buy_while_logged_out_comes_back_to_the_purchase(site):
    new_user(site, "anon")
    session = requests.Session()
    talks = offer_id(site, "1 Talk")
    clicked = post(session, site, f"/buy/{talks}/?currency=kwd", {"currency": "kwd"}, "/pricing/")
    assert clicked.status_code == 302
    assert clicked.headers["Location"].startswith("/accounts/login/?next=")
    next_url = requests.utils.unquote(clicked.headers["Location"].split("next=", 1)[1])
    assert next_url == f"/buy/{talks}/?currency=kwd"
    logged_in = log_in(session, site, "anon", next_url=next_url)
    assert logged_in.status_code == 302 and logged_in.headers["Location"] == next_url
    confirm = session.get(site.url + next_url)
    assert confirm.status_code == 200  # not 405: the offer, its price and the same button
    assert "Buy 1 Talk" in confirm.text and "9.250 KWD" in confirm.text
    assert (
        site.python(
            "from user_credits.models import Order; "
            "print(Order.objects.filter(holder__username='anon').count())"
        )
        == "0"
    )
    bought = post(session, site, next_url, {"currency": "kwd"})
    assert bought.status_code == 302 and "/simulate/" in bought.headers["Location"]
    order = site.python(
        "from user_credits.models import Order; "
        "o = Order.objects.get(holder__username='anon'); print(o.name, o.currency, o.total)"
    )
    assert order == "1 Talk kwd 9.250"


def test_playground_spends_until_402_then_links_to_pricing(site):
    new_user(site, "asker")
    session = requests.Session()
    log_in(session, site, "asker")
    empty = post(
        session,
        site,
        "/playground/",
        {"prompt": "Hello there", "length": "short", "group": "Startup"},
    )
    assert empty.status_code == 402  # no plan yet: the task never runs
    assert 'href="/pricing/"' in empty.text and empty.headers["Credits-Remaining"] == "0"
    buy_and_pay(session, site, "Startup EarlyBird Monthly")
    remaining = []
    while True:
        asked = post(
            session,
            site,
            "/playground/",
            {"prompt": "Summarise our third quarter", "length": "medium", "group": "EbStartup"},
        )
        if asked.status_code != 200:
            break
        remaining.append(int(asked.headers["Credits-Remaining"]))
        # The page shows what the header says, what was reserved, charged and freed.
        assert f'<strong id="remaining">{remaining[-1]}</strong>' in asked.text
        assert '<strong id="reserved">250</strong>' in asked.text
        assert '<strong id="charged">204</strong>' in asked.text
        assert '<strong id="freed">46</strong>' in asked.text
    assert remaining == [796, 592, 388, 184]
    assert asked.status_code == 402
    assert (
        asked.headers["Credits-Remaining"] == "184"
        and asked.headers["Credits-Group"] == "EbStartup"
    )
    assert (
        "Not enough credits" in asked.text and '<a class="upgrade" href="/pricing/">' in asked.text
    )
    balance = site.python(
        "from django.contrib.auth import get_user_model; from user_credits import services; "
        "print(services.get_balance(get_user_model().objects.get(username='asker'), 'EbStartup'))"
    )
    assert balance == "184"
    holds = site.python(
        "from user_credits.models import Hold; "
        "holds = Hold.objects.filter(account__holder__username='asker'); "
        "print(sorted(set(holds.values_list('status', flat=True))))"
    )
    assert holds == "['captured']"  # every reservation settled; the refused one never made
    bad = post(session, site, "/playground/", {"prompt": "", "length": "huge", "group": "talks"})
    assert bad.status_code == 400
    assert "Ask a question" in bad.text and "Choose one of short" in bad.text
    assert "Choose one of your plans" in bad.text


def test_ledger_names_groups_and_credits_hide_a_bundles_own_group(site):
    new_user(site, "mobile")
    session = requests.Session()
    log_in(session, site, "mobile")
    buy_and_pay(session, site, "Mobile Max")
    buy_and_pay(session, site, "Startup EarlyBird Monthly")
    credits = session.get(site.url + "/credits/").text
    assert 'data-group="calls"' in credits and 'data-group="EbStartup"' in credits
    assert 'data-group="mobile"' not in credits and "No live lots" not in credits
    ledger = session.get(site.url + "/credits/ledger/").text
    groups = re.findall(r'<td data-label="Group" class="group-name">([^<]+)</td>', ledger)
    assert "Startup (EarlyBird)" in groups and "Call minutes" in groups
    assert "EbStartup" not in groups


def test_logging_out_lands_on_the_site(site):
    new_user(site, "leaver")
    session = requests.Session()
    log_in(session, site, "leaver")
    out = post(session, site, "/accounts/logout/", page="/pricing/")
    assert out.status_code == 302 and out.headers["Location"] == "/pricing/"
    assert "Log in" in session.get(site.url + "/pricing/").text


def test_manual_provider_admin_has_no_dj_stripe_models(site):
    session = requests.Session()
    log_in(session, site, "admin", "admin")
    index = session.get(site.url + "/admin/")
    assert index.status_code == 200 and "User credits" in index.text
    assert "djstripe" not in index.text.lower() and "stripe" not in index.text.lower()
    assert session.get(site.url + "/admin/djstripe/").status_code == 404


def test_api_explorers(site):
    for path, marker in (("/api/docs/", "swagger-ui"), ("/api/redoc/", "redoc")):
        page = requests.get(site.url + path)
        assert page.status_code == 200 and marker in page.text.lower()
        assert "/api/credits/schema/" in page.text
    schema = requests.get(site.url + "/api/credits/schema/", headers={"Accept": "application/json"})
    assert schema.status_code == 200 and "/api/credits/offers/" in schema.text


def test_language_switch_and_accept_language(site):
    """The header's switch (Django's ``set_language``) and the browser's Accept-Language both
    give the French pages; the choice sticks to the visitor's session."""
    session = requests.Session()
    english = session.get(site.url + "/pricing/")
    assert '<html lang="en">' in english.text and ">Pricing</h1>" in english.text
    assert 'id="language-select"' in english.text and ">français<" in english.text
    switched = post(
        session, site, "/i18n/setlang/", {"language": "fr", "next": "/pricing/"}, page="/pricing/"
    )
    assert switched.status_code == 302 and switched.headers["Location"] == "/pricing/"
    french = session.get(site.url + "/pricing/")
    assert '<html lang="fr">' in french.text and ">Tarifs</h1>" in french.text
    assert "La plus choisie" in french.text and ">Acheter</button>" in french.text
    assert "mensuel" in french.text.lower()  # the cycle switch, from the app's catalog
    by_header = requests.get(site.url + "/accounts/login/", headers={"Accept-Language": "fr"})
    assert '<html lang="fr">' in by_header.text and "Identifiants de démo" in by_header.text
    assert by_header.headers["Content-Language"] == "fr"


# --- recurring plans ---------------------------------------------------------------------------


def plan_of(site, username, offer_name):
    """``status cancel_at_period_end period_end`` of the user's latest subscription to it."""
    return site.python(
        "from user_credits.models import Subscription; "
        f"s = Subscription.objects.filter(holder__username={username!r}, "
        f"offer__name={offer_name!r}).latest('pk'); "
        "print(s.pk, s.status, s.cancel_at_period_end, "
        "s.current_period_end and s.current_period_end.date())"
    ).split()


def group_balance(site, username, group):
    return int(
        site.python(
            "from django.contrib.auth import get_user_model; from user_credits import services; "
            f"print(services.get_balance(get_user_model().objects.get(username={username!r}), "
            f"{group!r}))"
        )
    )


def test_free_plan_subscribes_at_once_and_its_simulated_renewal_is_the_sweeps(site):
    new_user(site, "hobbyist")
    session = requests.Session()
    log_in(session, site, "hobbyist")
    subscribed = post(
        session, site, f"/subscribe/{offer_id(site, 'Hobby Monthly')}/", {}, "/pricing/"
    )
    assert subscribed.status_code == 302 and subscribed.headers["Location"] == "/credits/"
    pk, status, ending, period_end = plan_of(site, "hobbyist", "Hobby Monthly")
    assert (status, ending) == ("active", "False")
    page = session.get(site.url + "/credits/").text
    assert f"Renews on {period_end}." in page and "100 tokens per period." in page
    assert "Unused tokens expire with their period." in page and "Demo control" in page
    assert group_balance(site, "hobbyist", "Hobby") == 100
    renewed = post(session, site, f"/plans/{pk}/simulate-renewal/", page="/credits/")
    assert renewed.status_code == 302
    # The free period is granted under the expiry sweep's own reference: when the sweep runs
    # at that period's start, it finds it paid and grants nothing more.
    references = site.python(
        "from user_credits.models import Order; print(sorted(o.payment_reference.split(':')[0] "
        f"for o in Order.objects.filter(subscription_id={pk})))"
    )
    assert references == "['free', 'free']"
    assert group_balance(site, "hobbyist", "Hobby") == 200  # the next period's 100 count now
    assert "You subscribe to this plan." in session.get(site.url + "/pricing/").text


def test_plans_refuse_bad_requests_and_other_users(site):
    new_user(site, "planowner")
    new_user(site, "intruder")
    owner, intruder = requests.Session(), requests.Session()
    log_in(owner, site, "planowner")
    log_in(intruder, site, "intruder")
    pro = offer_id(site, "Pro Monthly")
    assert (
        post(owner, site, f"/subscribe/{pro}/", {"currency": "usd"}, "/pricing/").status_code == 302
    )
    pk, status, _, _ = plan_of(site, "planowner", "Pro Monthly")
    assert status == "incomplete"
    # Not paid yet: no renewal to simulate; a second subscription to the same plan is refused.
    assert post(owner, site, f"/plans/{pk}/simulate-renewal/", page="/credits/").status_code == 302
    again = post(owner, site, f"/subscribe/{pro}/", {}, "/pricing/")
    assert again.headers["Location"] == "/pricing/"
    assert "already subscribes" in owner.get(site.url + "/pricing/").text
    # A one-time offer is not sold as a subscription.
    one_time = post(owner, site, f"/subscribe/{offer_id(site, '1 Talk')}/", {}, "/pricing/")
    assert one_time.headers["Location"] == "/pricing/"
    assert "sold once, not as a subscription" in owner.get(site.url + "/pricing/").text
    # Someone else's plan: 403 for every action, nothing changes.
    for action in ("simulate-payment", "simulate-renewal", "cancel", "resume"):
        answer = post(intruder, site, f"/plans/{pk}/{action}/", page="/credits/")
        assert answer.status_code == 403, action
    count = site.python(
        "from user_credits.models import Subscription, Order; "
        "print(Subscription.objects.filter(holder__username='planowner').count(), "
        "Order.objects.filter(holder__username='planowner').count())"
    )
    assert count == "1 0"
    assert plan_of(site, "planowner", "Pro Monthly")[1:3] == ["incomplete", "False"]
    # The owner cancels the unpaid plan: at once.
    assert post(owner, site, f"/plans/{pk}/cancel/", page="/credits/").status_code == 302
    assert plan_of(site, "planowner", "Pro Monthly")[1] == "canceled"


# --- auto-recharge -------------------------------------------------------------------------------


def recharge_of(site, username, group):
    """``enabled threshold quantity offer pending_order`` of the user's recharge of ``group``."""
    return site.python(
        "from user_credits.models import AutoRecharge; "
        f"r = AutoRecharge.objects.get(holder__username={username!r}, offer_group__key={group!r}); "
        "print(r.enabled, r.threshold, r.quantity, r.offer.name.replace(' ', '_'), "
        "r.pending_order_id)"
    ).split()


def test_auto_recharge_form_recharges_after_playground_spending(site):
    new_user(site, "recharger")
    session = requests.Session()
    log_in(session, site, "recharger")
    buy_and_pay(session, site, "Startup EarlyBird Monthly")
    page = session.get(site.url + "/credits/").text
    assert 'id="auto-recharge"' in page and "Not set up." in page
    assert 'id="workspace-select"' not in page  # users hold their own credits: no switcher
    panel = page[page.index('class="panel recharge" data-group="EbStartup"') :]
    assert ">Startup EarlyBird Monthly</option>" in panel
    assert "Pro Monthly" not in panel  # a recurring plan of another group is not offered
    monthly = offer_id(site, "Startup EarlyBird Monthly")
    enabled = post(
        session,
        site,
        "/credits/auto-recharge/",
        {"group": "EbStartup", "offer": monthly, "threshold": "900", "quantity": "1"},
        page="/credits/",
    )
    assert enabled.status_code == 302 and enabled.headers["Location"] == "/credits/#auto-recharge"
    page = session.get(site.url + "/credits/").text
    assert "On: 1 × Startup EarlyBird Monthly when under 900 tokens." in page
    assert recharge_of(site, "recharger", "EbStartup") == [
        "True",
        "900",
        "1",
        "Startup_EarlyBird_Monthly",
        "None",
    ]
    asked = post(
        session,
        site,
        "/playground/",
        {"prompt": "Summarise our third quarter", "length": "medium", "group": "EbStartup"},
    )
    assert asked.status_code == 200 and asked.headers["Credits-Remaining"] == "796"
    pending = recharge_of(site, "recharger", "EbStartup")[4]
    assert pending != "None"  # 796 < 900: a recharge order is in flight
    status = site.python(
        f"from user_credits.models import Order; o = Order.objects.get(pk={pending}); "
        "print(o.status, o.name.replace(' ', '_'), o.quantity)"
    )
    assert status == "pending Startup_EarlyBird_Monthly 1"
    page = session.get(site.url + "/credits/").text
    assert f'data-order="{pending}"' in page and f"Recharge in flight: order #{pending}" in page
    assert f'action="/orders/{pending}/simulate/"' in page
    paid = post(session, site, f"/orders/{pending}/simulate/", page="/credits/")
    assert paid.status_code == 302 and paid.headers["Location"] == "/credits/"
    assert group_balance(site, "recharger", "EbStartup") == 796 + 1000
    assert recharge_of(site, "recharger", "EbStartup")[4] == "None"  # nothing in flight
    assert "Recharge in flight" not in session.get(site.url + "/credits/").text

    # Change: another quantity and threshold, same form.
    changed = post(
        session,
        site,
        "/credits/auto-recharge/",
        {"group": "EbStartup", "offer": monthly, "threshold": "500", "quantity": "2"},
        page="/credits/",
    )
    assert changed.status_code == 302
    assert recharge_of(site, "recharger", "EbStartup")[:3] == ["True", "500", "2"]

    # Bad input: the service's message, nothing changes.
    for data, message in (
        ({"offer": monthly, "threshold": "0", "quantity": "1"}, "threshold must be a positive"),
        (
            {"offer": offer_id(site, "1 Talk"), "threshold": "100", "quantity": "1"},
            "1 Talk is not an offer of the group EbStartup.",
        ),
        ({"offer": monthly, "threshold": "lots", "quantity": "1"}, "threshold must be a positive"),
    ):
        refused = post(
            session,
            site,
            "/credits/auto-recharge/",
            {"group": "EbStartup", **data},
            page="/credits/",
        )
        assert refused.status_code == 302
        shown = session.get(site.url + "/credits/").text
        assert f'<li class="error">{message}' in shown, message
        assert recharge_of(site, "recharger", "EbStartup")[:3] == ["True", "500", "2"]

    # Disable: the recharge stays, switched off; a low balance then starts nothing.
    disabled = post(
        session,
        site,
        "/credits/auto-recharge/",
        {"group": "EbStartup", "action": "disable"},
        page="/credits/",
    )
    assert disabled.status_code == 302
    page = session.get(site.url + "/credits/").text
    assert "Auto-recharge disabled." in page and 'data-enabled="no"' in page and "Off." in page
    assert recharge_of(site, "recharger", "EbStartup")[0] == "False"
    site.python(
        "from django.contrib.auth import get_user_model; from user_credits import services; "
        "services.consume(get_user_model().objects.get(username='recharger'), 'EbStartup', 1700);"
        " print('ok')"
    )
    assert recharge_of(site, "recharger", "EbStartup")[4] == "None"
    assert group_balance(site, "recharger", "EbStartup") == 96
