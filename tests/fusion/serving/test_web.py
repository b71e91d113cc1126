"""The page `kgrec serve` shows at `/`, driven in a real headless Chromium (Debian's chromium and
chromium-driver): search, open a product, see its related items with their explanations drawn,
filter, open a user. A real model trained on a Beauty slice answers; screenshots of each step
are kept in $KGREC_TEST_ARTEFACTS (default test-artefacts/)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from kg.catalogue import Catalogue
from kg.schema import Rel
from kg.stores import EmbeddedStore, Neo4jStore
from tests.fusion.serving.test_recommender import write_slice

CHROMIUM = os.environ.get("KGREC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KGREC_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTEFACTS = Path(os.environ.get("KGREC_TEST_ARTEFACTS", "test-artefacts"))
KGREC = [sys.executable, "-m", "fusion.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module", params=["embedded", "neo4j"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Catalogue]]:
    """`kgrec serve` on a model trained for one epoch on the Beauty slice, in an embedded store
    and in the test Neo4j server (the CLI's default store here); bought_together, the smallest
    relation, keeps the training short."""
    work = tmp_path_factory.mktemp("web")
    if request.param == "embedded":
        catalogue = write_slice(EmbeddedStore(work / "graph"))
        store = ["--store", f"embedded:{work / 'graph'}"]
    else:
        settings = request.getfixturevalue("neo4j_settings")
        with Neo4jStore(settings.uri, settings.user, settings.password) as graph:
            graph.clear()
            catalogue = write_slice(graph)
        store = []
    model = ["--checkpoint", str(work / "model")]
    relation = ["--task", "related", "--relation", "bought_together", "--epochs", "1"]
    train = [*KGREC, "train", *relation, *store, "--out", model[1]]
    subprocess.run(train, check=True, capture_output=True, timeout=1200)
    port = _free_port()
    server = subprocess.Popen([*KGREC, "serve", "--port", str(port), *model, *store])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"kgrec serve did not come up (exit code {server.poll()})")
            time.sleep(0.5)
        yield base, catalogue
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The flags a closed network needs (no background connections, no component updates).
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _wait(driver: WebDriver, css: str, timeout: float = 60) -> list:
    WebDriverWait(driver, timeout).until(ready.presence_of_element_located((By.CSS_SELECTOR, css)))
    return driver.find_elements(By.CSS_SELECTOR, css)


def _screenshot(driver: WebDriver, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTEFACTS / f"web-{name}.png"))


def test_search_then_a_product_with_its_explanations_drawn(served, browser):
    base, catalogue = served
    edge = next(e for e in catalogue.edges if e.rel == Rel.ALSO_BOUGHT and e.src != e.dst)
    product = catalogue.products[edge.src]
    browser.get(f"{base}/")
    box = _wait(browser, "#search-text")[0]
    box.send_keys(product.title)
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    hits = _wait(browser, ".answer[data-id]")
    assert edge.src in [hit.get_attribute("data-id") for hit in hits]  # its own title finds it
    _screenshot(browser, "search")
    link = browser.find_element(By.CSS_SELECTOR, f'.answer[data-id="{edge.src}"] a.title')
    link.click()
    head = _wait(browser, ".product-head")[0]
    assert head.get_attribute("data-id") == edge.src
    assert " ".join(product.title.split()) in head.text  # the page folds white space
    graphs = _wait(browser, ".answer .graph[data-nodes]")
    assert graphs, "an explained answer draws its paths"
    assert all(int(g.get_attribute("data-nodes")) >= 2 for g in graphs)
    assert all(int(g.get_attribute("data-edges")) >= 1 for g in graphs)
    assert browser.find_elements(By.CSS_SELECTOR, ".answer .graph canvas"), "cytoscape drew"
    _screenshot(browser, "product")


def test_filters_narrow_the_related_items(served, browser):
    base, catalogue = served
    priced = {pid for pid, p in catalogue.products.items() if p.price is not None}
    source = sorted(priced)[0]
    browser.get(f"{base}/#/product/{source}")
    _wait(browser, ".answer[data-id]")
    browser.find_element(By.ID, "f-min").send_keys("0")
    browser.find_element(By.ID, "f-apply").click()
    # The list is redrawn when the filter applies: an element read mid-redraw is stale.
    WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: (
            all(
                a.get_attribute("data-id") in priced
                for a in d.find_elements(By.CSS_SELECTOR, ".answer[data-id]")
            )
            and d.find_elements(By.CSS_SELECTOR, ".answer[data-id]")
        )
    )
    _screenshot(browser, "filtered")


def test_a_user_page_shows_history_and_recommendations(served, browser):
    base, catalogue = served
    user = sorted(catalogue.users)[0]
    browser.get(f"{base}/#/user/{user}")
    history = _wait(browser, ".history a")
    mine = {i.product for i in catalogue.interactions if i.user == user}
    assert {a.get_attribute("href").rsplit("/", 1)[-1] for a in history} <= mine
    answers = _wait(browser, ".answer[data-id]")
    assert answers and not {a.get_attribute("data-id") for a in answers} & mine
    _screenshot(browser, "user")


def test_an_unknown_product_shows_the_error(served, browser):
    base, _ = served
    browser.get(f"{base}/#/product/no-such-product")
    error = _wait(browser, ".error")[0]
    assert "404" in error.text and "no-such-product" in error.text
