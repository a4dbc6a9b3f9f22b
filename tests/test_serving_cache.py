"""The cached answers of the FBT API and widget: what invalidates them, what a warm hit
costs in cache round trips and queries, and serving with the cache down."""

import json
import uuid
from typing import ClassVar

import pytest
from django.core import signing
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.signals import request_finished
from django.db import close_old_connections, connection
from django.template import Context, Template
from django.test import RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from shop_recs import ranking, serving_cache
from shop_recs.ingest import record_order
from shop_recs.models import Interaction, Product
from tests.celery_helpers import redis_server_url  # noqa: F401 (fixture)
from tests.serving_data import make_products, serving_shop

pytestmark = pytest.mark.django_db

RECS = "shop-recs-counted"


class CountingCache(LocMemCache):
    """Local memory that records each call made to it: one call is one round trip to
    Redis (``get_many`` is one ``MGET``)."""

    calls: ClassVar[list] = []


def _counted(name):
    def method(self, *args, **kwargs):
        outer = not getattr(self, "_inner", False)
        if outer:  # LocMemCache.get_many calls get: count the outer call only
            self.calls.append(name)
            self._inner = True
        try:
            return getattr(LocMemCache, name)(self, *args, **kwargs)
        finally:
            if outer:
                self._inner = False
    return method


for _name in ("get", "get_many", "set", "set_many", "add", "has_key", "delete",
              "delete_many", "incr"):
    setattr(CountingCache, _name, _counted(_name))


class DownCache(BaseCache):
    """A cache server that is unreachable."""

    def __init__(self, location, params):
        super().__init__(params)

    def __getattribute__(self, name):
        if name in ("get", "get_many", "set", "set_many", "add", "has_key", "delete",
                    "delete_many", "incr", "clear"):
            raise ConnectionError("cache down")
        return super().__getattribute__(name)


def cache_settings(backend):
    return override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                RECS: {"BACKEND": backend, "LOCATION": RECS}},
        SHOP_RECS={"CACHE_ALIAS": RECS, "THROTTLE_RATES": {}})


@pytest.fixture
def counted():
    with cache_settings(f"{__name__}.CountingCache"):
        caches[RECS].clear()
        CountingCache.calls.clear()
        yield CountingCache.calls
        caches[RECS].clear()


@pytest.fixture
def shop():
    return serving_shop()[0]


def fbt(client, anchor, limit=3, **extra):
    response = client.get(reverse("shop_recs:api-fbt", args=[anchor.pk]), {"limit": limit},
                          **extra)
    assert response.status_code == 200
    return response, [int(i["product"]["id"]) for i in response.json()["items"]]


def widget(product, user=None):
    request = RequestFactory().get("/")
    if user is not None:
        request.user = user
    return Template("{% load shop_recs %}{% frequently_bought_together product limit=3 %}"
                    ).render(Context({"request": request, "product": product}))


def save(pk, **fields):
    product = Product.objects.get(pk=pk)
    for name, value in fields.items():
        setattr(product, name, value)
    product.save()


def interaction_queries(queries):
    return [q for q in queries if Interaction._meta.db_table in q["sql"]]


# Round trips of a warm hit -----------------------------------------------------------

def test_a_warm_api_answer_is_one_read(counted, shop, django_assert_num_queries):
    api = APIClient()
    _, first = fbt(api, shop[0])
    counted.clear()
    with django_assert_num_queries(0):
        assert fbt(api, shop[0])[1] == first
    assert counted == ["get_many"]  # the answer and what it depends on


def test_a_warm_widget_is_one_read(counted, shop, django_assert_num_queries):
    html = widget(shop[0])
    counted.clear()
    with django_assert_num_queries(0):
        assert widget(shop[0]).count("data-product-id") == html.count("data-product-id")
    assert counted == ["get_many"]  # the answer and what it depends on


def test_a_miss_reads_what_the_lookup_read_once(counted, shop, django_assert_num_queries):
    api = APIClient()
    _, first = fbt(api, shop[0])
    serving_cache.invalidate()  # a new run, say: every answer and candidate list misses
    counted.clear()
    with django_assert_num_queries(2):  # the candidate rows, the products
        assert fbt(api, shop[0])[1] == first
    # The lookup (answer, generation, anchor's token); the candidates (a miss); the
    # candidates and the answer stored together. The generation and the token are not read
    # again, nor the experiments' plans (a new run leaves their part of the generation).
    assert counted == ["get_many", "get", "set_many"]


