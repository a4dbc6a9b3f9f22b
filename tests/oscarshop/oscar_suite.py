"""shop_recs in a real django-oscar 4.2 shop (Oscar's migrations, templates and views).

Run in its own process by tests/test_oscar.py (``--ds=tests.oscarshop.settings``; the
file name does not match ``test_*.py`` so that the main suite, whose product model is
shop_recs' own, never collects it). One Oscar catalogue is built from a slice of the real
UCI Online Retail file, the file's orders are imported into it, a short training run
publishes, and one bundle is approved with a discount; the tests then walk the shop.
"""

import os
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from django.contrib.auth.models import Permission, User
from django.core import checks
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from oscar.core.loading import get_class, get_model

from shop_demo.datasets import DatasetError, fetch_online_retail
from shop_recs import pipeline, review
from shop_recs.attribution import make_token
from shop_recs.models import Bundle, Interaction, Recommendation, TrainingRun
from shop_recs.runs import request_training
from tests.readme_snippets import snippet

Product = get_model("catalogue", "Product")
ProductClass = get_model("catalogue", "ProductClass")
StockRecord = get_model("partner", "StockRecord")
Partner = get_model("partner", "Partner")
ConditionalOffer = get_model("offer", "ConditionalOffer")
Country = get_model("address", "Country")
create_from_breadcrumbs = get_class("catalogue.categories", "create_from_breadcrumbs")
ProductCategory = get_model("catalogue", "ProductCategory")

SLICE_LINES = 20_000  # the first three weeks of December 2010
CATALOGUE_SIZE = 150  # the shop sells the file's 150 most ordered products
ADD_ALL = "shop_recs_oscar:basket-add-all"
# SHOP_RECS_SCREENSHOTS=folder: the browser test saves its screenshots there.
SCREENSHOTS = Path(os.environ["SHOP_RECS_SCREENSHOTS"]) if os.environ.get(
    "SHOP_RECS_SCREENSHOTS") else None


def online_retail_slice(tmp_path):
    try:
        paths = fetch_online_retail(download_if_missing=False)
    except DatasetError:
        pytest.skip("the UCI Online Retail files are not in ../shared/data")
    path = next(p for p in paths if "2010-12_2011-12" in p.name)
    frame = pd.read_csv(path, nrows=SLICE_LINES, dtype=str)
    out = tmp_path / "online_retail_slice.csv"
    frame.to_csv(out, index=False)
    return out, frame


def build_catalogue(frame):
    """An Oscar catalogue of the slice's most ordered products, built with Oscar's models."""
    sold = frame[~frame["InvoiceNo"].str.startswith("C") & frame["StockCode"].str[0].str.isdigit()]
    top = sold.groupby("StockCode")["InvoiceNo"].nunique().nlargest(CATALOGUE_SIZE).index
    newest = sold.drop_duplicates("StockCode", keep="last").set_index("StockCode")
    goods = ProductClass.objects.create(name="Gifts", track_stock=True)
    partner = Partner.objects.create(name="Warehouse")
    home, gifts = create_from_breadcrumbs("Home"), create_from_breadcrumbs("Gifts")
    for position, code in enumerate(top):
        row = newest.loc[code]
        product = Product.objects.create(
            upc=code, title=row["Description"].strip().title(), product_class=goods,
            structure="standalone", is_public=True)
        ProductCategory.objects.create(product=product, category=home if position % 2 else gifts)
        StockRecord.objects.create(product=product, partner=partner, partner_sku=code,
                                   price_currency="GBP", price=Decimal(row["UnitPrice"]),
                                   num_in_stock=1000)
    return list(top)


@pytest.fixture(scope="session")
def shop(django_db_setup, django_db_blocker, tmp_path_factory):
    """The shop every test walks (committed once; tests roll their own changes back)."""
    tmp = tmp_path_factory.mktemp("oscar")
    with django_db_blocker.unblock():
        path, frame = online_retail_slice(tmp)
        codes = build_catalogue(frame)
        names = dict(Product.objects.values_list("upc", "title"))
        out = tmp / "import.txt"
        with out.open("w") as fh:
            call_command("shop_recs_import_orders", str(path), "--format", "online_retail",
                         stdout=fh, stderr=fh)
        run = request_training(trigger="test", config={"time_budget_s": 2, "epochs": 2,
                                                       "device": "cpu"},
                               broker_check=False, enqueue=False)
        status = pipeline.run_training(run.pk)
        run.refresh_from_db()
        staff = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
        staff.user_permissions.add(*Permission.objects.filter(
            content_type__app_label="shop_recs"))
        Country.objects.create(iso_3166_1_a2="GB", iso_3166_1_a3="GBR", iso_3166_1_numeric="826",
                               printable_name="United Kingdom", name="United Kingdom",
                               is_shipping_country=True)
        bundle = (Bundle.objects.filter(run=run, status=Bundle.Status.PROPOSED)
                  .order_by("-score").first())
        if bundle is not None:
            review.decide([bundle], review.APPROVE, staff)
            Bundle.objects.filter(pk=bundle.pk).update(discount_percent=Decimal("10"))
            bundle.refresh_from_db()
        return {"codes": codes, "names": names, "import": out.read_text(), "run": run,
                "status": status, "bundle": bundle, "staff": staff, "frame": frame}


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


