"""The example site in a real browser: Debian's headless Chromium driven by Selenium, against
the site run as its own server (``manage.py runserver``, the example's settings, a fresh
database made by ``setup_demo``), one for the module; each test has its own users.

Accessibility: axe-core (``npm install axe-core``, which ``tests/run.sh`` does into
``tests/.axe``) runs inside the page; no serious or critical violation is allowed."""

import json
import shutil
from pathlib import Path

import pytest
from django.conf import settings

from .example_site import ExampleSite

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (tests/run.sh and .ci/run install them)",
)


AXE = Path(__file__).resolve().parent / ".axe" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = ExampleSite(tmp_path_factory.mktemp("example_site"))
    site.setup()
    with site.serving():
        yield site


def balance(site, username, group):
    """The user's balance, read by the site's own process from the site's database."""
    return int(
        site.python(
            "from django.contrib.auth import get_user_model; from user_credits import services; "
            f"print(services.get_balance(get_user_model().objects.get(username={username!r}), "
            f"{group!r}))"
        )
    )


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1100",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def screenshot(driver, name, tmp_path):
    folder = (
        Path(settings.USER_CREDITS_SCREENSHOTS) if settings.USER_CREDITS_SCREENSHOTS else tmp_path
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


def cards(driver):
    from selenium.webdriver.common.by import By

    return [c.get_attribute("data-offer") for c in driver.find_elements(By.CSS_SELECTOR, ".card")]


def wait_for_path(driver, fragment):
    """A click navigates asynchronously: wait for the new page before reading it."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(expected_conditions.url_contains(fragment))
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def buy_with_simulated_payment(driver, offer_name):
    from selenium.webdriver.common.by import By

    card = driver.find_element(By.CSS_SELECTOR, f'.card[data-offer="{offer_name}"]')
    card.find_element(By.TAG_NAME, "button").click()
    wait_for_path(driver, "/simulate/")
    assert "Simulated payment" in driver.find_element(By.TAG_NAME, "h1").text
    assert "Demo only" in driver.page_source
    driver.find_element(By.ID, "simulate").click()
    wait_for_path(driver, "/credits/")
    assert "My credits" in driver.find_element(By.TAG_NAME, "h1").text


def test_buyer_journey(site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(f"{site.url}/accounts/login/")
    browser.find_element(By.NAME, "username").send_keys("buyer")
    browser.find_element(By.NAME, "password").send_keys("buyer")
    browser.find_element(By.ID, "login-submit").click()
    wait_for_path(browser, "/pricing/")

    browser.get(f"{site.url}/pricing/")
    monthly = cards(browser)
    assert "Business Standard Monthly" in monthly and "Business Standard Yearly" not in monthly
    popular = browser.find_element(By.CSS_SELECTOR, ".card.popular")
    assert popular.get_attribute("data-offer") == "Business Standard Monthly"
    assert "Most popular" in popular.text
    assert "EventTalk" in monthly and "VIP EventTalk" not in monthly

    browser.find_element(By.ID, "cycle-yearly").click()
    wait_for_path(browser, "cycle=yearly")
    yearly = cards(browser)
    assert "Business Standard Yearly" in yearly and "Business Standard Monthly" not in yearly
    assert "cycle=yearly" in browser.current_url

    def price(offer_name):
        return browser.find_element(By.CSS_SELECTOR, f'.card[data-offer="{offer_name}"] .price')

    assert price("Business Standard Yearly").text == "500.00 USD"
    browser.find_element(By.ID, "currency-eur").click()
    wait_for_path(browser, "currency=eur")
    assert "cycle=yearly" in browser.current_url and cards(browser) == yearly
    assert price("Business Standard Yearly").text == "450.00 EUR"
    browser.find_element(By.ID, "currency-kwd").click()
    wait_for_path(browser, "currency=kwd")
    assert cards(browser) == ["EventTalk", "1 Talk", "3 Talks"]  # only these have KWD prices
    assert "Nothing here in KWD yet." in browser.page_source
    assert price("1 Talk").text == "9.250 KWD"

    buy_with_simulated_payment(browser, "1 Talk")
    talks = browser.find_element(By.CSS_SELECTOR, '[data-group="talks"] .balance')
    assert talks.text == "1"
    assert balance(site, "buyer", "talks") == 1
    bought = site.python(
        "from user_credits.models import Order; "
        "o = Order.objects.get(holder__username='buyer', name='1 Talk'); print(o.currency, o.total)"
    )
    assert bought.split() == ["kwd", "9.250"]

    browser.get(f"{site.url}/pricing/")
    buy_with_simulated_payment(browser, "Startup EarlyBird Monthly")
    browser.get(f"{site.url}/pricing/")
    after = cards(browser)
    assert "VIP EventTalk" in after and "EventTalk" not in after
    vip = browser.find_element(By.CSS_SELECTOR, '.card[data-offer="VIP EventTalk"]')
    assert "Unlocked for you" in vip.text
    screenshot(browser, "pricing", tmp_path)

    site.python(
        "from django.contrib.auth import get_user_model; from user_credits import services; "
        "services.consume(get_user_model().objects.get(username='buyer'), 'EbStartup', 250)"
    )
    browser.get(f"{site.url}/credits/")
    startup = browser.find_element(By.CSS_SELECTOR, '[data-group="EbStartup"] .balance')
    assert startup.text == "750"
    chart = browser.find_element(By.CSS_SELECTOR, '[data-group="EbStartup"] svg.chart polyline')
    assert len(chart.get_attribute("points").split()) == 6  # grant, consume, today: three steps
    browser.find_element(By.CSS_SELECTOR, '[data-group="EbStartup"] td a').click()
    wait_for_path(browser, "/credits/ledger/")
    kinds = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "table tr td:nth-child(3)")]
    assert kinds == ["consume", "grant"]


# --- the newcomer's journey, accessibility, keyboard, narrow screens ------------------------


def new_user(site, username, password="pw"):
    site.python(
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({username!r}, password={password!r}); print('ok')"
    )


def log_in(driver, username, password="pw"):
    from selenium.webdriver.common.by import By

    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()


def axe_violations(driver):
    """axe-core's serious and critical violations on the current page (rule id and nodes)."""
    if not AXE.exists():
        pytest.skip(f"axe-core is not installed at {AXE} (tests/run.sh installs it with npm)")
    driver.execute_script(AXE.read_text())
    driver.set_script_timeout(60)
    violations = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations), e => done([{id: 'axe-error', impact: 'critical',"
        " nodes: [{target: [String(e)]}]}]));"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


def accessible(driver, checked):
    """Check the current page with axe-core; remembers it in ``checked``."""
    found = axe_violations(driver)
    assert not found, f"{driver.current_url}: " + json.dumps(found, indent=1)
    checked.append(driver.current_url)


def ask(driver, prompt, length="medium"):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    box = driver.find_element(By.ID, "prompt")
    box.clear()
    box.send_keys(prompt)
    Select(driver.find_element(By.ID, "length")).select_by_value(length)
    driver.find_element(By.ID, "ask-submit").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(
        lambda d: (
            d.execute_script("return document.readyState") == "complete"
            and d.find_elements(By.TAG_NAME, "h1")
        )
    )


def test_newcomer_journey(site, browser, tmp_path):
    """Anonymous pricing → Buy → log in → back to the purchase → simulated payment → the
    playground until 402 → upgrade → the credits page shows the spend (chart and ledger).
    Every page passes axe-core; a screenshot of each step (``docs/journey/`` with
    ``USER_CREDITS_SCREENSHOTS=docs``)."""
    from selenium.webdriver.common.by import By

    new_user(site, "newcomer")
    checked = []

    def step(name):
        screenshot(browser, f"journey/{name}", tmp_path)

    browser.get(f"{site.url}/pricing/")
    assert "Log in" in browser.page_source
    accessible(browser, checked)
    step("01-pricing")
    # The checker finds what it should: a button without a name is a critical violation.
    browser.execute_script("document.body.append(document.createElement('button'))")
    assert "button-name" in [v["id"] for v in axe_violations(browser)]
    browser.refresh()

    card = browser.find_element(By.CSS_SELECTOR, '.card[data-offer="Startup EarlyBird Monthly"]')
    card.find_element(By.TAG_NAME, "button").click()
    wait_for_path(browser, "/accounts/login/")
    accessible(browser, checked)
    step("02-login")
    log_in(browser, "newcomer")
    wait_for_path(browser, "/buy/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Buy Startup EarlyBird Monthly"
    assert "405" not in browser.title and "16.00 USD" in browser.page_source
    accessible(browser, checked)
    step("03-buy")
    browser.find_element(By.ID, "confirm-buy").click()
    wait_for_path(browser, "/simulate/")
    accessible(browser, checked)
    step("04-payment")
    browser.find_element(By.ID, "simulate").click()
    wait_for_path(browser, "/credits/")
    start = browser.find_element(By.CSS_SELECTOR, '[data-group="EbStartup"] .balance')
    assert start.text == "1000"

    browser.find_element(By.ID, "playground-link").click()
    wait_for_path(browser, "/playground/")
    accessible(browser, checked)
    remaining = []
    for _ in range(10):  # 1,000 tokens, 204 a medium answer, 250 reserved: four answers
        ask(browser, "Summarise our third quarter")
        if browser.find_element(By.TAG_NAME, "h1").text != "Ask WonderAI":
            break
        remaining.append(int(browser.find_element(By.ID, "remaining").text))
        balance_shown = browser.find_element(By.CSS_SELECTOR, '[data-group="EbStartup"] .balance')
        assert int(balance_shown.text) == remaining[-1]
        if len(remaining) == 1:
            accessible(browser, checked)
            step("05-playground")
    assert remaining == [796, 592, 388, 184]
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not enough credits"
    assert browser.find_element(By.ID, "available").text == "184"
    accessible(browser, checked)
    step("06-out-of-credits")
    assert balance(site, "newcomer", "EbStartup") == 184

    browser.find_element(By.CSS_SELECTOR, "a.upgrade").click()
    wait_for_path(browser, "/pricing/")
    buy_with_simulated_payment(browser, "Business Standard Monthly")
    assert browser.find_element(By.CSS_SELECTOR, '[data-group="Business"] .balance').text == "5000"
    startup = browser.find_element(By.CSS_SELECTOR, '[data-group="EbStartup"]')
    assert startup.find_element(By.CSS_SELECTOR, ".balance").text == "184"
    chart = startup.find_element(By.CSS_SELECTOR, "svg.chart polyline")
    # grant, four answers, today: six steps of two points, falling
    points = chart.get_attribute("points").split()
    assert len(points) == 12
    heights = [float(p.split(",")[1]) for p in points[1::2]]
    assert heights == sorted(heights)  # y grows downwards: the balance only falls
    accessible(browser, checked)
    screenshot(browser, "credits", tmp_path)

    startup.find_element(By.CSS_SELECTOR, "td a").click()
    wait_for_path(browser, "/credits/ledger/")
    kinds = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "td.kind")]
    amounts = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "td.amount")]
    assert kinds == ["capture"] * 4 + ["grant"] or kinds == ["consume"] * 4 + ["grant"], kinds
    assert amounts == ["-204"] * 4 + ["1000"]
    names = {td.text for td in browser.find_elements(By.CSS_SELECTOR, "td.group-name")}
    assert names == {"Startup (EarlyBird)"}
    accessible(browser, checked)
    step("08-ledger")
    assert len(checked) == 9


