"""The widgets: markup contract, escaping, no-JS form, query counts, never raising."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.template import Context, Template
from django.test import RequestFactory, override_settings
from django.utils import translation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shop_recs import ranking
from shop_recs.attribution import read_token
from shop_recs.models import Product, Recommendation
from tests.serving_data import serving_shop

pytestmark = pytest.mark.django_db


def render(source, **context):
    request = RequestFactory().get("/")
    return Template("{% load shop_recs %}" + source).render(
        Context({"request": request, **context}))


def forms_of(html):
    return re.findall(r"<form\b.*?</form>", html, re.S)


def test_widget_markup_contract():
    p, run, bundle = serving_shop()
    html = render("{% frequently_bought_together product limit=2 %}", product=p[0])
    assert '<section class="shop-recs shop-recs-fbt" data-shop-recs-widget="fbt"' in html
    assert f'data-bundle-id="{bundle.pk}"' in html and f'data-run-id="{run.pk}"' in html
    ids = re.findall(r'data-product-id="([^"]+)"', html)
    assert ids == [str(p[9].pk), str(p[10].pk), str(p[1].pk), str(p[2].pk)]
    offer, choices = forms_of(html)
    # The approved bundle is its own offer: one button adds the anchor and its items.
    assert re.findall(r'<input type="hidden" name="product" value="([^"]+)"', offer) == [
        str(p[0].pk), str(p[9].pk), str(p[10].pk)]
    assert 'type="checkbox"' not in offer and "Add the bundle to cart" in offer
    assert f'name="bundle" value="{bundle.pk}"' in offer
    token = re.search(r'name="attribution" value="([^"]+)"', offer).group(1)
    assert read_token(token).bundle == bundle.pk
    # The other products: the anchor and each item has a labelled, checked checkbox.
    boxes = re.findall(r'<input type="checkbox" id="([^"]+)" name="product" value="([^"]+)"'
                       r'[^>]*checked', choices)
    assert [value for _id, value in boxes] == [str(p[0].pk), str(p[1].pk), str(p[2].pk)]
    for box_id, _value in boxes:
        assert f'<label class="shop-recs-name" for="{box_id}">' in choices
    assert 'action="/cart/add/"' in choices and "Add all three to cart" in choices
    assert 'name="widget" value="fbt"' in choices and 'name="bundle"' not in choices
    token = re.search(r'name="attribution" value="([^"]+)"', choices).group(1)
    assert read_token(token).bundle is None and read_token(token).run == run.pk


def test_total_and_bundle_discount_without_javascript():
    p, _run, _bundle = serving_shop()
    html = render("{% frequently_bought_together product limit=2 %}", product=p[0])
    # The offer: 2.50 + 11.50 + 12.50 = 26.50, 10% off = 23.85, a saving of 2.65.
    assert "Bundle offer: save 10%" in html
    assert re.search(r"Bundle price:.*£23\.85.*<s [^>]*>.*£26\.50</s>", html)
    assert "You save £2.65" in html
    # The offer does not use up the choices: two more products, the total without discount.
    assert re.search(r"Total price: <strong[^>]*>£10\.50</strong>", html)  # 2.50+3.50+4.50
    Recommendation.objects.all().delete()
    cache.clear()
    with override_settings(SHOP_RECS={**django_settings.SHOP_RECS, "FALLBACK": False}):
        html = render("{% frequently_bought_together product limit=2 %}", product=p[0])
    # Nothing but the bundle: only its offer.
    assert len(forms_of(html)) == 1 and "checkbox" not in html and "You save £2.65" in html


def test_without_a_bundle_everything_is_a_choice():
    p, run, _bundle = serving_shop(bundle=False)
    html = render("{% frequently_bought_together product limit=2 %}", product=p[0])
    assert "Bundle" not in html and "data-bundle-id" not in html
    [form] = forms_of(html)
    assert len(re.findall(r'type="checkbox"[^>]*checked', form)) == 3
    assert re.search(r"Total price: <strong[^>]*>£10\.50</strong>", form)  # 2.50+3.50+4.50
    assert "Add all three to cart" in form


@pytest.mark.parametrize("count, label", [
    (1, "Add to cart"), (2, "Add both to cart"), (3, "Add all three to cart"),
    (4, "Add all four to cart"), (12, "Add all 12 to cart")])
def test_add_all_label_counts_the_products(count, label):
    from shop_recs.templatetags.shop_recs import add_label

    assert add_label(count) == label


def test_thumbnails_show_the_image_or_a_placeholder():
    p, _run, _bundle = serving_shop(bundle=False)
    Product.objects.filter(pk=p[1].pk).update(image_url="https://img.example/p1.jpg")
    Product.objects.filter(pk=p[2].pk).update(name="WHITE HANGING HEART T-LIGHT HOLDER")
    anchor = Product.objects.get(pk=p[0].pk)
    html = render("{% frequently_bought_together product limit=2 %}", product=anchor)
    assert re.search(r'<img class="shop-recs-thumb__image" src="https://img\.example/p1\.jpg"'
                     r' alt=""', html)
    assert re.search(r'<span class="shop-recs-thumb__placeholder shop-recs-tone-\d" '
                     r'aria-hidden="true">WH</span>', html)
    # Each linked thumbnail says where it goes, for screen readers.
    assert "View WHITE HANGING HEART T-LIGHT HOLDER</span></a>" in html


def test_the_stylesheet_is_linked_once_per_page():
    p, _run, _bundle = serving_shop()
    link = '<link rel="stylesheet" href="/static/shop_recs/widget.css">'
    for _ in range(2):  # rendered, then from the cache
        html = render("{% frequently_bought_together product %}"
                      "{% complete_the_cart items %}", product=p[0], items=[p[0]])
        assert html.count(link) == 1 and html.startswith(link)
    # In <head>: the widgets then leave theirs out.
    html = render("<head>{% shop_recs_css %}</head>{% frequently_bought_together product %}",
                  product=p[0])
    assert html.count(link) == 1 and html.startswith("<head>" + link)
    assert "shoprecs" not in html  # no placeholder left


def test_no_host_framework_classes():
    p, _run, _bundle = serving_shop()
    html = render("{% frequently_bought_together product %}{% complete_the_cart items %}",
                  product=p[0], items=[p[0]])
    classes = {c for attr in re.findall(r'class="([^"]+)"', html) for c in attr.split()}
    assert classes and all(c.startswith("shop-recs") for c in classes), classes
    css = (Path(__file__).parent.parent / "shop_recs/static/shop_recs/widget.css").read_text()
    hooks = {"shop-recs-fbt", "shop-recs-cart", "shop-recs-choices"}  # for hosts' own rules
    for name in classes - hooks:
        assert f".{name}" in css, f"{name} has no rule in widget.css"


def test_without_a_cart_url_the_widget_shows_products_and_no_forms():
    p, _run, _bundle = serving_shop()
    with override_settings(SHOP_RECS={"CART_URL_NAME": None}):
        cache.clear()
        html = render("{% frequently_bought_together product limit=2 %}", product=p[0])
    assert "<form" not in html and "checkbox" not in html and "<button" not in html
    assert "P product 9" in html and "£23.85" in html and "£10.50" in html


def test_item_links_carry_attribution():
    p, run, bundle = serving_shop()
    html = render("{% frequently_bought_together product limit=3 %}", product=p[0])
    assert f"/products/{p[1].pk}/?widget=fbt&amp;run={run.pk}&amp;attribution=" in html


def test_prices_for_the_script_are_not_localised():
    p, _run, _bundle = serving_shop()
    with translation.override("de"):
        html = render("{% frequently_bought_together product limit=3 %}", product=p[0])
    # widget.js reads data-price with parseFloat: "3,50" would read as 3.
    assert 'data-price="3.50"' in html and 'data-price="3,50"' not in html


def test_no_recommendations_render_nothing():
    p, _run, _bundle = serving_shop(fbt=False, bundle=False)
    with override_settings(SHOP_RECS={"FALLBACK": False}):
        assert render("{% frequently_bought_together product %}", product=p[0]).strip() == ""


def test_a_failing_tag_logs_and_renders_nothing(monkeypatch, caplog):
    p, _run, _bundle = serving_shop()

    def boom(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(ranking, "frequently_bought_together", boom)
    assert render("before{% frequently_bought_together product %}after",
                  product=p[0]) == "beforeafter"
    assert "widget failed" in caplog.text
    assert render("{% frequently_bought_together None %}").strip() == ""
    assert render("{% complete_the_cart 42 %}").strip() == ""


@pytest.mark.parametrize("limit", [1, 3, 10])
def test_widget_queries_are_bounded_whatever_the_limit(django_assert_max_num_queries, limit):
    p, _run, _bundle = serving_shop()
    with django_assert_max_num_queries(3):
        render("{% frequently_bought_together product limit=limit %}", product=p[0], limit=limit)
    with django_assert_max_num_queries(1):
        render("{% frequently_bought_together product limit=limit %}", product=p[0], limit=limit)
    with django_assert_max_num_queries(3):
        render("{% complete_the_cart items limit=limit %}", items=p[:3], limit=limit)


def test_complete_the_cart_markup():
    p, _run, _bundle = serving_shop(bundle=False)
    html = render("{% complete_the_cart items %}", items=p[:2])
    assert '<section class="shop-recs shop-recs-cart" data-shop-recs-widget="cart"' in html
    ids = re.findall(r'data-product-id="([^"]+)"', html)
    assert ids and str(p[0].pk) not in ids and str(p[1].pk) not in ids
    # Compact cards: thumbnail, name, price and a small "Add" button per product, each
    # button naming its product for screen readers.
    assert html.count('<li class="shop-recs-card"') == len(ids)
    assert html.count('name="widget" value="cart"') == len(ids)
    buttons = re.findall(r'<button type="submit" class="shop-recs-button shop-recs-button--small">'
                         r'Add<span class="shop-recs-visually-hidden"> ([^<]+) to cart</span>',
                         html)
    assert len(buttons) == len(ids) and all(name.startswith("P product") for name in buttons)


class TextCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture
def shop():
    return serving_shop()[0]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=60)
       | st.sampled_from(['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>',
                          "Tom & Jerry's <b>mug</b>", "ÄÖÜ ❤ 日本 \u202e"]))
def test_names_are_escaped(shop, name):
    """Whatever a product is called, it renders as text: no markup gets through."""
    cache.clear()
    Product.objects.filter(pk__in=[shop[0].pk, shop[1].pk]).update(name=name)
    anchor = Product.objects.get(pk=shop[0].pk)
    for source in ("{% frequently_bought_together product limit=3 %}",
                   "{% complete_the_cart items %}"):
        html = render(source, product=anchor, items=[anchor])
        parser = TextCollector()
        parser.feed(html)
        assert parser.tags.count("script") == 1  # widget.js only
        assert "img" not in parser.tags and "b" not in parser.tags
        if source.startswith("{% frequently"):
            assert name.strip() in "".join(parser.text)


def test_cached_widget_carries_the_current_requests_csrf_token(django_assert_max_num_queries):
    from django.middleware.csrf import _unmask_cipher_token, get_token

    p, _run, _bundle = serving_shop()
    rendered = []
    for _ in range(3):
        request = RequestFactory().get("/")
        html = Template("{% load shop_recs %}{% frequently_bought_together product %}").render(
            Context({"request": request, "product": p[0]}))
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
        get_token(request)
        assert _unmask_cipher_token(token) == request.META["CSRF_COOKIE"]
        assert f'data-csrf="{token}"' in html
        assert "shoprecs" not in html  # no placeholder left
        rendered.append((token, re.search(r'id="(shop-recs-fbt-[0-9a-f]+)"', html).group(1)))
    assert len({t for t, _ in rendered}) == 3 and len({i for _, i in rendered}) == 3
    with django_assert_max_num_queries(0):  # cached fragment, anonymous visitor
        render("{% frequently_bought_together product %}", product=p[0])


@pytest.mark.parametrize("page_token", [True, False])
def test_the_widget_shares_the_pages_csrf_token(page_token):
    from django.middleware.csrf import _unmask_cipher_token
    from django.template import RequestContext

    p, _run, _bundle = serving_shop()
    source = "{% load shop_recs %}{% frequently_bought_together product %}"
    if page_token:
        source = "<form>{% csrf_token %}</form>" + source
    for _ in range(2):  # rendered, then cached
        request = RequestFactory().get("/")
        html = Template(source).render(RequestContext(request, {"product": p[0]}))
        tokens = set(re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', html))
        assert len(tokens) == 1  # one masked token per page, as Django's own tags
        assert _unmask_cipher_token(tokens.pop()) == request.META["CSRF_COOKIE"]
    # Anything else in the context is not a token: a fresh one is made.
    request = RequestFactory().get("/")
    html = Template(source).render(RequestContext(request, {"product": p[0],
                                                            "csrf_token": '"><script>'}))
    assert "<script>" not in html and 'name="csrfmiddlewaretoken"' in html


def test_cached_widget_sees_stock_changes_and_skips_personalised_visitors(django_user_model):
    p, _run, _bundle = serving_shop()
    source = "{% frequently_bought_together product limit=3 %}"
    ids = re.findall(r'data-product-id="([^"]+)"', render(source, product=p[0]))
    item = Product.objects.get(pk=ids[0])
    item.in_stock = False
    item.save()
    assert ids[0] not in re.findall(r'data-product-id="([^"]+)"', render(source, product=p[0]))
    user = django_user_model.objects.create(username="buyer")
    from shop_recs.models import Interaction

    anonymous = re.findall(r'data-product-id="([^"]+)"', render(source, product=p[0]))
    Interaction.objects.create(product=p[1], kind="purchase", user=user, order_id="o",
                               timestamp="2024-01-01T00:00Z")
    request = RequestFactory().get("/")
    request.user = user
    mine = Template("{% load shop_recs %}" + source).render(
        Context({"request": request, "product": p[0]}))
    # p[1] is owned: it moves behind the other model items (personalised, not the cache).
    assert str(p[1].pk) in anonymous
    assert str(p[1].pk) not in re.findall(r'data-product-id="([^"]+)"', mine)


def test_token_maker_signs_each_bundle_and_run_pair_once():
    from shop_recs.attribution import read_token, token_maker

    token = token_maker("fbt")
    first, same, other = token(None, 7), token(None, 7), token(12, 7)
    assert first is same and first != other
    assert read_token(first).as_dict() == {"widget": "fbt", "bundle": None, "run": 7}
    assert read_token(other).as_dict() == {"widget": "fbt", "bundle": 12, "run": 7}
