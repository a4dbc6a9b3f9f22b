"""Headless Chromium against the demo's product page and cart: the widget's layout at 1280 and
375 px, live totals, "Add all" with and without JavaScript, the bundle offer (honoured by the
cart), the cart's "Complete your order" cards, and an axe-core accessibility check.

Set ``SHOP_RECS_SCREENSHOTS=/some/folder`` to also save full-page screenshots.
"""

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.test import override_settings

from shop_recs.models import Interaction, Product
from tests.serving_data import serving_shop

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parent.parent
# axe-core from npm: `make test` installs it into var/npm (see the Makefile's browser-tools).
AXE_PATHS = [os.environ.get("SHOP_RECS_AXE_JS", ""),
             str(ROOT / "var/npm/node_modules/axe-core/axe.min.js"),
             "/usr/lib/node_modules/axe-core/axe.min.js",
             "/usr/local/lib/node_modules/axe-core/axe.min.js"]
NAMES = {  # Online Retail's own names, long and in capitals, as the demo shows them
    0: "WHITE HANGING HEART T-LIGHT HOLDER", 1: "RED HANGING HEART T-LIGHT HOLDER",
    2: "HEART OF WICKER SMALL", 3: "WHITE METAL LANTERN", 9: "SET OF 3 HEART COOKIE CUTTERS",
    10: "NATURAL SLATE HEART CHALKBOARD", 11: "JUMBO BAG RED RETROSPOT",
}

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian's chromium"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def browser():
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def shop():
    cache.clear()
    p, run, bundle = serving_shop()
    for i, name in NAMES.items():
        Product.objects.filter(pk=p[i].pk).update(name=name)
    return p, run, bundle


def open_page(browser, url, width=1280, javascript=True):
    context = browser.new_context(viewport={"width": width, "height": 900},
                                  java_script_enabled=javascript)
    page = context.new_page()
    page.goto(url)
    return page