def test_a_miss_stores_its_candidate_lists_even_without_an_answer_to_store(
        counted, shop, django_user_model, django_assert_num_queries):
    # A personalised answer is not stored; the candidate lists it was computed from are.
    user = django_user_model.objects.create(username="buyer")
    Interaction.objects.create(product=shop[1], kind="purchase", user=user, order_id="o",
                               timestamp="2024-01-01T00:00Z")
    api = APIClient()
    api.force_authenticate(user)
    assert fbt(api, shop[0], limit=8)[0].json()["personalised"] is True
    assert ranking.candidates_cached([shop[0].pk])
    # An unknown product's (empty) lists too: its next 404 is one query, not two.
    url = reverse("shop_recs:api-fbt", args=[987654])
    assert APIClient().get(url).status_code == 404
    with django_assert_num_queries(1):
        assert APIClient().get(url).status_code == 404


def test_only_a_change_of_the_experiments_moves_the_plans_part_of_the_generation(counted):
    cache = caches[RECS]
    first = serving_cache.current_generation(cache)
    serving_cache.invalidate()  # a new run, a bundle decision, a fallback refresh
    second = cache.get(serving_cache.GENERATION_KEY)
    assert second == first + 1
    assert serving_cache.plans_part(second) == serving_cache.plans_part(first)
    serving_cache.invalidate(plans=True)  # what an Experiment or Arm save does
    third = cache.get(serving_cache.GENERATION_KEY)
    assert third > second and serving_cache.plans_part(third) != serving_cache.plans_part(second)


def test_what_a_request_read_is_not_used_after_it(counted, shop):
    fbt(APIClient(), shop[0])
    # What a WSGI thread keeps between requests: the values its last lookup read.
    serving_cache.lookup_answer(("any",), [shop[0].pk])
    serving_cache.invalidate()
    request_finished.disconnect(close_old_connections)  # as the test client does
    try:
        request_finished.send(sender=None)
    finally:
        request_finished.connect(close_old_connections)
    # The next computation reads the new generation itself.
    result = ranking.recommend([shop[0].pk], limit=3, track=True)
    assert result.versions[serving_cache.GENERATION_KEY] == caches[RECS].get(
        serving_cache.GENERATION_KEY)


def test_a_lookup_that_found_its_answer_leaves_nothing_for_later(counted, shop):
    widget(shop[0])
    widget(shop[0])  # found, outside a request (a task rendering a widget, say)
    serving_cache.invalidate()
    result = ranking.recommend([shop[0].pk], limit=3, track=True)
    assert result.versions[serving_cache.GENERATION_KEY] == caches[RECS].get(
        serving_cache.GENERATION_KEY)


class LoopingCountingCache(LocMemCache):
    """Local memory whose ``get_many`` is BaseCache's loop of ``get`` (as LocMemCache's is),
    counting the ``get`` calls: each one is a lock and an unpickle."""

    calls: ClassVar[list] = []

    def get(self, *args, **kwargs):
        self.calls.append("get")
        return super().get(*args, **kwargs)


def test_a_local_memory_cache_reads_only_the_keys_an_answer_names(shop):
    with cache_settings(f"{__name__}.LoopingCountingCache"):
        caches[RECS].clear()
        api = APIClient()
        _, first = fbt(api, shop[0])
        LoopingCountingCache.calls.clear()
        assert fbt(api, shop[0])[1] == first
        # The answer, the generation and the anchor's shard token: not the 64 shards,
        # nor those of the items shown, nor the experiments' plans (the generation says
        # they have not changed).
        assert len(LoopingCountingCache.calls) == 3
        caches[RECS].clear()


def test_a_warm_answer_from_redis_is_one_mget_and_sees_changes(shop, redis_server_url,
                                                                django_assert_num_queries):
    backend = "django.core.cache.backends.redis.RedisCache"
    with override_settings(
            CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                    RECS: {"BACKEND": backend, "LOCATION": redis_server_url,
                           "KEY_PREFIX": f"shop-recs-test-{uuid.uuid4().hex}"}},
            SHOP_RECS={"CACHE_ALIAS": RECS, "THROTTLE_RATES": {}}):
        cache = caches[RECS]
        reads = []
        real = cache.get_many
        cache.get_many = lambda keys, *a, **k: reads.append(len(keys)) or real(keys, *a, **k)
        api = APIClient()
        _, first = fbt(api, shop[0])
        reads.clear()
        with django_assert_num_queries(0):
            assert fbt(api, shop[0])[1] == first
        # the answer, the generation, the anchor's shard token
        assert reads == [3]
        save(first[0], in_stock=False)
        assert first[0] not in fbt(api, shop[0])[1]
        cache.clear()