def keyboard_to(driver, selector, limit=150):
    """Press Tab until ``selector`` has the focus (at most ``limit`` times); its element."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    target = driver.find_element(By.CSS_SELECTOR, selector)
    for _ in range(limit):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if driver.switch_to.active_element == target:
            return target
    raise AssertionError(f"{selector} never got the focus in {limit} tabs")


def test_keyboard_buys_and_reads_the_ledger(site, browser):
    from selenium.webdriver.common.keys import Keys

    new_user(site, "keyboard")
    browser.get(f"{site.url}/accounts/login/")
    log_in(browser, "keyboard")
    wait_for_path(browser, "/pricing/")
    buy = keyboard_to(browser, '.card[data-offer="1 Talk"] button')
    assert buy.get_attribute("aria-label") == "Buy 1 Talk"
    focus = browser.execute_script(
        "return getComputedStyle(document.activeElement, ':focus-visible').outlineStyle"
    )
    assert focus != "none"  # the focus is visible
    buy.send_keys(Keys.ENTER)
    wait_for_path(browser, "/simulate/")
    keyboard_to(browser, "#simulate").send_keys(Keys.ENTER)
    wait_for_path(browser, "/credits/")
    keyboard_to(browser, '[data-group="talks"] td a').send_keys(Keys.ENTER)
    wait_for_path(browser, "/credits/ledger/")
    assert balance(site, "keyboard", "talks") == 1


@pytest.mark.parametrize("width", [390, 500])
def test_narrow_screens_do_not_scroll_sideways(site, browser, tmp_path, width):
    """Pricing, credits (with lots), the ledger and the playground (with an answer) fit a
    phone's width: the page is never wider than the window."""
    from selenium.webdriver.common.by import By

    username = f"phone{width}"
    new_user(site, username)
    browser.set_window_size(width, 900)
    browser.get(f"{site.url}/accounts/login/")
    log_in(browser, username)
    wait_for_path(browser, "/pricing/")
    assert browser.execute_script("return window.innerWidth") <= width
    buy_with_simulated_payment(browser, "Mobile Max")
    browser.get(f"{site.url}/pricing/")
    buy_with_simulated_payment(browser, "Startup EarlyBird Monthly")
    pages = {}
    for path in ("/pricing/", "/credits/", "/credits/ledger/", "/playground/"):
        browser.get(site.url + path)
        if path == "/playground/":
            ask(browser, "How do narrow screens look")
            assert browser.find_element(By.ID, "remaining").text == "795"  # 5 + 200 used
        pages[path] = browser.execute_script(
            "const e = document.documentElement; return [e.scrollWidth, e.clientWidth]"
        )
        if width == 390 and path in ("/credits/", "/playground/"):
            screenshot(browser, f"mobile-{path.strip('/').replace('/', '-')}", tmp_path)
    wide = {path: sizes for path, sizes in pages.items() if sizes[0] > sizes[1]}
    assert not wide, f"wider than {width} px: {wide}"