def screenshot(page, name):
    folder = os.environ.get("SHOP_RECS_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def boxes(page, selector):
    return page.eval_on_selector_all(selector, """els => els.map(e => {
        const r = e.getBoundingClientRect();
        return {x: r.x, y: r.y, w: r.width, h: r.height};
    })""")


def cart_products(page):
    return {int(href.strip("/").split("/")[-1]) for href in page.eval_on_selector_all(
        "table.cart th a", "els => els.map(e => e.getAttribute('href'))")}


def check_out(page, live_server):
    page.goto(f"{live_server.url}/checkout/")
    page.locator("form.checkout-form button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}/checkout/done/")
    return set(Interaction.objects.filter(kind="purchase")
               .values_list("widget", "bundle_ref", "run_ref"))


@pytest.mark.parametrize("width", [1280, 375])
def test_layout_side_by_side_or_stacked(live_server, browser, shop, width):
    p, _run, _bundle = shop
    page = open_page(browser, f"{live_server.url}/products/{p[0].pk}/", width)
    for row in (".shop-recs-offer", ".shop-recs-choices"):
        items = boxes(page, f"{row} .shop-recs-row__item")
        assert len(items) >= 3, row
        for a, b in zip(items, items[1:]):
            if width == 1280:  # side by side: one line, left to right, no overlap
                assert abs(a["y"] - b["y"]) < 1 and b["x"] >= a["x"] + a["w"]
            else:  # stacked: one under the other
                assert b["y"] >= a["y"] + a["h"]
        # The "+" between neighbours, and a thumbnail (image or initials tile) per product.
        assert page.locator(f"{row} .shop-recs-plus").count() == len(items) - 1
        thumbs = boxes(page, f"{row} .shop-recs-thumb")
        assert len(thumbs) == len(items) and all(t["w"] >= 64 and t["h"] >= 64 for t in thumbs)
        tiles = page.locator(f"{row} .shop-recs-thumb__placeholder")
        assert tiles.count() == len(items) and tiles.first.inner_text() == "WH"
        summary = boxes(page, f"{row} .shop-recs-summary")[0]
        if width == 1280:  # the total and the button beside the products
            assert summary["x"] >= items[-1]["x"] + items[-1]["w"]
        else:
            assert summary["y"] >= items[-1]["y"] + items[-1]["h"]
    # The widget is styled (its own stylesheet) and nothing is wider than the window.
    assert page.eval_on_selector(".shop-recs-fbt", "e => getComputedStyle(e).borderTopStyle") \
        == "solid"
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    screenshot(page, f"product-{width}")


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_add_all_puts_exactly_the_ticked_products_in_the_cart(live_server, browser, shop,
                                                              javascript):
    p, run, _bundle = shop
    page = open_page(browser, f"{live_server.url}/products/{p[0].pk}/", javascript=javascript)
    choices = page.locator(".shop-recs-choices")
    total = choices.locator("[data-shop-recs-total]")
    button = choices.locator("button[type=submit]")
    assert total.inner_text() == "£16.00"  # 2.50 + 3.50 + 4.50 + 5.50
    assert button.inner_text() == "Add all four to cart"
    choices.get_by_label("HEART OF WICKER SMALL").uncheck()
    if javascript:
        assert total.inner_text() == "£11.50" and button.inner_text() == "Add selected to cart"
    else:  # the server's figure stays; the form still posts only what is ticked
        assert total.inner_text() == "£16.00"
    button.click()
    page.wait_for_url(f"{live_server.url}/cart/")
    assert cart_products(page) == {p[0].pk, p[1].pk, p[3].pk}
    assert page.locator(".cart-count").inner_text() == "3"
    assert check_out(page, live_server) == {("fbt", None, run.pk)}


def test_a_widget_deferred_on_a_miss_appears_and_adds_to_the_cart(live_server, browser, shop):
    p, run, _bundle = shop
    with override_settings(SHOP_RECS={**django_settings.SHOP_RECS, "WIDGET_ON_MISS": "defer"}):
        page = open_page(browser, f"{live_server.url}/products/{p[0].pk}/")
        widget = page.locator('section[data-shop-recs-widget="fbt"]')
        widget.wait_for()
        assert page.locator("[data-shop-recs-defer]").count() == 0
        assert page.locator(".shop-recs-deferred").count() == 0  # replaced, not filled
        # The fragment cached the answer: the next view has it inline, also without JS.
        other = open_page(browser, f"{live_server.url}/products/{p[0].pk}/", javascript=False)
        assert other.locator('section[data-shop-recs-widget="fbt"]').count() == 1
        assert other.locator("[data-shop-recs-defer]").count() == 0
        choices = widget.locator(".shop-recs-choices")
        total = choices.locator("[data-shop-recs-total]")
        assert total.inner_text() == "£16.00"
        choices.get_by_label("HEART OF WICKER SMALL").uncheck()
        assert total.inner_text() == "£11.50"  # widget.js bound the inserted widget
        choices.locator("button[type=submit]").click()
        page.wait_for_url(f"{live_server.url}/cart/")
        assert cart_products(page) == {p[0].pk, p[1].pk, p[3].pk}
        assert check_out(page, live_server) == {("fbt", None, run.pk)}


def test_bundle_offer_shows_the_discount_and_adds_the_bundle(live_server, browser, shop):
    p, run, bundle = shop
    page = open_page(browser, f"{live_server.url}/products/{p[0].pk}/")
    widget = page.locator('section[data-shop-recs-widget="fbt"]')
    assert widget.get_attribute("data-bundle-id") == str(bundle.pk)
    offer = widget.locator(".shop-recs-offer")
    assert offer.get_by_role("heading").inner_text() == "Bundle offer: save 10%"
    assert offer.locator("[data-shop-recs-bundle-price]").inner_text() == "£23.85"
    assert offer.locator(".shop-recs-was").is_visible()
    assert "£26.50" in offer.locator(".shop-recs-was").inner_text()
    assert offer.locator("[data-shop-recs-discount]").inner_text().startswith("You save £2.65")
    offer.get_by_role("button", name="Add the bundle to cart").click()
    page.wait_for_url(f"{live_server.url}/cart/")
    assert cart_products(page) == {p[0].pk, p[9].pk, p[10].pk}
    # The cart honours the offer: the same saving and price as the widget showed.
    assert page.locator(".cart__saving td.num").inner_text() == "−£2.65"
    assert page.locator(".cart__total").inner_text() == "£23.85"
    assert check_out(page, live_server) == {("fbt", bundle.pk, run.pk)}
    # The beacon recorded the impression with the same attribution.
    impressions = Interaction.objects.filter(kind="widget_impression")
    assert impressions.exists() and impressions.first().run_ref == run.pk


def test_cart_completion_cards_add_one_product(live_server, browser, shop):
    p, _run, _bundle = shop
    page = open_page(browser, f"{live_server.url}/products/{p[0].pk}/")
    page.locator(".add-to-cart button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}/cart/")
    cards = page.locator(".shop-recs-cart .shop-recs-card")
    assert cards.count() >= 3
    card_boxes = boxes(page, ".shop-recs-cart .shop-recs-card")
    assert card_boxes[1]["y"] == card_boxes[0]["y"]  # compact cards side by side at 1280 px
    first = cards.first
    button = first.locator("button[type=submit]")
    assert button.bounding_box()["height"] < 40  # a small button, not a full-width one
    name = first.locator(".shop-recs-card__name").inner_text()
    assert first.locator(".shop-recs-thumb").is_visible()
    assert button.get_attribute("class") == "shop-recs-button shop-recs-button--small"
    screenshot(page, "cart-1280")
    first.get_by_role("button", name=f"Add {name} to cart").click()
    page.wait_for_url(f"{live_server.url}/cart/")
    assert page.locator(".cart-count").inner_text() == "2"
    assert page.locator("table.cart th a", has_text=name).count() == 1
    # On a phone: the cards stack, and neither they nor the cart table widen the page.
    page.set_viewport_size({"width": 375, "height": 900})
    card_boxes = boxes(page, ".shop-recs-cart .shop-recs-card")
    assert card_boxes[1]["y"] >= card_boxes[0]["y"] + card_boxes[0]["h"]
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page, "cart-375")