def test_a_visitor_without_history_is_asked_once(counted, shop, django_user_model):
    user = django_user_model.objects.create(username="browser")
    widget(shop[0])  # cached for everyone without history
    counted.clear()
    with CaptureQueriesContext(connection) as first:
        widget(shop[0], user)
    assert len(interaction_queries(first.captured_queries)) == 1  # any purchases? no
    counted.clear()
    with CaptureQueriesContext(connection) as again:
        widget(shop[0], user)
    assert not interaction_queries(again.captured_queries)
    assert counted == ["get_many"]  # the answer, what it depends on, the visitor's mark


@pytest.mark.parametrize("how", ["record_order", "save"])
def test_a_purchase_personalises_the_next_request(counted, shop, django_user_model, how):
    user = django_user_model.objects.create(username="buyer")
    api = APIClient()
    api.force_authenticate(user)
    anonymous = fbt(api, shop[0], limit=8)[1]
    assert fbt(api, shop[0], limit=8)[0].json()["personalised"] is False  # remembered
    if how == "record_order":  # a bulk insert: no post_save
        record_order("o-1", [{"product": shop[1]}], user=user)
    else:
        Interaction.objects.create(product=shop[1], kind="purchase", user=user, order_id="o",
                                   timestamp="2024-01-01T00:00Z")
    response, ids = fbt(api, shop[0], limit=8)
    assert response.json()["personalised"] is True
    assert shop[1].pk in anonymous and shop[1].pk not in ids  # owned: moved out


# Invalidation ------------------------------------------------------------------------

@pytest.mark.parametrize("change", [{"price": "99.00"}, {"name": "Renamed"},
                                    {"in_stock": False}, {"is_active": False}])
def test_saving_a_shown_product_recomputes_the_answer(counted, shop, change):
    api = APIClient()
    _, first = fbt(api, shop[0])
    save(first[1], **change)
    response, ids = fbt(api, shop[0])
    item = next((i["product"] for i in response.json()["items"]
                 if int(i["product"]["id"]) == first[1]), None)
    if "price" in change or "name" in change:
        assert ids == first and item[next(iter(change))] == change.get("price", "Renamed")
    else:
        assert first[1] not in ids and len(ids) == 3


def test_deleting_a_shown_product_recomputes_the_answer(counted, shop):
    api = APIClient()
    _, first = fbt(api, shop[0])
    Product.objects.get(pk=first[0]).delete()
    assert first[0] not in fbt(api, shop[0])[1]


@pytest.mark.parametrize("field", ["in_stock", "is_active"])
def test_a_filtered_out_product_made_available_shows_on_the_next_request(
        counted, shop, field, django_assert_num_queries):
    api = APIClient()
    _, first = fbt(api, shop[0])  # p9, p10 (the bundle), p1
    save(first[0], **{field: False})
    _, without = fbt(api, shop[0])
    assert first[0] not in without
    save(first[0], **{field: True})
    # The answers are recomputed, the candidate lists are not: one query.
    with django_assert_num_queries(1):
        assert fbt(api, shop[0])[1] == first


def test_the_widget_sees_a_restock(counted, shop):
    first = widget(shop[0])
    save(shop[9].pk, in_stock=False)
    assert f'data-product-id="{shop[9].pk}"' not in widget(shop[0])
    save(shop[9].pk, in_stock=True)
    assert widget(shop[0]).count(f'data-product-id="{shop[9].pk}"') == \
        first.count(f'data-product-id="{shop[9].pk}"') > 0


def test_saving_a_product_that_no_list_holds_keeps_the_answers(
        counted, shop, django_assert_num_queries, monkeypatch):
    # Shards by pk modulo: the shop's consecutive keys fall in distinct shards whatever
    # values the database gave them (hashed, p11 may share the anchor's shard for some key
    # values, and then the answer is rightly recomputed).
    monkeypatch.setattr(serving_cache, "_shard", lambda pk: int(pk) % serving_cache.SHARDS)
    api = APIClient()
    _, first = fbt(api, shop[0])
    save(shop[11].pk, price="1.00")  # in no list: p0's lists hold p1..p10
    with django_assert_num_queries(0):
        assert fbt(api, shop[0])[1] == first
    save(shop[8].pk, price="1.00")  # in p0's FBT list, behind the items shown: recomputed
    with django_assert_num_queries(1):
        assert fbt(api, shop[0])[1] == first


