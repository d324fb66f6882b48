"""The example site in a real browser: Debian's headless Chromium driven by Selenium, against
the site run as its own server (``manage.py runserver``, the example's settings, a fresh
database made by ``setup_demo``)."""

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


@pytest.fixture
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
    browser.get(f"{site.url}/credits/")
    screenshot(browser, "credits", tmp_path)
