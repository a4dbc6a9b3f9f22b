"""WIDGET_ON_MISS = "defer": a cache miss renders a placeholder that the fragment view fills."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings as django_settings
from django.core import signing
from django.core.cache import cache
from django.core.checks import run_checks
from django.db import connection
from django.template import Context, Template
from django.test import RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from shop_recs.models import Recommendation
from shop_recs.templatetags.shop_recs import DEFER_SALT
from tests.serving_data import serving_shop

pytestmark = pytest.mark.django_db

DEFER = {**django_settings.SHOP_RECS, "WIDGET_ON_MISS": "defer"}


def render(product, limit=2):
    request = RequestFactory().get("/")
    return Template("{% load shop_recs %}{% frequently_bought_together product limit=limit %}"
                    ).render(Context({"request": request, "product": product, "limit": limit}))


def placeholder_url(html):
    match = re.search(r'data-shop-recs-defer="([^"]+)"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def product_ids(html):
    return re.findall(r'data-product-id="([^"]+)"', html)


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()


@override_settings(SHOP_RECS=DEFER)
def test_a_miss_renders_a_placeholder_and_the_fragment_renders_the_widget(client):
    p, run, _bundle = serving_shop()
    with CaptureQueriesContext(connection) as queries:
        html = render(p[0])
    # Nothing computed for the page: no candidate or product query, no products shown.
    assert not [q for q in queries.captured_queries if "shop_recs_recommendation" in q["sql"]]
    assert product_ids(html) == [] and "data-shop-recs-widget" not in html
    url = placeholder_url(html)
    assert url and url.startswith("/shop-recs/widgets/fbt/?w=")
    assert 'src="/static/shop_recs/widget.js"' in html
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "private" in response["Cache-Control"] and "Cookie" in response["Vary"]
    fragment = response.content.decode()
    assert '<section class="shop-recs shop-recs-fbt" data-shop-recs-widget="fbt"' in fragment
    assert f'data-run-id="{run.pk}"' in fragment
    # The page linked the stylesheet with the placeholder; the fragment does not again.
    assert "widget.css" in html and "widget.css" not in fragment
    # The fragment cached the answer: the next page renders the same widget inline.
    again = render(p[0])
    assert placeholder_url(again) is None
    assert product_ids(again) == product_ids(fragment) == [
        str(p[9].pk), str(p[10].pk), str(p[1].pk), str(p[2].pk)]


def test_the_default_renders_a_miss_inline():
    p, _run, _bundle = serving_shop()
    html = render(p[0])
    assert placeholder_url(html) is None and len(product_ids(html)) == 4


@override_settings(SHOP_RECS=DEFER)
def test_the_fragment_keeps_the_language_of_the_page(client):
    p, _run, _bundle = serving_shop()
    with translation.override("de"):
        url = placeholder_url(render(p[0]))
    w = parse_qs(urlsplit(url).query)["w"][0]
    assert signing.loads(w, salt=DEFER_SALT)[3] == "de"


@override_settings(SHOP_RECS=DEFER)
def test_bad_fragment_requests_get_clear_errors(client):
    p, _run, _bundle = serving_shop()
    url = placeholder_url(render(p[0]))
    assert client.post(url).status_code == 405
    assert client.get("/shop-recs/widgets/fbt/").status_code == 400
    assert client.get(url[:-3] + "abc").status_code == 400  # tampered signature
    # A client cannot choose a template: the parameters are signed.
    forged = signing.dumps([str(p[0].pk), 2, "admin/base.html", "en"], salt="other")
    assert client.get(f"/shop-recs/widgets/fbt/?w={forged}").status_code == 400
    assert client.get("/shop-recs/widgets/fbt/?w=" + "x" * 5000).status_code == 400
    gone = signing.dumps(["999999", 2, "shop_recs/frequently_bought_together.html", "en"],
                         salt=DEFER_SALT, compress=True)
    assert client.get(f"/shop-recs/widgets/fbt/?w={gone}").status_code == 404


@override_settings(SHOP_RECS=DEFER)
def test_nothing_to_show_is_an_empty_fragment(client):
    p, _run, _bundle = serving_shop(bundle=False)
    Recommendation.objects.all().delete()
    with override_settings(SHOP_RECS={**DEFER, "FALLBACK": False}):
        url = placeholder_url(render(p[0]))
        response = client.get(url)
    assert response.status_code == 200 and response.content == b""


def test_the_fragment_is_throttled(client):
    p, _run, _bundle = serving_shop()
    with override_settings(SHOP_RECS={**DEFER, "THROTTLE_RATES": {"shop_recs.read": "2/min"}}):
        url = placeholder_url(render(p[0]))
        codes = [client.get(url).status_code for _ in range(3)]
        refused = client.get(url)
    assert codes == [200, 200, 429]
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1


def test_an_unknown_mode_is_a_check_error():
    with override_settings(SHOP_RECS={**django_settings.SHOP_RECS, "WIDGET_ON_MISS": "lazy"}):
        errors = [e for e in run_checks() if e.id == "shop_recs.E002"]
    assert any("WIDGET_ON_MISS" in e.msg for e in errors)
