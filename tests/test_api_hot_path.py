"""The FBT endpoint's hot path (``shop_recs.api.hot_path``): a plain JSON GET is answered
without DRF's dispatch, with the same body, headers, throttles and errors as through it."""

import base64

import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import reverse
from rest_framework.views import APIView

from shop_recs.api import hot_path
from shop_recs.models import Interaction
from tests.serving_data import serving_shop

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    cache.clear()
    return serving_shop()


@pytest.fixture
def drf_calls(monkeypatch):
    """The requests that went through DRF's dispatch (``APIView.initial``)."""
    calls = []
    real = APIView.initial

    def initial(self, request, *args, **kwargs):
        calls.append(request.path)
        return real(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "initial", initial)
    return calls


def fbt_url(pk):
    return reverse("shop_recs:api-fbt", args=[pk])


def without_tokens(body):
    """The body without its attribution tokens, which are signed with the time."""
    assert all(item["attribution"] for item in body["items"])
    return {**body, "items": [{**item, "attribution": ""} for item in body["items"]]}


def read_rate(rate):
    return override_settings(SHOP_RECS={"THROTTLE_RATES": {
        "shop_recs.read": rate, "shop_recs.events": None, "shop_recs.staff": None}})


def test_a_plain_get_skips_drf_and_answers_what_drf_answers(shop, drf_calls, monkeypatch):
    p = shop[0]
    client = Client()
    responses = []
    for accept in (None, "*/*", "application/json"):
        headers = {} if accept is None else {"HTTP_ACCEPT": accept}
        for params in ({}, {"limit": 5}):
            responses.append(client.get(fbt_url(p[0].pk), params, **headers))
    assert drf_calls == []  # every one on the hot path, cold and warm
    monkeypatch.setattr(hot_path, "answer", lambda *args: None)
    for params in ({}, {"limit": 5}):
        cache.clear()
        for _ in range(2):  # cold, then warm
            through_drf = client.get(fbt_url(p[0].pk), params)
            hot = responses[1] if params else responses[0]
            assert through_drf.status_code == hot.status_code == 200
            assert without_tokens(through_drf.json()) == without_tokens(hot.json())
            for header in ("Content-Type", "Allow", "Vary"):
                assert through_drf.get(header) == hot.get(header), header
    assert len(drf_calls) == 4
    assert len(responses[1].json()["items"]) == 5 and responses[0].json()["items"]


def test_the_hot_path_and_drf_share_the_cached_answer(shop, drf_calls,
                                                      django_assert_num_queries):
    p = shop[0]
    first = Client().get(fbt_url(p[0].pk), {"format": "json"})
    assert drf_calls  # ?format=: DRF's negotiation decides (JSON: the same cached answer)
    with django_assert_num_queries(0):
        assert Client().get(fbt_url(p[0].pk)).json() == first.json()


@pytest.mark.parametrize("headers,params,status", [
    ({"HTTP_ACCEPT": "text/html"}, {}, 406),  # the demo's API renders JSON only
    ({"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"nobody:pw").decode()}, {}, 403),
    ({}, {"format": "json"}, 200),
])
def test_other_requests_go_through_drf(shop, drf_calls, headers, params, status):
    response = Client().get(fbt_url(shop[0][0].pk), params, **headers)
    assert response.status_code == status and drf_calls


def test_the_hot_path_applies_the_read_throttle(shop, drf_calls):
    p = shop[0]
    client = Client()
    with read_rate("2/min"):
        codes = [client.get(fbt_url(p[0].pk)).status_code for _ in range(4)]
        refused = client.get(fbt_url(p[0].pk))
    assert codes == [200, 200, 429, 429]
    assert refused.json()["detail"] and int(refused["Retry-After"]) > 0
    assert len(drf_calls) == 3  # only the refused ones: DRF answers the 429


def test_an_error_on_the_hot_path_is_answered_by_drf_and_counted_once(shop, drf_calls):
    p = shop[0]
    client = Client()
    with read_rate("3/min"):
        bad = client.get(fbt_url("abc"))
        unknown = client.get(fbt_url(987654))
        ok = client.get(fbt_url(p[0].pk))
        refused = client.get(fbt_url(p[0].pk))
    assert bad.status_code == 400 and "product" in bad.json()
    assert unknown.status_code == 404 and unknown.json()["detail"]
    assert bad["Content-Type"] == "application/json" and bad["Allow"]
    assert ok.status_code == 200 and refused.status_code == 429
    assert len(drf_calls) == 3


def test_a_shopper_logged_in_by_session_is_served_personally(shop, django_user_model,
                                                             drf_calls):
    p = shop[0]
    anonymous = [i["product"]["id"] for i in Client().get(fbt_url(p[0].pk), {"limit": 8})
                 .json()["items"]]
    user = django_user_model.objects.create(username="buyer")
    client = Client()
    client.force_login(user)
    assert client.get(fbt_url(p[0].pk), {"limit": 8}).json()["personalised"] is False
    Interaction.objects.create(product=p[1], kind="purchase", user=user, order_id="o",
                               timestamp="2024-01-01T00:00Z")
    body = client.get(fbt_url(p[0].pk), {"limit": 8}).json()
    assert body["personalised"] is True
    assert str(p[1].pk) in anonymous and str(p[1].pk) not in [i["product"]["id"]
                                                              for i in body["items"]]
    assert drf_calls == []


def test_a_view_configured_otherwise_goes_through_drf():
    from rest_framework.permissions import IsAuthenticated
    from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer

    from shop_recs.api.views import FrequentlyBoughtTogetherView as View

    assert hot_path.plan(View) is not None
    for attrs in ({"permission_classes": [IsAuthenticated]},
                  {"renderer_classes": [BrowsableAPIRenderer, JSONRenderer]},
                  {"authentication_classes": [type("Custom", (), {})]},
                  {"throttle_classes": [object]}):
        assert hot_path.plan(type("Other", (View,), attrs)) is None, attrs
    both = type("Both", (View,), {"renderer_classes": [JSONRenderer, BrowsableAPIRenderer]})
    assert hot_path.plan(both)[0]["Vary"] == "Accept"
