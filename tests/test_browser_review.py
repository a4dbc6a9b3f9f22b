"""Headless Chromium: staff approve a proposed bundle, and shoppers then see it.

Needs the ``playwright`` package and Debian's Chromium (``/usr/bin/chromium``); it never
downloads a browser. The storefront side relies on the widget's markup contract
(issue 6): ``<section class="shop-recs-fbt" data-shop-recs-widget="fbt"
data-bundle-id="…">`` with ``data-product-id`` on each item, on the demo product page.
"""

import shutil
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from shop_recs.models import Bundle, BundleItem, Product
from shop_recs.review import signature

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Chromium is not installed"),
]


@pytest.fixture
def browser_page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls made by the
    # test itself are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page.set_default_timeout(15_000)
        yield page
        browser.close()


@pytest.fixture
def proposal():
    anchor, *items = [
        Product.objects.create(sku=f"B{i}", name=name, price=Decimal(price), category="tea")
        for i, (name, price) in enumerate([("Teapot", "24.00"), ("Tea cosy", "9.50"),
                                           ("Loose tea", "6.25")])]
    bundle = Bundle.objects.create(
        anchor=anchor, score=0.8, signature=signature(anchor.pk, [p.pk for p in items]),
        evidence={"orders_with_all": 312, "lift": 8.0, "model_score": 0.8})
    BundleItem.objects.bulk_create(BundleItem(bundle=bundle, product=p, position=i)
                                   for i, p in enumerate(items, start=1))
    user = User.objects.create_user("reviewer", password="correct horse", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        codename__in=["view_bundle", "change_bundle", "review_bundle", "view_trainingrun"]))
    return anchor, items, bundle


def widget(page, bundle):
    return page.locator(f'section.shop-recs-fbt[data-shop-recs-widget="fbt"]'
                        f'[data-bundle-id="{bundle.pk}"]')


def test_staff_approve_a_bundle_and_the_product_page_shows_it(live_server, browser_page,
                                                              proposal):
    anchor, items, bundle = proposal
    page = browser_page
    product_url = live_server.url + reverse("shop_demo:product", args=[anchor.pk])

    page.goto(product_url)
    assert widget(page, bundle).count() == 0  # proposed bundles do not reach customers

    page.goto(live_server.url + reverse("admin:login"))
    page.fill("#id_username", "reviewer")
    page.fill("#id_password", "correct horse")
    page.click('input[type="submit"]')
    page.goto(live_server.url + reverse("admin:shop_recs_bundle_review_next"))
    card = page.locator(f'[data-shop-recs-card][data-bundle-id="{bundle.pk}"]')
    card.wait_for()
    assert "bought together in 312 orders, 8× more often than chance" in card.inner_text()
    with page.expect_navigation():
        page.keyboard.press("a")  # the review screen's shortcut for "Approve"
    assert "All proposed bundles are reviewed" in page.content()

    bundle.refresh_from_db()
    assert bundle.status == Bundle.Status.APPROVED and bundle.reviewed_by.username == "reviewer"

    page.goto(product_url)
    shown = widget(page, bundle)
    shown.wait_for()
    ids = shown.locator("[data-product-id]").evaluate_all(
        "nodes => nodes.map(n => n.dataset.productId)")
    assert {str(p.pk) for p in items} <= set(ids)
