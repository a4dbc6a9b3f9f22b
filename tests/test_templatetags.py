"""The widgets: markup contract, escaping, no-JS form, query counts, never raising."""

import re
from html.parser import HTMLParser

import pytest
from django.core.cache import cache
from django.template import Context, Template
from django.test import RequestFactory, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shop_recs import ranking
from shop_recs.attribution import read_token
from shop_recs.models import Product
from tests.serving_data import serving_shop

pytestmark = pytest.mark.django_db


def render(source, **context):
    request = RequestFactory().get("/")
    return Template("{% load shop_recs %}" + source).render(
        Context({"request": request, **context}))


def test_widget_markup_contract():
    p, run, bundle = serving_shop()
    html = render("{% frequently_bought_together product limit=4 %}", product=p[0])
    assert '<section class="shop-recs-fbt" data-shop-recs-widget="fbt"' in html
    assert f'data-bundle-id="{bundle.pk}"' in html and f'data-run-id="{run.pk}"' in html
    ids = re.findall(r'data-product-id="([^"]+)"', html)
    assert ids == [str(p[9].pk), str(p[10].pk), str(p[1].pk), str(p[2].pk)]
    assert 'action="/cart/add/"' in html and "Add all to cart" in html
    # Every item and the anchor has a labelled, checked checkbox posting "product".
    assert len(re.findall(r'<input type="checkbox"[^>]*name="product"[^>]*checked', html)) == 5
    assert len(re.findall(r"<label for=", html)) == 5
    assert 'name="widget" value="fbt"' in html and f'name="bundle" value="{bundle.pk}"' in html
    token = re.search(r'name="attribution" value="([^"]+)"', html).group(1)
    assert read_token(token).bundle == bundle.pk


def test_total_and_bundle_discount_without_javascript():
    p, _run, _bundle = serving_shop()
    html = render("{% frequently_bought_together product limit=2 %}", product=p[0])
    # 2.50 + 11.50 + 12.50 = 26.50, 10% off = 23.85
    assert "£23.85" in html and "10% off" in html and "£26.50" in html


def test_item_links_carry_attribution():
    p, run, bundle = serving_shop()
    html = render("{% frequently_bought_together product limit=3 %}", product=p[0])
    assert f"/products/{p[1].pk}/?widget=fbt&amp;run={run.pk}&amp;attribution=" in html


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
    assert '<section class="shop-recs-cart" data-shop-recs-widget="cart"' in html
    ids = re.findall(r'data-product-id="([^"]+)"', html)
    assert ids and str(p[0].pk) not in ids and str(p[1].pk) not in ids
    assert html.count('name="widget" value="cart"') == len(ids)


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