def bundle_products(bundle):
    return [bundle.anchor, *(item.product for item in bundle.items.order_by("position"))]


def widget_html(response):
    match = re.search(r'<section class="[^"]*\bshop-recs-fbt\b[^"]*".*?</section>',
                      response.content.decode(), re.S)
    return match.group(0) if match else ""


# --- set-up ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_checks_pass_and_the_readme_snippets_are_what_the_shop_runs(shop, settings):
    messages = [m for m in checks.run_checks(include_deployment_checks=False)
                if m.id.startswith("shop_recs") and not m.is_silenced()]
    assert messages == []
    assert settings.SHOP_RECS["CART_URL_NAME"] == ADD_ALL
    template = settings.TEMPLATES[0]["DIRS"][0] / "oscar" / "catalogue" / "detail.html"
    assert template.read_text() == snippet("oscar-detail-template")
    offer = ConditionalOffer.objects.get(slug="shop-recs-bundles")
    assert offer.is_available() and offer.offer_type == "Site"


def test_basket_add_is_flagged_as_a_cart_url(settings):
    from shop_recs.checks import check_cart_url

    settings.SHOP_RECS = {**settings.SHOP_RECS, "CART_URL_NAME": "basket:add"}
    (warning,) = check_cart_url()
    assert warning.id == "shop_recs.W010" and ADD_ALL in warning.hint


# --- import ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_import_left_the_catalogue_alone_and_counted_what_it_skipped(shop):
    assert Product.objects.count() == CATALOGUE_SIZE
    assert dict(Product.objects.values_list("upc", "title")) == shop["names"]
    assert "Products: 0 created, 0 updated." in shop["import"]
    assert re.search(r"[\d,]+ product codes are not in the catalogue", shop["import"])
    bought = Interaction.objects.purchases()
    assert bought.count() > 5_000 and bought.values("product").distinct().count() == \
        CATALOGUE_SIZE


@pytest.mark.django_db
def test_search_and_product_pages_answer_after_imports(shop, client, tmp_path):
    path = tmp_path / "more.csv"
    shop["frame"].head(3000).to_csv(path, index=False)
    call_command("shop_recs_import_orders", str(path), "--format", "online_retail",
                 "--create-products", stdout=open("/dev/null", "w"))
    hidden = Product.objects.filter(product_class__name="Imported from past orders")
    assert hidden.exists() and not hidden.filter(is_public=True).exists()
    assert all(p.slug for p in hidden)
    for url in ("/catalogue/", "/search/?q=heart", "/search/?q=bag",
                *(p.get_absolute_url() for p in Product.objects.filter(is_public=True)[:20])):
        assert client.get(url).status_code == 200, url
    admin = client.__class__()
    admin.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    assert admin.get(f"/dashboard/catalogue/products/{hidden.first().pk}/").status_code == 200


# --- training, widget, API ---------------------------------------------------------------

@pytest.mark.django_db
def test_a_short_run_published_lists_for_the_oscar_catalogue(shop):
    run = shop["run"]
    assert shop["status"] == TrainingRun.Status.SUCCEEDED, run.error
    assert run.is_active and Recommendation.objects.filter(run=run).exists()
    assert shop["bundle"] is not None, "the run proposed no bundle"


@pytest.mark.django_db
def test_product_page_shows_the_widget_with_strategy_prices(shop, client):
    anchor = shop["bundle"].anchor
    response = client.get(anchor.get_absolute_url())
    assert response.status_code == 200
    html = widget_html(response)
    assert html, "no widget on the product page"
    assert f'action="{reverse(ADD_ALL)}"' in html
    items = Recommendation.objects.filter(run=shop["run"], product=anchor).order_by("rank")
    shown = [p for p in (i.recommended for i in items[:10]) if f'value="{p.pk}"' in html]
    assert shown, "none of the published complements is in the widget"
    price = StockRecord.objects.get(product=shown[0]).price
    assert f"£{price}" in html
    assert 'class="shop-recs-oscar"' in response.content.decode()
    assert "shop_recs/oscar/oscar.css" in response.content.decode()


