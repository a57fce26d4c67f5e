"""A real browser (headless Chromium) shops on the WebShop site served by waitress."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("pyserini", reason="WebShop's extras are not installed (pip install 'sdar[webshop]')")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install 'sdar[dev]')")

from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from sdar_envs.serving import BackgroundServer  # noqa: E402
from sdar_envs.webshop.server import create_app, get_shop  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def site():
    with BackgroundServer(create_app(), threads=4) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def submit(browser, element):
    """Click a submit button and wait until the next page has loaded in place of this one.

    The old page is marked with a JavaScript global, which a navigation discards; checking the mark
    (rather than an element's staleness) cannot hit a node Chrome is detaching, and any WebDriver
    error raised while the page changes only means "not yet".
    """
    browser.execute_script("window.__sdar_old_page = true;")
    element.click()

    def next_page_ready(driver) -> bool:
        return driver.execute_script(
            "return window.__sdar_old_page === undefined && document.readyState === 'complete';"
        )

    WebDriverWait(browser, 20, ignored_exceptions=(WebDriverException,)).until(next_page_ready)


def click_button(browser, label):
    buttons = [b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == label]
    assert buttons, f"no button {label!r} on {browser.current_url}"
    submit(browser, buttons[0])


def test_browser_search_open_item_pick_options_and_buy(site, browser):
    shop = get_shop()
    goal = shop.catalog.split("test")[0]
    product = shop.product(goal.asin)

    browser.get(site + "/")
    browser.find_element(By.ID, "goal_id").send_keys(goal.goal_id)
    submit(browser, browser.find_element(By.ID, "start"))
    assert goal.instruction in browser.find_element(By.ID, "instruction-text").text

    box = browser.find_element(By.ID, "search_input")
    box.send_keys(product.title)
    submit(browser, browser.find_element(By.ID, "search"))
    assert "Total results" in browser.page_source
    click_button(browser, goal.asin)
    assert browser.find_element(By.TAG_NAME, "h2").text == product.title

    click_button(browser, "Features")
    assert product.bullet_points[0] in browser.page_source
    click_button(browser, "< Prev")
    for value in goal.option_values:
        click_button(browser, value)
        selected = browser.find_elements(By.CSS_SELECTOR, "button.selected")
        assert value in [b.text for b in selected]
    click_button(browser, "Buy Now")
    assert browser.find_element(By.ID, "thanks").text == "Thank you for shopping with us!"
    assert browser.find_element(By.ID, "reward").text.endswith("1.0000")


def test_browser_sees_a_4xx_page_for_a_bad_url(site, browser):
    browser.get(site + "/s/no-such-session")
    assert "404" in browser.find_element(By.TAG_NAME, "h1").text