def axe_script():
    return next((path for path in AXE_PATHS if path and Path(path).is_file()), None)


@pytest.mark.skipif(axe_script() is None,
                    reason="axe-core not installed (make test installs it: npm install "
                           "--prefix var/npm axe-core)")
@pytest.mark.parametrize("where, width", [("product", 1280), ("product", 375), ("cart", 1280),
                                         ("dark", 1280)])
def test_axe_finds_no_serious_violation(live_server, browser, shop, where, width):
    p, _run, _bundle = shop
    page = open_page(browser, f"{live_server.url}/products/{p[0].pk}/", width)
    background = "e => getComputedStyle(e).backgroundColor"
    if where == "dark":
        # A visitor who prefers dark: the demo page does not declare dark support, so the
        # widget stays light; once the page declares it, the widget's dark palette applies.
        page.emulate_media(color_scheme="dark")
        assert page.eval_on_selector(".shop-recs", background) == "rgb(255, 255, 255)"
        page.evaluate("""() => { const m = document.createElement("meta");
            m.name = "color-scheme"; m.content = "light dark"; document.head.append(m); }""")
        assert page.eval_on_selector(".shop-recs", background) == "rgb(27, 33, 40)"
    if where == "cart":
        page.locator(".add-to-cart button[type=submit]").click()
        page.wait_for_url(f"{live_server.url}/cart/")
        assert page.locator(".shop-recs-cart").count() == 1
    page.add_script_tag(path=axe_script())
    violations = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return result.violations.map(v => ({id: v.id, impact: v.impact,
            nodes: v.nodes.map(n => n.target.join(" ")).slice(0, 5)}));
    }""")
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert serious == [], serious
    screenshot(page, f"axe-{where}-{width}")