@pytest.mark.django_db
def test_fbt_api_and_schema_answer(shop, client):
    anchor = shop["bundle"].anchor
    response = client.get(reverse("shop_recs:api-fbt", args=[anchor.pk]))
    assert response.status_code == 200
    items = response.json()["items"]
    assert items and all(i["product"]["currency"] == "GBP" and i["product"]["in_stock"]
                         for i in items)
    assert items[0]["product"]["url"].startswith("/catalogue/")
    schema = client.get("/api/shop-recs/v1/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200 and "paths" in schema.json()


@pytest.mark.django_db
def test_a_new_product_and_its_first_stock_record_queue_its_list(shop, monkeypatch):
    """Oscar creates a product, then its stock: one task per commit, and the stock record
    alone (a product made sellable later) asks again."""
    from celery import current_app
    from django.db import transaction
    from django.test import TestCase

    from shop_recs import newproducts

    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, *a, **kw: sent.append(name))
    connection = transaction.get_connection()

    def commit(make):
        newproducts.task_started()  # as if the previous task had started
        start = len(connection.run_on_commit)
        with TestCase.captureOnCommitCallbacks(execute=True):
            result = make()
        del connection.run_on_commit[start:]  # committed
        return result

    product = commit(lambda: Product.objects.create(
        upc="NEW-1", title="Enamel Teapot", product_class=ProductClass.objects.first(),
        structure="standalone", is_public=True))
    assert sent == [newproducts.TASK_NAME]
    commit(lambda: StockRecord.objects.create(
        product=product, partner=Partner.objects.first(), partner_sku="NEW-1",
        price_currency="GBP", price=Decimal("3.00"), num_in_stock=5))
    assert sent == [newproducts.TASK_NAME] * 2


@pytest.mark.django_db
def test_stock_set_to_zero_leaves_the_widget_on_the_next_request(shop, client):
    anchor = shop["bundle"].anchor
    first = client.get(anchor.get_absolute_url())
    pks = re.findall(r'data-product-id="(\d+)"', widget_html(first))
    assert pks
    record = StockRecord.objects.get(product_id=pks[0])
    record.num_in_stock = 0
    record.save()
    again = widget_html(client.get(anchor.get_absolute_url()))
    assert f'data-product-id="{pks[0]}"' not in again
    api = client.get(reverse("shop_recs:api-fbt", args=[anchor.pk])).json()
    assert int(pks[0]) not in [i["product"]["id"] for i in api["items"]]


