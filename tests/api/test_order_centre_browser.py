"""The order centre (streams/api/page/) in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) against a live worker on the embedded broker.

The page must show what the order API says: the tab counts are /orders/counts, a tab lists its
orders, a filter and a sort list the API's order, the pages reach every order once, the detail
shows the status history a replay of the same events gives, and the export downloads the file
`orderflow export` writes for the same filter. A field holding markup shows as text; without the
token the page asks for it. Screenshots of each tab go to tests/artifacts/ (not committed).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.config import Config
from orderflow.streams.kafka import topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.kafka.broker import EmbeddedBroker, broker_binary
from orderflow.streams.lifecycle import Policy
from support.live import WorkerProcess, run, wait_for
from support.orders import (HOUR, MIN, cancel_request, confirmed, created, delivered, item, paid, seller_cancelled,
                            shipped)
from support.reliability import frozen_clock, publish_events

TOKEN = "centre-test-token"
ORIGIN = 1_800_000_000_000
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
MARKUP = '<img src=x onerror="window.pwned=1">'
TABS = ("Unpaid", "To ship", "Shipped", "Completed", "Cancelled")
ORDERS = 32


def story() -> list[dict]:
    """Orders in every tab, two regions, and one whose product name and shop hold markup."""
    events = []
    for n in range(26):
        order_id, at = f"oc-{n:02}", ORIGIN - 40 * HOUR + n * MIN
        region = ("GB", "ID")[n % 2]
        events.append(created(order_id, at, region=region, shop_id=f"shop-{n % 3}", currency="GBP",
                              line_items=[item(f"sku-{n % 4}", 1 + n % 3, f"{5 + n}.50")],
                              total_amount=f"{(5 + n + 0.5) * (1 + n % 3):.2f}"))
        kind = n % 6
        if kind >= 1:
            events.append(paid(order_id, at + 10 * MIN))
        if kind in (2, 3, 4):
            events.append(shipped(order_id, at + 2 * HOUR))
        if kind in (3, 4):
            events.append(delivered(order_id, at + 20 * HOUR))
        if kind == 4:
            events.append(confirmed(order_id, at + 21 * HOUR))
        if kind == 5:
            events.append(cancel_request(order_id, at + HOUR))
            events.append(seller_cancelled(order_id, at + 2 * HOUR))
    # The urgency views: overdue, to ship within 24 h, a cancellation request waiting for the seller.
    for order_id, paid_at in (("oc-overdue", ORIGIN - 80 * HOUR), ("oc-soon", ORIGIN - 60 * HOUR),
                              ("oc-asked", ORIGIN - 10 * HOUR)):
        events += [created(order_id, paid_at - MIN), paid(order_id, paid_at)]
    events.append(cancel_request("oc-asked", ORIGIN - 2 * HOUR))
    # Shipped in two packages (A delivered, B not collected yet); partly shipped (lines 1 and 3 to ship).
    three = [item("sku-1", 1, "2.00"), item("sku-2", 1, "3.00"), item("sku-3", 1, "4.00")]
    at = ORIGIN - 30 * HOUR
    for order_id in ("oc-parcels", "oc-partial"):
        events += [created(order_id, at, line_items=three, total_amount="9.00"), paid(order_id, at + MIN, "9.00")]
    events += [shipped("oc-parcels", at + HOUR, package_id="A", line_ids=["1", "3"], tracking_number="RM1"),
               shipped("oc-parcels", at + 2 * HOUR, package_id="B", line_ids=["2"], carrier="DPD",
                       tracking_number="DPD2"),
               delivered("oc-parcels", at + 20 * HOUR, package_id="A"),
               shipped("oc-partial", at + HOUR, package_id="P1", line_ids=["2"], carrier="Evri", tracking_number="EV7")]
    events.append(created("oc-markup", ORIGIN - HOUR, shop_id=MARKUP,
                          line_items=[item("sku-x", 1, "1.00") | {"product_name": MARKUP}], total_amount="1.00"))
    return sorted(events, key=lambda event: event["event_time"])


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("centre")
    with EmbeddedBroker(broker_binary(Config()), log_path=tmp / "tansu.log") as broker:
        run(ensure_topics({"bootstrap_servers": broker.bootstrap}, topics.ALL_TOPICS, 4, 1))
        events = story()
        run(publish_events(broker.bootstrap, events))
        process = WorkerProcess(broker.bootstrap, tmp / "worker", clock=frozen_clock(ORIGIN), api_token=TOKEN)
        try:
            process.wait_ready(timeout=120)
            process.bootstrap = broker.bootstrap
            process.events = events
            wait_for(lambda: api(process, "/orders/counts")["total"] == ORDERS, 60, "every order applied")
            yield process
        finally:
            process.stop()


@pytest.fixture(scope="module")
def browser(chromium, worker):
    """The browser on the order centre, signed in (the token kept for the browser session)."""
    chromium.get(centre(worker))
    chromium.execute_script("sessionStorage.setItem('orderflow-token', arguments[0])", TOKEN)
    return chromium


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
                     "--window-size=1400,1000"):
        options.add_argument(argument)
    ARTIFACTS.mkdir(exist_ok=True)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def api(worker: WorkerProcess, path: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def centre(worker: WorkerProcess, query: str = "") -> str:
    return f"http://127.0.0.1:{worker.web_port}/centre/{query}"


def loaded_after(driver, before: str | None, timeout: float = 20) -> str:
    """Wait for a render after `before` (the page's mark then) of the view the URL now holds: the
    page marks each render it shows with its number and view; an older one shows nothing."""
    def shown(d):
        mark, search = d.execute_script("return [document.body.dataset.loaded || null, location.search]")
        return mark not in (None, before) and mark.split("|", 1)[1] == search and mark
    return WebDriverWait(driver, timeout).until(shown)


def mark(driver) -> str | None:
    return driver.execute_script("return document.body.dataset.loaded || null")


def listed_ids(driver) -> list[str]:
    return [row.get_attribute("data-order-id") for row in driver.find_elements(By.CSS_SELECTOR, "#orders tbody tr")]


def api_ids(worker, params: str) -> list[str]:
    ids, cursor = [], ""
    while True:
        page = api(worker, f"/orders?{params}" + (f"&cursor={cursor}" if cursor else ""))
        ids += [order["order_id"] for order in page["orders"]]
        if not (cursor := page["next_cursor"]):
            return ids


def sign_in(driver, worker) -> None:
    driver.get(centre(worker))
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "signin").is_displayed())
    assert not driver.find_element(By.ID, "centre").is_displayed()
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#signin button").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "centre").is_displayed())
    loaded_after(driver, None)


def test_without_the_token_the_api_answers_401_and_the_page_asks_for_it(worker, browser):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/orders/counts", timeout=30)
    assert refused.value.code == 401
    # The page's own files need no token (they hold no order); nothing else under their path is served.
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/centre/app.js", timeout=30) as page:
        assert page.status == 200 and b"textContent" in page.read()
    for path in ("/centre/x", "/centre/..%2Forders", "/centre/../orders"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}{path}", timeout=30)
        assert missing.value.code in (401, 404), path
    browser.execute_script("sessionStorage.clear()")
    sign_in(browser, worker)


def test_the_tab_counts_are_the_api_s_and_each_tab_lists_exactly_its_orders(worker, browser):
    browser.get(centre(worker))
    loaded_after(browser, None)
    counts = api(worker, "/orders/counts")
    shown = {button.get_attribute("data-tab"): int(button.find_element(By.CLASS_NAME, "count").text)
             for button in browser.find_elements(By.CSS_SELECTOR, "#tabs .tab")}
    assert shown == {"All": counts["total"], **counts["tabs"]}
    for tab in TABS:
        before = mark(browser)
        browser.find_element(By.CSS_SELECTOR, f'#tabs .tab[data-tab="{tab}"]').click()
        loaded_after(browser, before)
        assert "tab=" in browser.current_url
        assert listed_ids(browser) == api_ids(worker, f"tab={urllib.parse.quote(tab)}")
        assert len(listed_ids(browser)) == counts["tabs"][tab] > 0
        browser.save_screenshot(str(ARTIFACTS / f"order-centre-{tab.lower().replace(' ', '-')}.png"))


def test_a_filter_and_a_sort_list_the_api_s_order_and_a_reload_shows_the_same(worker, browser):
    browser.get(centre(worker))
    loaded_after(browser, None)
    form = browser.find_element(By.ID, "filters")
    form.find_element(By.NAME, "region").send_keys("GB")
    Select(form.find_element(By.NAME, "sort")).select_by_value("-total_amount")
    before = mark(browser)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    loaded_after(browser, before)
    expected = api_ids(worker, "region=GB&sort=-total_amount")
    assert listed_ids(browser) == expected and len(expected) > 5
    browser.refresh()
    loaded_after(browser, None)
    assert listed_ids(browser) == expected


@pytest.mark.parametrize("field, value, expected", [("due", "overdue", ["oc-overdue"]),
                                                    ("due", "ship_within_24h", ["oc-soon"]),
                                                    ("action_needed", "1", ["oc-asked"])])
def test_the_urgency_filters_list_the_api_s_orders(worker, browser, field, value, expected):
    browser.get(centre(worker))
    loaded_after(browser, None)
    form = browser.find_element(By.ID, "filters")
    if field == "due":
        Select(form.find_element(By.NAME, "due")).select_by_value(value)
    else:
        form.find_element(By.NAME, "action_needed").click()
    before = mark(browser)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    loaded_after(browser, before)
    assert listed_ids(browser) == api_ids(worker, f"{field}={value}") == expected
    if field == "due":  # the deadline in words, by the worker's clock
        words = browser.find_element(By.CSS_SELECTOR, 'td[data-label="Next deadline"]').text
        assert words == {"overdue": "ships overdue 8 h", "ship_within_24h": "ships in 12 h"}[value]


def test_pages_reach_every_order_once_and_back(worker, browser):
    browser.get(centre(worker, "?limit=4&sort=order_id"))
    loaded_after(browser, None)
    seen, pages = [], []
    while True:
        pages.append(listed_ids(browser))
        seen += pages[-1]
        if not browser.find_element(By.ID, "next").is_enabled():
            break
        before = mark(browser)
        browser.find_element(By.ID, "next").click()
        loaded_after(browser, before)
    assert seen == api_ids(worker, "sort=order_id") and len(seen) == api(worker, "/orders/counts")["total"]
    for page in reversed(pages[:-1]):  # and back to the first
        before = mark(browser)
        browser.find_element(By.ID, "previous").click()
        loaded_after(browser, before)
        assert listed_ids(browser) == page
    assert not browser.find_element(By.ID, "previous").is_enabled()


def test_the_detail_shows_the_status_history_a_replay_gives(worker, browser):
    book = OrderBook({}, Policy.load())
    for _ in replay((Line(n, event) for n, event in enumerate(worker.events)), ORIGIN, book.policy, book):
        pass
    order_id = "oc-04"  # created, paid, shipped, delivered, completed
    expected = [(step["to_status"], step["reason"]) for step in book.orders[order_id]["history"]]
    browser.get(centre(worker, f"?order={order_id}"))
    loaded_after(browser, None)
    assert browser.find_element(By.ID, "detail").is_displayed()
    steps = [re.search(r"→ (\S+) \((\S+)\)$", li.text).groups()
             for li in browser.find_elements(By.CSS_SELECTOR, "#timeline li")]
    assert steps == expected and len(steps) >= 4


def test_the_detail_shows_each_package_with_its_lines_carrier_status_and_tracking(worker, browser):
    browser.get(centre(worker, "?order=oc-parcels"))
    loaded_after(browser, None)
    assert browser.find_element(By.ID, "detail-title").text == "oc-parcels: AWAITING_COLLECTION"
    shown = {li.get_attribute("data-package-id"): li
             for li in browser.find_elements(By.CSS_SELECTOR, "#packages li.package")}
    assert list(shown) == ["A", "B"]
    a, b = shown["A"], shown["B"]
    assert a.find_element(By.CLASS_NAME, "package-head").text == "Package A DELIVERED Royal Mail RM1"
    assert b.find_element(By.CLASS_NAME, "package-head").text == "Package B AWAITING_COLLECTION DPD DPD2"
    assert a.find_element(By.CLASS_NAME, "package-facts").text.startswith("lines 1, 3, shipped ")
    assert "delivered " in a.find_element(By.CLASS_NAME, "package-facts").text
    assert b.find_element(By.CLASS_NAME, "package-facts").text.startswith("line 2, shipped ")
    history = [[entry.text for entry in package.find_elements(By.CSS_SELECTOR, ".package-tracking li")]
               for package in (a, b)]
    assert [[text.split(": ")[1] for text in entries] for entries in history] == [
        ["SHIPPED", "DELIVERED"], ["SHIPPED"]]
    lines = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#lines li")]
    assert [line.split(", ")[-1] for line in lines] == ["package A", "package B", "package A"]
    # Package B's stall check is named SHIPMENT_STALLED:B: shown in words, with its package.
    deadlines = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#deadlines li")]
    assert [text.split(":")[0] for text in deadlines] == ["carrier check (package B)"]
    assert "carrier check (package B)" in browser.find_element(
        By.CSS_SELECTOR, '#orders tr[data-order-id="oc-parcels"] td[data-label="Next deadline"]').text
    browser.find_element(By.ID, "packages").location_once_scrolled_into_view
    browser.save_screenshot(str(ARTIFACTS / "order-centre-packages.png"))

    browser.get(centre(worker, "?tab=To%20ship&order=oc-partial"))
    loaded_after(browser, None)
    assert "oc-partial" in listed_ids(browser)
    assert browser.find_element(By.ID, "detail-title").text == "oc-partial: PARTIALLY_SHIPPING"
    packages = browser.find_elements(By.CSS_SELECTOR, "#packages li.package")
    assert [p.find_element(By.CLASS_NAME, "package-head").text for p in packages] == [
        "Package P1 AWAITING_COLLECTION Evri EV7"]
    lines = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#lines li")]
    assert ["package P1" in line for line in lines] == [False, True, False]


def test_markup_in_an_order_shows_as_text(worker, browser):
    browser.get(centre(worker, "?tab=Unpaid&order=oc-markup"))
    loaded_after(browser, None)
    row = browser.find_element(By.CSS_SELECTOR, '#orders tr[data-order-id="oc-markup"]')
    assert MARKUP in row.find_element(By.CSS_SELECTOR, 'td[data-label="Lines"]').text
    assert MARKUP in browser.find_element(By.ID, "detail-facts").text
    assert browser.execute_script("return document.querySelectorAll('#orders img, #detail img').length") == 0


def test_the_export_downloads_what_orderflow_export_writes(worker, browser, tmp_path):
    browser.get(centre(worker, "?tab=Shipped&region=GB"))
    loaded_after(browser, None)
    browser.find_element(By.ID, "export").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "export-progress").get_attribute("data-done"))
    downloaded = wait_for(lambda: [p for p in browser.downloads.glob("orders*.csv")], 30, "the download")
    expected = tmp_path / "expected.csv"
    subprocess.run([sys.executable, "-m", "orderflow.streams", "export", "--tab", "Shipped", "--region", "GB",
                    "--out", str(expected), "--api", f"http://127.0.0.1:{worker.web_port}"],
                   check=True, env={**os.environ, "ORDERFLOW_API_TOKEN": TOKEN}, timeout=120)
    assert downloaded[0].read_bytes() == expected.read_bytes()
    assert expected.read_bytes().count(b"\n") > 2


def test_counts_refresh_by_themselves_at_the_same_place(worker, browser):
    browser.get(centre(worker, "?tab=To%20ship&limit=2&sort=order_id"))
    loaded_after(browser, None)
    before = mark(browser)
    browser.find_element(By.ID, "next").click()
    loaded_after(browser, before)
    second = listed_ids(browser)
    assert second == api_ids(worker, "tab=To%20ship&sort=order_id")[2:4]
    url, unpaid = browser.current_url, api(worker, "/orders/counts")["tabs"]["Unpaid"]
    run(publish_events(worker.bootstrap, [created("oc-late", ORIGIN - MIN)]))

    def unpaid_shown(d) -> int:
        return int(d.find_element(By.CSS_SELECTOR, '#tabs .tab[data-tab="Unpaid"] .count').text)
    WebDriverWait(browser, 30).until(lambda d: unpaid_shown(d) == unpaid + 1)
    assert browser.current_url == url and listed_ids(browser) == second  # the same page, refreshed


def test_on_a_phone_sized_screen_nothing_runs_off_the_side(worker, browser):
    browser.set_window_size(390, 844)
    try:
        browser.get(centre(worker, "?tab=To%20ship"))
        loaded_after(browser, None)
        assert browser.execute_script("return window.innerWidth") <= 640  # the phone layout's width
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        browser.save_screenshot(str(ARTIFACTS / "order-centre-phone.png"))
    finally:
        browser.set_window_size(1400, 1000)
