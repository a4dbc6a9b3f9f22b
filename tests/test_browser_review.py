"""Headless Chromium: staff approve a proposed bundle, and shoppers then see it.

Needs the ``playwright`` package and Debian's Chromium (``/usr/bin/chromium``); it never
downloads a browser. The storefront side relies on the widget's markup contract
(issue 6): ``<section class="shop-recs-fbt" data-shop-recs-widget="fbt"
data-bundle-id="…">`` with ``data-product-id`` on each item, on the demo product page.
"""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from shop_recs.models import Bundle, BundleItem, Product
from shop_recs.review import signature
from tests.browser import MARKS, browser, browser_page  # noqa: F401 (fixtures)

pytestmark = MARKS


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


# The admin at 1280 px on a populated shop (issue 16): screenshots go to
# $SHOP_RECS_SCREENSHOTS when set, else to the test's temporary folder.

NAMES = ["WHITE HANGING HEART T-LIGHT HOLDER", "JUMBO SHOPPER VINTAGE RED PAISLEY",
         "REGENCY CAKESTAND 3 TIER", "SET OF 3 CAKE TINS PANTRY DESIGN",
         "PACK OF 72 RETROSPOT CAKE CASES", "ASSORTED COLOUR BIRD ORNAMENT",
         "PAPER CHAIN KIT 50'S CHRISTMAS", "NATURAL SLATE HEART CHALKBOARD",
         "HAND WARMER UNION JACK", "LUNCH BAG RED RETROSPOT"]


@pytest.fixture
def populated():
    import os
    from pathlib import Path

    from shop_recs.ingest import record_order
    from shop_recs.models import TrainingRun

    products = [Product.objects.create(sku=f"8{i:04d}", name=f"{name}", currency="GBP",
                                       price=Decimal("1.63") + i, category="home")
                for i, name in enumerate(NAMES * 3)]
    for i, product in enumerate(products):
        record_order(f"5{i:05d}", [{"product": product, "quantity": 1 + i % 7,
                                    "unit_price": product.price}])
    test = {"bundle_model+ease": {"anchor_ndcg10": 0.2312, "complete_hr10": 0.41,
                                  "complete_ndcg10": 0.27, "weights": [1.0, 0.5]},
            "ease": {"anchor_ndcg10": 0.2101, "complete_hr10": 0.38, "complete_ndcg10": 0.25,
                     "params": "lambda=500"},
            "popularity": {"anchor_ndcg10": 0.05, "complete_hr10": 0.11,
                           "complete_ndcg10": 0.06, "params": ""}}
    run = TrainingRun.objects.create(
        status=TrainingRun.Status.SUCCEEDED, pending=None, is_active=True, device="cpu",
        shipped_model="bundle_model+ease", counts={"orders": 36969, "bundles_proposed": 11776},
        metrics={"validation": {"ease": {"anchor": 0.21, "complete": 0.24},
                                "bundle_model+ease": {"anchor": 0.23, "complete": 0.26}},
                 "test": test},
        gate={"chosen": "bundle_model+ease", "reason": "beats ease by 10% on validation"},
        progress={"epoch": 6, "epochs": 6, "loss": [7.5, 6.1, 5.7, 5.5, 5.4, 5.35],
                  "val_metric": [0.18, 0.21, 0.22, 0.225, 0.229, 0.23]})
    for i, anchor in enumerate(products):
        items = [products[(i + 1) % len(products)], products[(i + 5) % len(products)]]
        bundle = Bundle.objects.create(
            anchor=anchor, run=run, score=66.20539093017578 - i * 1.37,
            signature=signature(anchor.pk, [p.pk for p in items]),
            evidence={"orders_with_all": 400 - 9 * i, "lift": 12.5 - i / 4,
                      "model_score": 0.9 - i / 100,
                      "explanation": f"bought together in {400 - 9 * i} orders"})
        BundleItem.objects.bulk_create(BundleItem(bundle=bundle, product=p, position=n)
                                       for n, p in enumerate(items, start=1))
    User.objects.create_superuser("owner", "owner@example.com", "correct horse")
    folder = Path(os.environ.get("SHOP_RECS_SCREENSHOTS") or "")
    return products, run, folder


def test_admin_fits_1280px_and_reads_well(live_server, browser_page, populated, tmp_path):
    _, run, folder = populated
    folder = folder if str(folder) not in ("", ".") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(live_server.url + reverse("admin:login"))
    page.fill("#id_username", "owner")
    page.fill("#id_password", "correct horse")
    page.click('input[type="submit"]')

    page.goto(live_server.url + reverse("admin:shop_recs_bundle_changelist"))
    page.screenshot(path=str(folder / "bundle_changelist_1280.png"), full_page=True)
    box = page.locator("#changelist .results")
    overflow = box.evaluate("el => el.scrollWidth - el.clientWidth")
    assert overflow <= 1, f"the results table is {overflow}px wider than its box"
    for column in ("score_display", "provenance", "status_display"):  # on screen, not cut off
        header = page.locator(f"th.column-{column}").bounding_box()
        assert header["x"] + header["width"] <= 1280
    widths = page.locator(".field-bundle_products .shop-recs-name").evaluate_all(
        "nodes => nodes.map(n => n.getBoundingClientRect().width)")
    assert min(widths) >= 120  # names are not squeezed into a narrow column
    tiles = page.locator(".field-bundle_products .shop-recs-thumb--none").evaluate_all(
        "nodes => nodes.map(n => [n.textContent.trim(), n.getBoundingClientRect().width])")
    assert tiles and all(text and width > 0 for text, width in tiles)
    scores = page.locator("td.field-score_display").all_inner_texts()
    assert scores[0] == "66.21" and all(len(s.split(".")[-1]) == 2 for s in scores)
    assert "£1.63" in page.locator("#result_list").inner_text()

    page.goto(live_server.url + reverse("admin:shop_recs_bundle_review_next"))
    page.screenshot(path=str(folder / "review_1280.png"), full_page=True)
    text = page.locator("#content-main").inner_text()
    # The best seller comes first: the last product sold most (quantity 1 + i % 7, dearer).
    assert "high-impact products left" in text and "30 products with proposals" in text
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280

    page.goto(live_server.url + reverse("admin:shop_recs_trainingrun_change", args=[run.pk]))
    page.screenshot(path=str(folder / "run_1280.png"), full_page=True)
    headers = page.locator("table.shop-recs-metrics thead th").all_inner_texts()
    assert "Anchor NDCG@10" in headers and "ANCHOR_NDCG10" not in headers
    assert "tuned setting" in headers
    axes = page.locator("svg.shop-recs-chart text").evaluate_all(
        "nodes => nodes.map(n => n.textContent)")
    assert "validation NDCG@10" in axes and "training loss" in axes and "epoch" in axes
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