@pytest.mark.django_db
def test_a_cold_answer_loads_oscars_related_rows_once_not_per_item(shop, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    anchor = shop["bundle"].anchor
    url = reverse("shop_recs:api-fbt", args=[anchor.pk])
    counts = {}
    for limit in (2, 6):
        cache.clear()
        with CaptureQueriesContext(connection) as queries:
            items = client.get(url, {"limit": limit}).json()["items"]
        assert len(items) == limit
        assert all(i["product"]["in_stock"] and i["product"]["category"] for i in items)
        counts[limit] = len(queries)
    # The answer's queries plus one per related table (stock records, images, categories,
    # product class), whatever the number of items: four items more, no query more.
    assert counts[6] == counts[2] <= 8, counts


# --- basket and checkout --------------------------------------------------------------------

def add_all(client, products, bundle=None, run=None, referer="/catalogue/"):
    data = {"product": [p.pk for p in products], "widget": "fbt",
            "attribution": make_token("fbt", bundle, run)}
    return client.post(reverse(ADD_ALL), data, HTTP_REFERER=referer)


@pytest.mark.django_db
def test_add_all_fills_oscars_basket_and_the_bundle_discount_applies(shop, client):
    bundle = shop["bundle"]
    products = bundle_products(bundle)
    referer = products[0].get_absolute_url()
    response = add_all(client, products, bundle.pk, shop["run"].pk, referer=referer)
    assert response.status_code == 302 and response["Location"] == referer
    basket = client.get(reverse("basket:summary"))
    lines = basket.context["basket"].all_lines()
    assert sorted(line.product_id for line in lines) == sorted(p.pk for p in products)
    expected = sum((StockRecord.objects.get(product=p).price * Decimal("0.10")
                    ).quantize(Decimal("0.01"), "ROUND_DOWN") for p in products)
    assert basket.context["basket"].total_discount == expected > 0
    assert "Bundles bought together (shop_recs)" in basket.content.decode()
    adds = Interaction.objects.filter(kind=Interaction.Kind.CART_ADD, bundle_ref=bundle.pk)
    assert adds.count() == len(products)


@pytest.mark.django_db
def test_add_all_respects_oscars_basket_rules(shop, client):
    bundle = shop["bundle"]
    products = bundle_products(bundle)
    StockRecord.objects.filter(product=products[1]).update(num_in_stock=0)
    response = add_all(client, products)
    assert response.status_code == 302
    lines = client.get(reverse("basket:summary")).context["basket"].all_lines()
    assert sorted(line.product_id for line in lines) == sorted(p.pk for p in products
                                                               if p != products[1])
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("could not be added" in m and products[1].get_title() in m for m in messages)
    # Nonsense is refused with a message, not an error page.
    for data in ({}, {"product": ["x"]}, {"product": [str(i) for i in range(1, 30)]}):
        assert client.post(reverse(ADD_ALL), data).status_code == 302
    assert client.get(reverse(ADD_ALL)).status_code == 405
    # next= on another host is not followed.
    evil = client.post(reverse(ADD_ALL), {"product": [products[0].pk],
                                          "next": "https://evil.example/"})
    assert "evil" not in evil["Location"]


@pytest.mark.django_db
def test_checkout_keeps_the_bundle_discount_and_records_the_order(shop, client):
    bundle = shop["bundle"]
    products = bundle_products(bundle)
    client.force_login(shop["staff"])
    add_all(client, products, bundle.pk, shop["run"].pk)
    response = client.post(reverse("checkout:shipping-address"), {
        "first_name": "Ada", "last_name": "Lovelace", "line1": "1 Analytical St",
        "line4": "London", "postcode": "N1 9GU", "country": "GB"})
    assert response.status_code == 302, response.content[-2000:]
    client.get(reverse("checkout:shipping-method"))
    client.get(reverse("checkout:payment-method"))
    preview = client.get(reverse("checkout:preview"))
    assert preview.status_code == 200
    placed = client.post(reverse("checkout:preview"), {"action": "place_order"})
    assert placed.status_code == 302 and reverse("checkout:thank-you") in placed["Location"]
    order = get_model("order", "Order").objects.get(user=shop["staff"])
    discount = order.discounts.get()
    assert discount.offer_id == ConditionalOffer.objects.get(slug="shop-recs-bundles").pk
    assert discount.amount > 0 and order.total_discount_incl_tax == discount.amount
    bought = Interaction.objects.purchases().filter(order_id=order.number)
    assert sorted(bought.values_list("product_id", flat=True)) == sorted(p.pk for p in products)
    assert set(bought.values_list("bundle_ref", flat=True)) == {bundle.pk}
    paid = {i.product_id: i.unit_price for i in bought}
    line = order.lines.get(product=products[0])
    assert paid[products[0].pk] == line.line_price_incl_tax / line.quantity


# --- dashboard --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_dashboard_links_to_the_bundle_review(shop, client):
    client.force_login(shop["staff"])
    response = client.get("/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert reverse("admin:shop_recs_bundle_review_next") in html and "Bundle review" in html
    assert client.get(reverse("admin:shop_recs_bundle_review_next")).status_code in (200, 302)


# --- headless Chromium (last: its transactional database is emptied afterwards) -----------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def page():
    if not shutil.which(CHROMIUM):
        pytest.skip("needs Debian's chromium")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_browser_product_page_add_all_basket_with_discount(shop, live_server, page):
    bundle = shop["bundle"]
    products = bundle_products(bundle)
    page.goto(f"{live_server.url}{products[0].get_absolute_url()}")
    widget = page.locator('section[data-shop-recs-widget="fbt"]')
    assert widget.get_attribute("data-bundle-id") == str(bundle.pk)
    # Bootstrap 4 has no .visually-hidden: the app's stylesheet hides the legend.
    legend = widget.locator("legend").bounding_box()
    assert legend is None or legend["width"] <= 1
    # The approved bundle is its own offer: one form posting every product of the bundle.
    offer = widget.locator(f'[data-offer-bundle-id="{bundle.pk}"]')
    posted = [el.get_attribute("value") for el in offer.locator("input[name=product]").all()]
    assert {str(p.pk) for p in products} <= set(posted)
    if SCREENSHOTS:
        page.screenshot(path=str(SCREENSHOTS / "oscar_product_page.png"), full_page=True)
    offer.locator("button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}{products[0].get_absolute_url()}")
    assert "added to your basket" in page.locator(".alert-success").first.inner_text()
    page.goto(f"{live_server.url}{reverse('basket:summary')}")
    body = page.locator("body").inner_text()
    assert "Bundles bought together (shop_recs)" in body
    for product in products:
        assert page.locator(f'a[href="{product.get_absolute_url()}"]').count() >= 1
    if SCREENSHOTS:
        page.screenshot(path=str(SCREENSHOTS / "oscar_basket.png"), full_page=True)
