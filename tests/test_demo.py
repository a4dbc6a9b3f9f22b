"""The demo storefront: catalogue, product page, session cart, checkout, escaping."""

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from shop_demo import views
from shop_demo.cart import MAX_QUANTITY, SESSION_KEY
from shop_recs.models import Interaction, Product

pytestmark = pytest.mark.django_db

CART_URL = reverse("shop_demo:cart")
ADD_URL = reverse("shop_demo:cart_add")
CHECKOUT_URL = reverse("shop_demo:checkout")


def make_product(sku, name=None, price="2.55", **fields):
    return Product.objects.create(
        sku=sku, name=name or f"PRODUCT {sku}", price=Decimal(price), currency="GBP", **fields
    )


def product_url(product):
    return reverse("shop_demo:product", args=[product.pk])


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def cart_of(client):
    return client.session.get(SESSION_KEY, {})


@pytest.fixture
def heart():
    return make_product("85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "2.55")


@pytest.fixture
def lantern():
    return make_product("71053", "WHITE METAL LANTERN", "3.39")


@pytest.fixture
def catalogue():
    """30 active products (2 pages), one inactive one."""
    products = [make_product(f"SKU{i:03d}", f"MUG NUMBER {i:03d}") for i in range(30)]
    make_product("GONE1", "MUG THAT IS GONE", is_active=False)
    return products


# Product list ----------------------------------------------------------------------

def test_list_shows_first_page_of_active_products(client, catalogue):
    response = client.get(reverse("shop_demo:product_list"))
    assert response.status_code == 200
    page = response.context["page_obj"]
    assert page.number == 1
    assert len(page.object_list) == views.PAGE_SIZE == 24
    assert page.paginator.count == 30
    assert "MUG THAT IS GONE" not in response.content.decode()
    assert "£2.55" in response.content.decode()


def test_list_second_page_holds_the_rest(client, catalogue):
    response = client.get(reverse("shop_demo:product_list"), {"page": 2})
    assert [p.sku for p in response.context["page_obj"]] == [f"SKU{i:03d}" for i in range(24, 30)]


@pytest.mark.parametrize("page, expected", [("abc", 1), ("0", 2), ("999", 2), ("", 1),
                                            ("-1", 2), ("1.5", 1)])
def test_list_survives_bad_page_numbers(client, catalogue, page, expected):
    response = client.get(reverse("shop_demo:product_list"), {"page": page})
    assert response.status_code == 200
    assert response.context["page_obj"].number == expected


def test_search_matches_name_and_sku_case_insensitively(client, heart, lantern):
    make_product("22423", "REGENCY CAKESTAND 3 TIER")
    by_name = client.get(reverse("shop_demo:product_list"), {"q": "hanging heart"})
    assert [p.pk for p in by_name.context["products"]] == [heart.pk]
    by_sku = client.get(reverse("shop_demo:product_list"), {"q": "71053"})
    assert [p.pk for p in by_sku.context["products"]] == [lantern.pk]
    both = client.get(reverse("shop_demo:product_list"), {"q": " white "})
    assert {p.pk for p in both.context["products"]} == {heart.pk, lantern.pk}


def test_search_without_results_says_so(client, heart):
    response = client.get(reverse("shop_demo:product_list"), {"q": "nothing like this"})
    assert response.status_code == 200
    assert not response.context["products"]
    assert "No products match your search." in response.content.decode()


def test_search_does_not_find_inactive_products(client):
    make_product("X1", "RETIRED TEAPOT", is_active=False)
    response = client.get(reverse("shop_demo:product_list"), {"q": "teapot"})
    assert not response.context["products"]


def test_pagination_links_keep_the_search(client):
    for i in range(30):
        make_product(f"C{i:02d}", f"CANDLE {i:02d}")
    response = client.get(reverse("shop_demo:product_list"), {"q": "candle"})
    assert "?q=candle&amp;page=2" in response.content.decode()


def test_category_filter(client, heart, lantern):
    Product.objects.filter(pk=heart.pk).update(category="Lighting")
    Product.objects.filter(pk=lantern.pk).update(category="Garden")
    response = client.get(reverse("shop_demo:product_list"), {"category": "Garden"})
    assert response.context["categories"] == ["Garden", "Lighting"]
    assert [p.pk for p in response.context["products"]] == [lantern.pk]
    unknown = client.get(reverse("shop_demo:product_list"), {"category": "Nope"})
    assert len(unknown.context["products"]) == 2


def test_category_filter_hidden_without_categories(client, heart):
    response = client.get(reverse("shop_demo:product_list"))
    assert 'name="category"' not in response.content.decode()


def test_list_query_count_does_not_grow_with_the_page(client, catalogue,
                                                      django_assert_max_num_queries):
    # Categories, popularity (counted once, then cached), keys and names, the page.
    with django_assert_max_num_queries(4):
        response = client.get(reverse("shop_demo:product_list"))
    assert len(response.context["products"]) == 24
    with django_assert_max_num_queries(3):
        client.get(reverse("shop_demo:product_list"), {"page": 2})
    with django_assert_max_num_queries(3):  # by name: count, page, categories
        response = client.get(reverse("shop_demo:product_list"), {"sort": "name"})
    assert len(response.context["products"]) == 24


def buy(product, times):
    Interaction.objects.bulk_create([
        Interaction(product=product, kind=Interaction.Kind.PURCHASE, order_id=f"o{i}",
                    timestamp="2011-01-01T10:00Z", visitor_id=f"v{i}") for i in range(times)])


def test_catalogue_lists_the_most_bought_products_first(client):
    a, b, c, d = (make_product(f"S{i}", name) for i, name in
                  enumerate(["ALPHA MUG", "BETA MUG", "GAMMA MUG", "DELTA MUG"]))
    buy(c, 5)
    buy(a, 2)
    Interaction.objects.create(product=d, kind=Interaction.Kind.VIEW,
                               timestamp="2011-01-01T10:00Z")  # a view is not a sale
    response = client.get(reverse("shop_demo:product_list"))
    assert [p.name for p in response.context["products"]] == [
        "GAMMA MUG", "ALPHA MUG", "BETA MUG", "DELTA MUG"]
    assert response.context["sort"] == "popular"
    html = response.content.decode()
    assert '<option value="popular" selected>Most popular</option>' in html
    by_name = client.get(reverse("shop_demo:product_list"), {"sort": "name"})
    assert [p.name for p in by_name.context["products"]] == [
        "ALPHA MUG", "BETA MUG", "DELTA MUG", "GAMMA MUG"]
    # An unknown order falls back to the default; search and filters keep working with it.
    odd = client.get(reverse("shop_demo:product_list"), {"sort": "price';--", "q": "a mug"})
    assert odd.status_code == 200 and [p.name for p in odd.context["products"]] == [
        "GAMMA MUG", "ALPHA MUG", "BETA MUG", "DELTA MUG"]


def test_popular_pages_hold_every_product_once(client, catalogue):
    buy(catalogue[29], 3)
    first = client.get(reverse("shop_demo:product_list")).context["products"]
    second = client.get(reverse("shop_demo:product_list"), {"page": 2}).context["products"]
    assert first[0] == catalogue[29]
    assert len(first) == 24 and len(second) == 6
    assert {p.pk for p in [*first, *second]} == {p.pk for p in catalogue}


# Product page ----------------------------------------------------------------------

def test_product_page_shows_the_product(client, heart):
    heart.description = "Lights up a room."
    heart.save()
    response = client.get(product_url(heart))
    assert response.status_code == 200
    html = response.content.decode()
    assert "WHITE HANGING HEART T-LIGHT HOLDER" in html
    assert "85123A" in html
    assert "£2.55" in html
    assert "Lights up a room." in html
    assert "In stock" in html
    assert f'action="{ADD_URL}"' in html
    # The placeholder tile is shop_recs's own, the same as in the widgets.
    assert ('<span class="product-image product-image--large shop-recs-thumb__placeholder '
            'shop-recs-tone-') in html
    assert ">WH</span>" in html
    assert '<link rel="stylesheet" href="/static/shop_recs/widget.css">' in html
    assert "<!-- shop_recs: frequently bought together -->" in html


def test_product_page_records_a_view(client, heart):
    client.get(product_url(heart))
    view = Interaction.objects.get()
    assert view.kind == Interaction.Kind.VIEW
    assert view.product == heart
    assert view.visitor_id and view.visitor_id != client.session.session_key


def test_product_page_view_carries_widget_attribution(client, heart):
    response = client.get(product_url(heart), {"widget": "fbt", "bundle": "4", "run": "2"})
    view = Interaction.objects.get()
    assert (view.widget, view.bundle_ref, view.run_ref) == ("fbt", 4, 2)
    assert '<input type="hidden" name="bundle" value="4">' in response.content.decode()


def test_product_page_ignores_bad_attribution(client, heart):
    response = client.get(product_url(heart), {"bundle": "x"})
    assert response.status_code == 200
    assert Interaction.objects.get().bundle_ref is None


def test_product_page_survives_a_recording_failure(client, heart, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("event store is down")

    monkeypatch.setattr(views, "record_event", broken)
    response = client.get(product_url(heart))
    assert response.status_code == 200
    assert not Interaction.objects.exists()


def test_head_request_records_nothing(client, heart):
    assert client.head(product_url(heart)).status_code == 200
    assert not Interaction.objects.exists()


@pytest.mark.parametrize("pk", [999999, 2**63, 10**30])
def test_unknown_product_is_404(client, pk):
    assert client.get(reverse("shop_demo:product", args=[pk])).status_code == 404


def test_inactive_product_is_404(client):
    product = make_product("OLD", is_active=False)
    assert client.get(product_url(product)).status_code == 404
    assert not Interaction.objects.exists()


def test_out_of_stock_product_cannot_be_added(client):
    product = make_product("OOS", in_stock=False)
    html = client.get(product_url(product)).content.decode()
    assert "Out of stock" in html
    assert f'action="{ADD_URL}"' not in html
    client.post(ADD_URL, {"product": product.pk, "quantity": 1})
    assert cart_of(client) == {}


# Cart ------------------------------------------------------------------------------

def test_add_to_cart(client, heart):
    response = client.post(ADD_URL, {"product": heart.pk, "quantity": 3})
    assert response.status_code == 302
    assert response.url == CART_URL
    assert cart_of(client) == {str(heart.pk): {"quantity": 3}}
    event = Interaction.objects.get()
    assert (event.kind, event.product, event.quantity) == (Interaction.Kind.CART_ADD, heart, 3)
    assert event.unit_price == Decimal("2.55")
    assert event.visitor_id
    assert messages_of(response) == ["Added WHITE HANGING HEART T-LIGHT HOLDER to your cart."]


def test_adding_again_adds_up_and_is_capped(client, heart):
    client.post(ADD_URL, {"product": heart.pk, "quantity": 60})
    client.post(ADD_URL, {"product": heart.pk, "quantity": 60})
    assert cart_of(client)[str(heart.pk)]["quantity"] == MAX_QUANTITY


def test_quantity_defaults_to_one(client, heart):
    client.post(ADD_URL, {"product": heart.pk})
    assert cart_of(client)[str(heart.pk)]["quantity"] == 1


@pytest.mark.parametrize("quantity", ["0", "-2", "100", "abc", "1.5"])
def test_add_to_cart_rejects_bad_quantities(client, heart, quantity):
    response = client.post(ADD_URL, {"product": heart.pk, "quantity": quantity})
    assert response.status_code == 302
    assert cart_of(client) == {}
    assert not Interaction.objects.exists()
    assert messages_of(response)


@pytest.mark.parametrize("product", ["999999", "abc", "", str(2**63), str(-(2**70))])
def test_add_to_cart_rejects_unknown_products(client, product):
    response = client.post(ADD_URL, {"product": product, "quantity": 1})
    assert response.status_code == 302
    assert cart_of(client) == {}
    assert not Interaction.objects.exists()


def test_add_to_cart_rejects_inactive_products(client):
    product = make_product("OLD", is_active=False)
    response = client.post(ADD_URL, {"product": product.pk})
    assert cart_of(client) == {}
    assert messages_of(response) == ["That product is not available."]


def test_add_to_cart_goes_back_to_the_page_on_error(client, heart):
    response = client.post(ADD_URL, {"product": heart.pk, "quantity": 0},
                           HTTP_REFERER=f"http://testserver{product_url(heart)}")
    assert response.url == f"http://testserver{product_url(heart)}"
    evil = client.post(ADD_URL, {"product": heart.pk, "quantity": 0},
                       HTTP_REFERER="https://evil.example/")
    assert evil.url == CART_URL


def test_add_to_cart_needs_post(client, heart):
    assert client.get(ADD_URL, {"product": heart.pk}).status_code == 405


def test_add_to_cart_needs_the_csrf_token(heart):
    client = Client(enforce_csrf_checks=True)
    assert client.post(ADD_URL, {"product": heart.pk}).status_code == 403


def test_add_several_products_with_attribution(client, heart, lantern):
    response = client.post(ADD_URL, {"product": [heart.pk, lantern.pk], "widget": "fbt",
                                     "bundle": "12", "run": "3"})
    assert messages_of(response) == ["Added 2 products to your cart."]
    cart = cart_of(client)
    assert set(cart) == {str(heart.pk), str(lantern.pk)}
    assert cart[str(lantern.pk)] == {"quantity": 1, "widget": "fbt", "bundle": 12, "run": 3}
    events = Interaction.objects.filter(kind=Interaction.Kind.CART_ADD)
    assert {e.product_id for e in events} == {heart.pk, lantern.pk}
    assert {(e.widget, e.bundle_ref, e.run_ref) for e in events} == {("fbt", 12, 3)}


def test_add_several_rejects_all_when_one_is_unknown(client, heart):
    client.post(ADD_URL, {"product": [heart.pk, 999999]})
    assert cart_of(client) == {}


def test_plain_add_keeps_earlier_attribution(client, heart):
    client.post(ADD_URL, {"product": heart.pk, "widget": "fbt", "bundle": "12"})
    client.post(ADD_URL, {"product": heart.pk})
    assert cart_of(client)[str(heart.pk)] == {"quantity": 2, "widget": "fbt", "bundle": 12,
                                              "run": None}


def test_cart_page_lists_lines_and_total(client, heart, lantern):
    client.post(ADD_URL, {"product": heart.pk, "quantity": 2})
    client.post(ADD_URL, {"product": lantern.pk, "quantity": 1})
    response = client.get(CART_URL)
    lines = response.context["lines"]
    assert [(line.product, line.quantity) for line in lines] == [(heart, 2), (lantern, 1)]
    assert response.context["cart"].total() == Decimal("8.49")
    html = response.content.decode()
    assert "£5.10" in html and "£8.49" in html
    assert '<span class="cart-count" aria-label="3 items">3</span>' in html


def test_cart_page_query_count_does_not_grow_with_the_cart(client,
                                                          django_assert_max_num_queries):
    products = [make_product(f"Q{i}") for i in range(12)]
    client.post(ADD_URL, {"product": [p.pk for p in products]})
    # Session and products (2), plus at most 3 for the cart-completion widget, plus the
    # experiments' serving plans, read by the first request of a cache generation only.
    with django_assert_max_num_queries(6):
        response = client.get(CART_URL)
    assert len(response.context["lines"]) == 12


def test_update_quantity(client, heart):
    client.post(ADD_URL, {"product": heart.pk})
    response = client.post(reverse("shop_demo:cart_update"),
                           {"product": heart.pk, "quantity": 5})
    assert response.url == CART_URL
    assert cart_of(client)[str(heart.pk)]["quantity"] == 5


def test_update_to_zero_removes(client, heart):
    client.post(ADD_URL, {"product": heart.pk})
    client.post(reverse("shop_demo:cart_update"), {"product": heart.pk, "quantity": 0})
    assert cart_of(client) == {}


@pytest.mark.parametrize("data", [{"quantity": "100"}, {"quantity": "x"}, {"quantity": ""},
                                  {"product": "999999", "quantity": "2"}])
def test_update_rejects_bad_input(client, heart, data):
    client.post(ADD_URL, {"product": heart.pk})
    response = client.post(reverse("shop_demo:cart_update"), {"product": heart.pk, **data})
    assert cart_of(client)[str(heart.pk)]["quantity"] == 1
    assert messages_of(response)[-1] in ("Enter a quantity between 0 and 99.",
                                         "That product is not in your cart.")


def test_remove(client, heart, lantern):
    client.post(ADD_URL, {"product": [heart.pk, lantern.pk]})
    client.post(reverse("shop_demo:cart_remove"), {"product": heart.pk})
    assert set(cart_of(client)) == {str(lantern.pk)}
    response = client.post(reverse("shop_demo:cart_remove"), {"product": heart.pk})
    assert messages_of(response)[-1] == "That product is not in your cart."


def test_cart_drops_deleted_and_deactivated_products(client, heart, lantern):
    gone = make_product("GONE")
    client.post(ADD_URL, {"product": [heart.pk, lantern.pk, gone.pk]})
    Product.objects.filter(pk=lantern.pk).update(is_active=False)
    gone.delete()
    response = client.get(CART_URL)
    assert [line.product for line in response.context["lines"]] == [heart]
    assert set(cart_of(client)) == {str(heart.pk)}


def test_empty_cart_page(client):
    response = client.get(CART_URL)
    assert response.status_code == 200
    assert "Your cart is empty." in response.content.decode()


# Checkout --------------------------------------------------------------------------

def test_checkout_records_the_order(client, heart, lantern):
    client.post(ADD_URL, {"product": heart.pk, "quantity": 2})
    client.post(ADD_URL, {"product": lantern.pk, "widget": "fbt", "bundle": "7", "run": "5"})
    assert client.get(CHECKOUT_URL).status_code == 200
    response = client.post(CHECKOUT_URL, {"name": "Ada", "email": "ada@example.com"},
                           follow=True)
    purchases = Interaction.objects.purchases()
    order_ids = {p.order_id for p in purchases}
    assert len(order_ids) == 1
    (order_id,) = order_ids
    assert order_id.startswith("demo-") and len(order_id) == 17
    by_product = {p.product_id: p for p in purchases}
    assert by_product[heart.pk].quantity == 2
    assert by_product[heart.pk].unit_price == Decimal("2.55")
    assert (by_product[heart.pk].widget, by_product[heart.pk].bundle_ref) == ("", None)
    lantern_line = by_product[lantern.pk]
    assert (lantern_line.widget, lantern_line.bundle_ref, lantern_line.run_ref) == ("fbt", 7, 5)
    assert lantern_line.visitor_id
    assert response.redirect_chain[-1][0] == reverse("shop_demo:checkout_done")
    html = response.content.decode()
    assert order_id in html
    assert "Thank you, Ada!" in html
    assert "£8.49" in html
    assert cart_of(client) == {}


def test_checkout_twice_records_one_order(client, heart):
    client.post(ADD_URL, {"product": heart.pk})
    client.post(CHECKOUT_URL, {})
    response = client.post(CHECKOUT_URL, {})
    assert response.url == CART_URL
    assert Interaction.objects.purchases().count() == 1


def test_checkout_with_bad_email_shows_the_form(client, heart):
    client.post(ADD_URL, {"product": heart.pk})
    response = client.post(CHECKOUT_URL, {"email": "not-an-email"})
    assert response.status_code == 200
    assert response.context["form"].errors["email"]
    assert not Interaction.objects.purchases().exists()
    assert cart_of(client)


@pytest.mark.parametrize("method", ["get", "post"])
def test_checkout_with_an_empty_cart_goes_back_to_the_cart(client, method):
    response = getattr(client, method)(CHECKOUT_URL)
    assert response.status_code == 302
    assert response.url == CART_URL
    assert messages_of(response) == ["Your cart is empty."]
    assert not Interaction.objects.exists()


def test_checkout_keeps_the_cart_when_recording_fails(client, heart, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database is down")

    client.post(ADD_URL, {"product": heart.pk})
    monkeypatch.setattr(views, "record_order", broken)
    response = client.post(CHECKOUT_URL, {})
    assert response.url == CART_URL
    assert cart_of(client)


def test_thank_you_page_without_an_order_redirects(client):
    response = client.get(reverse("shop_demo:checkout_done"))
    assert response.url == reverse("shop_demo:product_list")


# Escaping --------------------------------------------------------------------------

def test_html_in_product_names_is_escaped_everywhere(client):
    product = make_product("XSS", '<script>alert("x")</script><b>BOLD</b>',
                           description="<img src=x onerror=alert(1)>")
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;b&gt;BOLD&lt;/b&gt;"
    pages = [
        client.get(reverse("shop_demo:product_list")),
        client.get(reverse("shop_demo:product_list"), {"q": "<script>"}),
        client.get(product_url(product)),
    ]
    added = client.post(ADD_URL, {"product": product.pk}, follow=True)
    pages += [added, client.get(CHECKOUT_URL)]
    for response in pages:
        html = response.content.decode()
        assert "<script>" not in html
        assert "<b>BOLD" not in html
        assert "<img src=x" not in html
    for response in pages[:1] + pages[2:]:
        assert escaped in response.content.decode()


# Template helpers ------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("WHITE HANGING HEART T-LIGHT HOLDER", "WH"),
    ("PACK OF 72 RETROSPOT CAKE CASES", "PR"),
    ("REGENCY CAKESTAND 3 TIER", "RC"),
    ("3 TIER", "T"),
    ("72", "7"),
    ("", "?"),
])
def test_initials(name, expected):
    from shop_demo.templatetags.shop_demo import initials

    assert initials(name) == expected


@pytest.mark.parametrize("amount, currency, expected", [
    (Decimal("1234.5"), "GBP", "£1,234.50"),
    ("2.5", "usd", "$2.50"),
    (Decimal("3"), "SEK", "3.00 SEK"),
    (None, "GBP", "—"),
    ("junk", "GBP", "—"),
])
def test_money(amount, currency, expected):
    from shop_demo.templatetags.shop_demo import money

    assert money(amount, currency) == expected


# make demo (scripts/demo.py) -------------------------------------------------------

def load_demo_script():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"
    spec = importlib.util.spec_from_file_location("demo_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_demo_says_how_long_training_takes_and_what_shows_until_then():
    demo = load_demo_script()
    assert demo.training_estimate([]) == demo.FIRST_RUN_ESTIMATE
    assert "15 minutes" in demo.FIRST_RUN_ESTIMATE
    assert "bought together with it in the imported orders" in demo.UNTIL_TRAINED
    runs = [{"id": 3, "status": "running", "created_at": "2026-01-01T10:00:00+00:00",
             "finished_at": None},
            {"id": 2, "status": "succeeded", "created_at": "2026-01-01T09:00:00+00:00",
             "finished_at": "2026-01-01T09:12:20+00:00"}]
    assert demo.training_estimate(runs) == "about 12 minutes (as long as run 2 took)"


# Bundle offers honoured in the cart -------------------------------------------------

@pytest.fixture
def offer(heart, lantern):
    """An approved bundle: heart + lantern + cutter, 10% off (2.55 + 3.39 + 1.25 = 7.19)."""
    from shop_recs.models import Bundle, BundleItem

    cutter = make_product("84879", "SET OF 3 HEART COOKIE CUTTERS", "1.25")
    bundle = Bundle.objects.create(anchor=heart, status=Bundle.Status.APPROVED, signature="s",
                                   discount_percent=Decimal("10"))
    BundleItem.objects.bulk_create([BundleItem(bundle=bundle, product=lantern, position=1),
                                    BundleItem(bundle=bundle, product=cutter, position=2)])
    return bundle, [heart, lantern, cutter]


def test_a_whole_bundle_in_the_cart_gets_its_discount(client, offer):
    bundle, products = offer
    client.post(ADD_URL, {"product": [p.pk for p in products], "widget": "fbt",
                          "bundle": bundle.pk})
    response = client.get(CART_URL)
    cart = response.context["cart"]
    # 7.19 at 10% off = 6.471 -> 6.47, as the widget's offer shows it: a saving of 0.72.
    assert cart.subtotal() == Decimal("7.19") and cart.total() == Decimal("6.47")
    [saving] = cart.savings()
    assert (saving.bundle, saving.sets, saving.amount) == (bundle.pk, 1, Decimal("0.72"))
    html = response.content.decode()
    assert "Bundle offer: 10% off" in html and "−£0.72" in html and "£6.47" in html
    checkout = client.get(CHECKOUT_URL).content.decode()
    assert "−£0.72" in checkout and "<strong>£6.47</strong>" in checkout
    client.post(CHECKOUT_URL, {"name": "", "email": ""})
    assert client.session[views.LAST_ORDER_KEY]["total"] == "6.47"


def test_bundle_discount_needs_every_product_and_counts_whole_sets(client, offer):
    bundle, (heart, lantern, cutter) = offer
    client.post(ADD_URL, {"product": [heart.pk, lantern.pk], "quantity": 2})
    assert client.get(CART_URL).context["cart"].savings() == []  # the cutter is missing
    client.post(ADD_URL, {"product": [cutter.pk]})
    cart = client.get(CART_URL).context["cart"]
    [saving] = cart.savings()
    assert saving.sets == 1 and saving.amount == Decimal("0.72")
    client.post(ADD_URL, {"product": [cutter.pk]})
    cart = client.get(CART_URL).context["cart"]
    assert cart.savings()[0].sets == 2 and cart.total() == Decimal("12.94")


@pytest.mark.parametrize("status", ["proposed", "rejected", "retired"])
def test_bundles_not_offered_give_no_discount(client, offer, status):
    bundle, products = offer
    type(bundle).objects.filter(pk=bundle.pk).update(status=status)
    client.post(ADD_URL, {"product": [p.pk for p in products]})
    cart = client.get(CART_URL).context["cart"]
    assert cart.savings() == [] and cart.total() == cart.subtotal() == Decimal("7.19")
