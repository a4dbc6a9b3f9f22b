"""Headless Chromium against the demo: product page → widget → "Add all to cart" →
cart → checkout records an order attributed to the widget, bundle and run."""

import os
import shutil

import pytest
from django.core.cache import cache

from shop_recs.models import Interaction
from tests.serving_data import serving_shop

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian's chromium"),
]


@pytest.fixture
def page():
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.mark.django_db(transaction=True)
def test_add_all_to_cart_and_check_out_attributed(live_server, page):
    cache.clear()
    p, run, bundle = serving_shop()
    page.goto(f"{live_server.url}/products/{p[0].pk}/")
    widget = page.locator('section[data-shop-recs-widget="fbt"]')
    assert widget.get_attribute("data-bundle-id") == str(bundle.pk)
    ids = [el.get_attribute("data-product-id")
           for el in widget.locator("[data-product-id]").all()]
    assert ids == [str(p[9].pk), str(p[10].pk), str(p[1].pk)]
    # Live total: unticking an item drops its price and the bundle discount.
    total = widget.locator("[data-shop-recs-total]")
    before = total.inner_text()
    widget.locator(f'input[type=checkbox][value="{p[1].pk}"]').uncheck()
    assert total.inner_text() != before
    assert "selected" in widget.locator("button[type=submit]").inner_text()
    widget.locator(f'input[type=checkbox][value="{p[1].pk}"]').check()
    widget.get_by_role("button", name="Add all to cart").click()
    page.wait_for_url(f"{live_server.url}/cart/")
    assert page.locator(".cart-count").inner_text() == "4"
    for product in (p[0], p[9], p[10], p[1]):
        assert page.locator(f'table.cart a[href="/products/{product.pk}/"]').count() == 1
    page.goto(f"{live_server.url}/checkout/")
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(f"{live_server.url}/checkout/done/")
    lines = Interaction.objects.filter(kind="purchase")
    assert lines.count() == 4
    assert set(lines.values_list("widget", "bundle_ref", "run_ref")) == {
        ("fbt", bundle.pk, run.pk)}
    # The beacon recorded the impression with the same attribution.
    impressions = Interaction.objects.filter(kind="widget_impression")
    assert impressions.exists() and impressions.first().run_ref == run.pk
