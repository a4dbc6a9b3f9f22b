"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium`` driven by the
``playwright`` package's sync API (never a downloaded browser).

A test module uses ``pytestmark = MARKS`` and imports the fixtures it needs::

    from tests.browser import MARKS, browser_page  # noqa: F401 (fixture)
"""

import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api")
MARKS = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Chromium is not installed"),
]


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls made by the
    # test itself are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(browser):
    page = browser.new_page()
    page.set_default_timeout(15_000)
    return page