# --- recurring plans -------------------------------------------------------------------------


def click_and_wait(driver, element):
    """Click a button whose form posts and comes back to the same page: wait for the new one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 10).until(expected_conditions.staleness_of(page))
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def period_end(site, username, offer_name):
    """The end of the user's current period of the plan, as the site's pages show dates."""
    return site.python(
        "from django.utils import timezone; from user_credits.models import Subscription; "
        f"s = Subscription.objects.get(holder__username={username!r}, offer__name={offer_name!r}); "
        "print(timezone.localtime(s.current_period_end).strftime('%Y-%m-%d'))"
    )


def test_recurring_plan_journey(site, browser, tmp_path):
    """Subscribe to Pro Monthly (1,000 tokens a month, up to 300 unused roll over) → simulated
    first payment → the credits page shows its next renewal → spend 500 → simulated renewal:
    300 of the 500 unused move into the new period's lot (1,000 + 300), the other 200 stay in
    the old lot until its period ends: 1,500 available → cancel: "Ends on …" → resume. Every
    page passes axe-core, and fits 390 px without scrolling sideways."""
    from selenium.webdriver.common.by import By

    new_user(site, "subscriber")
    checked = []
    browser.get(f"{site.url}/accounts/login/")
    log_in(browser, "subscriber")
    wait_for_path(browser, "/pricing/")
    card = browser.find_element(By.CSS_SELECTOR, '.card[data-offer="Pro Monthly"]')
    assert "15.00 USD" in card.text and "1000 tokens monthly" in card.text
    assert "Unused tokens move to the next period, up to 300." in card.text
    accessible(browser, checked)
    button = card.find_element(By.TAG_NAME, "button")
    assert button.get_attribute("aria-label") == "Subscribe to Pro Monthly"
    button.click()
    wait_for_path(browser, "/simulate-payment/")
    assert "Demo only" in browser.page_source and "15.00 USD" in browser.page_source
    accessible(browser, checked)
    browser.find_element(By.ID, "simulate").click()
    wait_for_path(browser, "/credits/")

    def plan():
        return browser.find_element(By.CSS_SELECTOR, '[data-plan="Pro Monthly"]')

    def pro_balance():
        return int(browser.find_element(By.CSS_SELECTOR, '[data-group="Pro"] .balance').text)

    first_end = period_end(site, "subscriber", "Pro Monthly")
    assert plan().find_element(By.CSS_SELECTOR, ".renewal").text == f"Renews on {first_end}."
    assert "1000 tokens per period." in plan().text and "up to 300" in plan().text
    assert "Demo control" in plan().text
    assert pro_balance() == 1000
    accessible(browser, checked)

    site.python(
        "from django.contrib.auth import get_user_model; from user_credits import services; "
        "services.consume(get_user_model().objects.get(username='subscriber'), 'Pro', 500)"
    )
    browser.refresh()
    assert pro_balance() == 500
    click_and_wait(browser, plan().find_element(By.CSS_SELECTOR, "button.simulate-renewal"))
    assert "300 unused token(s) rolled over" in browser.find_element(By.CLASS_NAME, "messages").text
    assert pro_balance() == 1500 == balance(site, "subscriber", "Pro")
    lots = browser.find_elements(By.CSS_SELECTOR, '[data-group="Pro"] table tr:not(.head)')
    granted_remaining = sorted(
        (
            int(r.find_element(By.CSS_SELECTOR, '[data-label="Granted"]').text),
            int(r.find_element(By.CSS_SELECTOR, '[data-label="Remaining"]').text),
        )
        for r in lots
    )
    assert granted_remaining == [(1000, 200), (1300, 1300)]
    second_end = period_end(site, "subscriber", "Pro Monthly")
    assert second_end > first_end
    assert plan().find_element(By.CSS_SELECTOR, ".renewal").text == f"Renews on {second_end}."
    accessible(browser, checked)
    browser.execute_script("arguments[0].scrollIntoView()", plan())
    screenshot(browser, "recurring-plans", tmp_path)

    click_and_wait(browser, plan().find_element(By.CSS_SELECTOR, "button.cancel"))
    assert plan().find_element(By.CSS_SELECTOR, ".renewal").text == f"Ends on {second_end}."
    assert not plan().find_elements(By.CSS_SELECTOR, "button.simulate-renewal")
    assert pro_balance() == 1500  # the paid periods' tokens stay
    accessible(browser, checked)
    click_and_wait(browser, plan().find_element(By.CSS_SELECTOR, "button.resume"))
    assert plan().find_element(By.CSS_SELECTOR, ".renewal").text == f"Renews on {second_end}."
    assert plan().find_elements(By.CSS_SELECTOR, "button.simulate-renewal")
    accessible(browser, checked)
    status = site.python(
        "from user_credits.models import Subscription; "
        "s = Subscription.objects.get(holder__username='subscriber'); "
        "print(s.status, s.cancel_at_period_end, s.orders.count())"
    )
    assert status == "active False 2"

    browser.set_window_size(390, 900)
    widths = {}
    for path in ("/pricing/", "/credits/"):
        browser.get(site.url + path)
        widths[path] = browser.execute_script(
            "const e = document.documentElement; return [e.scrollWidth, e.clientWidth]"
        )
        accessible(browser, checked)
    browser.execute_script("arguments[0].scrollIntoView()", plan())
    screenshot(browser, "mobile-recurring-plans", tmp_path)
    assert all(scroll <= client for scroll, client in widths.values()), widths
    assert len(checked) == 8


# --- auto-recharge -------------------------------------------------------------------------------


def test_auto_recharge_form_in_the_browser(site, browser, tmp_path):
    """Enable a recharge with the credits page's form, spend under its threshold, pay the
    recharge in flight with its demo control: the balance is topped up. The page passes
    axe-core in each state (not set up, enabled, in flight)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    new_user(site, "autobuyer")
    checked = []
    browser.get(f"{site.url}/accounts/login/")
    log_in(browser, "autobuyer")
    wait_for_path(browser, "/pricing/")
    buy_with_simulated_payment(browser, "3 Talks")
    panel = browser.find_element(By.CSS_SELECTOR, '.recharge[data-group="talks"]')
    assert "Not set up." in panel.text
    accessible(browser, checked)
    Select(panel.find_element(By.NAME, "offer")).select_by_visible_text("1 Talk")
    panel.find_element(By.NAME, "threshold").send_keys("2")
    click_and_wait(browser, panel.find_element(By.CSS_SELECTOR, "button.enable-recharge"))
    panel = browser.find_element(By.CSS_SELECTOR, '.recharge[data-group="talks"]')
    assert panel.get_attribute("data-enabled") == "yes"
    assert "On: 1 × 1 Talk when under 2 tokens." in panel.text
    accessible(browser, checked)
    site.python(
        "from django.contrib.auth import get_user_model; from user_credits import services; "
        "services.consume(get_user_model().objects.get(username='autobuyer'), 'talks', 2);"
        " print('ok')"
    )
    browser.refresh()
    panel = browser.find_element(By.CSS_SELECTOR, '.recharge[data-group="talks"]')
    assert "Recharge in flight" in panel.text
    accessible(browser, checked)
    browser.execute_script("arguments[0].scrollIntoView()", panel)
    screenshot(browser, "auto-recharge", tmp_path)
    panel.find_element(By.CSS_SELECTOR, "button.simulate-recharge").click()
    wait_for_path(browser, "/credits/")
    assert browser.find_element(By.CSS_SELECTOR, '[data-group="talks"] .balance').text == "2"
    assert "Recharge in flight" not in browser.page_source
    assert balance(site, "autobuyer", "talks") == 2
    assert len(checked) == 3