def test_the_product_receiver_reads_the_lists_in_one_query(counted, shop,
                                                          django_assert_num_queries):
    api = APIClient()
    _, first = fbt(api, shop[0])
    save(first[0], in_stock=False)
    fbt(api, shop[0])
    product = Product.objects.only("pk", "in_stock").get(pk=first[0])  # the rest deferred
    product.in_stock = True
    with django_assert_num_queries(2) as queries:  # the UPDATE, the anchors listing it
        product.save()
    assert "UNION" in queries.captured_queries[-1]["sql"].upper()
    assert fbt(api, shop[0])[1] == first


def test_a_change_of_many_products_starts_a_new_generation(counted, shop,
                                                          django_assert_num_queries):
    api = APIClient()
    _, first = fbt(api, shop[0])
    generation = caches[RECS].get(serving_cache.GENERATION_KEY)
    many = [*range(10**6, 10**6 + serving_cache.MAX_CHANGED), first[0]]
    Product.objects.filter(pk=first[0]).update(in_stock=False)
    with django_assert_num_queries(0):  # no lookup of so many products
        serving_cache.products_changed(many)
    assert caches[RECS].get(serving_cache.GENERATION_KEY) == generation + 1
    assert first[0] not in fbt(api, shop[0])[1]


def test_update_then_products_changed(counted, shop):
    api = APIClient()
    _, first = fbt(api, shop[0])
    Product.objects.filter(pk=first[0]).update(in_stock=False)  # no signal
    serving_cache.products_changed([first[0]])
    assert first[0] not in fbt(api, shop[0])[1]
    Product.objects.filter(pk=first[0]).update(in_stock=True)
    serving_cache.products_changed([first[0]])
    assert fbt(api, shop[0])[1] == first


def test_evictions_never_show_an_unavailable_product(counted, shop):
    api = APIClient()
    _, first = fbt(api, shop[0])
    recs = caches[RECS]
    # The anchor's token evicted, then a change without a signal: the answer no longer
    # matches and is computed again.
    recs.delete(serving_cache._version_key(shop[0].pk))
    Product.objects.filter(pk=first[0]).update(in_stock=False)
    _, ids = fbt(api, shop[0])
    assert first[0] not in ids
    # The left-out product is in the anchor's lists: its restock shows at once.
    save(first[0], in_stock=True)
    assert fbt(api, shop[0])[1] == first
    # The generation evicted: every answer misses (and is right again).
    Product.objects.filter(pk=first[1]).update(in_stock=False)
    recs.delete(serving_cache.GENERATION_KEY)
    assert first[1] not in fbt(api, shop[0])[1]


def test_a_save_invalidates_only_answers_whose_anchor_shares_a_shard_with_it(counted, shop):
    api = APIClient()
    others = make_products(30, prefix="X")  # before the answer: their saves are over
    shown = fbt(api, shop[0])[1]
    # X products are in no list: a save forgets the answers of anchors in its own shard.
    unrelated = next(p for p in others
                     if serving_cache._shard(p.pk) != serving_cache._shard(shop[0].pk))
    related = Product.objects.get(pk=shown[-1])
    save(unrelated.pk, name="renamed")
    with CaptureQueriesContext(connection) as queries:
        assert fbt(api, shop[0])[1] == shown
    assert len(queries) == 0  # still cached: another shard's save does not touch it
    save(related.pk, name="renamed too")  # shown: the anchor's lists hold it
    with CaptureQueriesContext(connection) as queries:
        assert fbt(api, shop[0])[1] == shown
    assert len(queries) > 0  # recomputed


def test_plain_and_indented_json_are_cached_apart(counted, shop, monkeypatch):
    # the click tokens carry the second they were signed in: one second for all answers
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: "1")
    api = APIClient()
    plain = fbt(api, shop[0])[0]
    indented = fbt(api, shop[0], HTTP_ACCEPT="application/json; indent=2")[0]
    assert plain["Content-Type"] == indented["Content-Type"] == "application/json"
    assert b"\n" not in plain.content and b'\n  "product"' in indented.content
    assert json.loads(indented.content) == json.loads(fbt(api, shop[0])[0].content)


# The cache down ----------------------------------------------------------------------

def test_the_cache_down_still_answers_and_never_raises(shop, django_user_model):
    with cache_settings(f"{__name__}.DownCache"):
        api = APIClient()
        for _ in range(2):
            assert len(fbt(api, shop[0])[1]) == 3
            # The approved bundle's two items in their offer, and three products to tick.
            assert widget(shop[0]).count("data-product-id") == 5
        save(shop[1].pk, in_stock=False)
        serving_cache.products_changed([shop[1].pk])
        serving_cache.invalidate()
        user = django_user_model.objects.create(username="down")
        record_order("o-down", [{"product": shop[2]}], user=user)
        assert shop[1].pk not in fbt(api, shop[0])[1]
