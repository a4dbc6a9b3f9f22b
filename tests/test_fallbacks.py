"""Stored fallback lists: what they hold, how they are refreshed, and that serving reads
them with indexed lookups only (no aggregate over interactions per request)."""

import json
import re
from datetime import timedelta

import numpy as np
import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Q
from django.template import Context, Template
from django.test import RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from shop_recs import data, fallbacks, ranking, serving_cache
from shop_recs.conf import recs_settings
from shop_recs.models import FallbackRecommendation, Interaction, Product
from shop_recs.schedule import FALLBACKS_TASK_NAME
from shop_recs.tasks import refresh_fallbacks
from tests.serving_data import make_products, purchases, serving_shop

pytestmark = pytest.mark.django_db


def request_time_fallback(anchor_pks, limit):
    """The query the request path used to run for every short list (kept here as the
    specification the stored lists must reproduce)."""
    bought = Interaction.objects.purchases()
    orders = (bought.filter(product__in=anchor_pks).exclude(order_id="")
              .order_by("-timestamp").values("order_id")[:recs_settings.FALLBACK_ORDERS])
    together = Q(order_id__in=orders)
    categories = Product.objects.filter(pk__in=anchor_pks).exclude(category="").values("category")
    recent = bought.order_by("-pk").values("pk")[:recs_settings.POPULAR_LINES]
    where = together | Q(product__category__in=categories, pk__in=recent)
    return list(
        bought.filter(where, product__is_active=True, product__in_stock=True)
        .exclude(product__in=anchor_pks).values("product")
        .annotate(together=Count("order_id", filter=together, distinct=True), n=Count("pk"))
        .order_by("-together", "-n", "product")[:limit])


def planted_shop():
    """p0 is bought with p1 in 3 orders, with p2 in 2, with p3 in 1; p4, p5, p6 sell alone
    4, 2 and 1 times; g0, g1 are garden products; p7 is never bought."""
    p = make_products(8)
    g = make_products(2, prefix="G", category="garden")
    orders = {f"a{i}": [p[0], p[1]] for i in range(3)}
    orders |= {f"b{i}": [p[0], p[2]] for i in range(2)} | {"c": [p[0], p[3]]}
    orders |= {f"d{i}": [p[4]] for i in range(4)} | {f"e{i}": [p[5]] for i in range(2)}
    orders |= {"f": [p[6]], "g": [g[0], g[1]], "h": [g[0]]}
    purchases(orders)
    return p, g


def stored(product):
    return list(FallbackRecommendation.objects.filter(product=product).order_by("rank")
                .values_list("recommended_id", "method", "evidence"))


def test_stored_lists_reproduce_the_request_time_query_on_a_planted_shop():
    p, g = planted_shop()
    fallbacks.refresh()
    for anchor in [*p, *g]:
        expected = request_time_fallback([anchor.pk], recs_settings.CANDIDATES)
        rows = stored(anchor)
        assert [pk for pk, _, _ in rows] == [row["product"] for row in expected], anchor
        assert [ev["orders_together"] for _, _, ev in rows] == [r["together"] for r in expected]
    assert [(pk, method) for pk, method, _ in stored(p[0])] == [
        (p[1].pk, "cooccurrence"), (p[2].pk, "cooccurrence"), (p[3].pk, "cooccurrence"),
        (p[4].pk, "popular"), (p[5].pk, "popular"), (p[6].pk, "popular")]


def test_new_products_get_their_category_bestsellers_and_unavailable_ones_are_never_listed():
    p, g = planted_shop()
    Product.objects.filter(pk=p[4].pk).update(in_stock=False)
    Product.objects.filter(pk=g[1].pk).update(is_active=False)
    fallbacks.refresh()
    assert [pk for pk, _, _ in stored(p[7])] == [p[0].pk, p[1].pk, p[2].pk, p[5].pk,
                                                  p[3].pk, p[6].pk]
    assert {method for _, method, _ in stored(p[7])} == {"popular"}
    listed = set(FallbackRecommendation.objects.values_list("recommended_id", flat=True))
    assert p[4].pk not in listed and g[1].pk not in listed
    assert not stored(g[1]) and stored(g[0]) == []  # its only partner is inactive


def test_only_the_most_recent_orders_of_a_product_are_counted():
    p = make_products(4)
    now = timezone.now()
    purchases({"old1": [p[0], p[1]], "old2": [p[0], p[1]]}, when=now - timedelta(days=30))
    purchases({"new": [p[0], p[2]]}, when=now - timedelta(days=1))
    with override_settings(SHOP_RECS={"FALLBACK_ORDERS": 1}):
        fallbacks.refresh()
        rows = stored(p[0])
    assert rows[0][:2] == (p[2].pk, "cooccurrence")
    assert [method for _, method, _ in rows[1:]] == ["popular"] * (len(rows) - 1)


def test_refresh_from_an_extract_equals_refresh_from_the_database():
    planted_shop()
    fallbacks.refresh()
    from_db = sorted(FallbackRecommendation.objects.values_list("product", "rank", "recommended"))
    fallbacks.refresh(data.extract_baskets())
    assert sorted(FallbackRecommendation.objects.values_list(
        "product", "rank", "recommended")) == from_db


def test_a_shop_without_orders_stores_nothing_and_serves_nothing():
    p = make_products(3)
    assert fallbacks.refresh()["rows"] == 0
    assert not ranking.frequently_bought_together(p[0])


def test_a_refresh_replaces_every_row_and_reaches_the_next_answer(
        django_capture_on_commit_callbacks):
    p, _ = planted_shop()
    with django_capture_on_commit_callbacks(execute=True):
        fallbacks.refresh()
    first = ranking.frequently_bought_together(p[7], limit=1)
    assert first.items[0].product.pk == p[0].pk and first.items[0].source == "fallback"
    purchases({f"z{i}": [p[6]] for i in range(20)})
    with django_capture_on_commit_callbacks(execute=True):
        fallbacks.refresh()
    assert ranking.frequently_bought_together(p[7], limit=1).items[0].product.pk == p[6].pk
    assert FallbackRecommendation.objects.filter(product=p[7], rank=1).count() == 1


def test_command_task_and_daily_schedule_refresh_the_lists(capsys):
    p, _ = planted_shop()
    call_command("shop_recs_fallbacks")
    assert "Stored" in capsys.readouterr().out and stored(p[0])
    FallbackRecommendation.objects.all().delete()
    assert refresh_fallbacks.apply().get()["rows"] == FallbackRecommendation.objects.count() > 0
    task = PeriodicTask.objects.get(name=FALLBACKS_TASK_NAME)
    assert task.task == "shop_recs.refresh_fallbacks" and task.enabled


# The request path --------------------------------------------------------------------

AGGREGATE = re.compile(r"\b(COUNT|SUM|AVG|MAX|MIN)\s*\(|\bGROUP BY\b|\bDISTINCT\b", re.I)


def interaction_aggregates(queries):
    table = Interaction._meta.db_table
    return [q["sql"] for q in queries if table in q["sql"] and AGGREGATE.search(q["sql"])]


def test_the_request_path_never_aggregates_interactions(client):
    p, _run, _bundle = serving_shop()
    purchases({f"o{i}": [p[0], p[11], p[i % 5 + 1]] for i in range(40)})
    fallbacks.refresh()
    Interaction.objects.create(product=p[3], kind="purchase", visitor_id="known",
                               order_id="k1", timestamp=timezone.now())
    api = APIClient()
    widget = Template("{% load shop_recs %}{% frequently_bought_together product limit=5 %}")
    for anchor in (p[0], p[11], p[7]):  # a full list, a fallback-only list, no list
        caches["default"].clear()
        with CaptureQueriesContext(connection) as queries:
            response = api.get(reverse("shop_recs:api-fbt", args=[anchor.pk]), {"limit": 20})
        assert response.status_code == 200
        assert len(queries) <= 3 and not interaction_aggregates(queries), queries.captured_queries
        with CaptureQueriesContext(connection) as queries:
            ranking.frequently_bought_together(
                anchor, limit=20, visitor=ranking.Visitor(visitor_id="known"))
            ranking.complete_the_cart([anchor, p[1]], limit=20)
            widget.render(Context({"request": RequestFactory().get("/"), "product": anchor}))
        assert not interaction_aggregates(queries), queries.captured_queries
    assert any(i.source == "fallback" for i in ranking.frequently_bought_together(
        p[11], limit=20).items)


def test_a_normal_list_is_never_short_of_candidates():
    p, _run, _bundle = serving_shop()
    purchases({f"o{i}": [p[0], p[i % 11 + 1]] for i in range(30)})
    fallbacks.refresh()
    candidates, _, _ = ranking.compute_candidates([p[0].pk])
    sources = [c[1] for c in candidates]
    assert sources[:2] == ["bundle", "bundle"] and "model" in sources and "fallback" in sources
    assert len(candidates) == len({c[0] for c in candidates})  # nothing twice


LOCMEM = "shop-recs-footprint"


def test_the_cache_holds_two_entries_per_product_served_plus_a_fixed_set():
    n = 3 * serving_cache.SHARDS  # more products than shards: per-product keys would show
    p = make_products(n)
    purchases({f"o{i}": [p[i], p[(i + 1) % n], p[(i + 7) % n]] for i in range(n)})
    fallbacks.refresh()
    with override_settings(CACHES={"default": {"BACKEND":
                                               "django.core.cache.backends.locmem.LocMemCache"},
                                   LOCMEM: {"BACKEND":
                                            "django.core.cache.backends.locmem.LocMemCache",
                                            "LOCATION": LOCMEM,
                                            "OPTIONS": {"MAX_ENTRIES": 100_000}}},
                           SHOP_RECS={"CACHE_ALIAS": LOCMEM, "THROTTLE_RATES": {}}):
        cache = caches[LOCMEM]
        cache.clear()
        api = APIClient()
        sizes = []
        for count, product in enumerate(p, 1):
            assert api.get(reverse("shop_recs:api-fbt", args=[product.pk])).status_code == 200
            if count in (n // 3, n):
                tokens = [k for k in cache._cache if serving_cache.VERSION_PREFIX in k]
                sizes.append((len(cache._cache), len(tokens)))
        (before, _), (after, tokens) = sizes
        assert after - before <= 2 * (n - n // 3) + serving_cache.SHARDS
        assert tokens <= serving_cache.SHARDS
        # Answer + candidates per product, the generation, the experiments' serving plans
        # and their counter.
        assert after - tokens <= 2 * n + 3
        cache.clear()


def test_an_erasure_recomputes_the_lists_without_the_erased_orders(
        django_capture_on_commit_callbacks, django_user_model, monkeypatch):
    from celery import current_app  # noqa: PLC0415
    from kombu.exceptions import OperationalError as BrokerError  # noqa: PLC0415

    from shop_recs import privacy, tasks  # noqa: PLC0415
    from shop_recs.ingest import record_order  # noqa: PLC0415

    p = make_products(4)
    alice = django_user_model.objects.create_user("alice", password="pw")
    record_order("A1", [{"product": p[0]}, {"product": p[1]}], user=alice)
    record_order("B1", [{"product": p[0]}, {"product": p[2]}])
    fallbacks.refresh()
    assert (p[1].pk, "cooccurrence") in [(pk, m) for pk, m, _ in stored(p[0])]
    queued = []
    monkeypatch.setattr(current_app, "send_task", lambda name, *a, **k: queued.append(name))
    with django_capture_on_commit_callbacks(execute=True):
        privacy.erase_user(user=alice)
    assert queued == [tasks.refresh_fallbacks.name]  # the worker recomputes them

    def broker_down(name, *args, **kwargs):
        raise BrokerError("no broker")

    record_order("A2", [{"product": p[0]}, {"product": p[3]}], user=alice)
    monkeypatch.setattr(current_app, "send_task", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        privacy.erase_user(user=alice)
    assert [(pk, m) for pk, m, _ in stored(p[0])] == [(p[2].pk, "cooccurrence")]


def test_an_import_stores_the_lists_for_product_pages_before_any_run(write_csv, capsys):
    path = write_csv(["order_id,product_id,timestamp,product_name,unit_price",
                      *[f"o{i},A,2024-01-0{i % 9 + 1}T10:00,Anchor,2.5" for i in range(5)],
                      *[f"o{i},B,2024-01-0{i % 9 + 1}T10:00,Partner,1.5" for i in range(4)],
                      "o9,C,2024-01-09T10:00,Alone,3"])
    call_command("shop_recs_import_orders", str(path))
    assert "Fallback lists:" in capsys.readouterr().out
    anchor = Product.objects.get(sku="A")
    result = ranking.frequently_bought_together(anchor, limit=3)
    assert [(i.product.sku, i.source, i.method) for i in result.items][0] == (
        "B", "fallback", "cooccurrence")
    FallbackRecommendation.objects.all().delete()
    Interaction.objects.all().delete()
    call_command("shop_recs_import_orders", str(path), "--no-fallbacks")
    assert Interaction.objects.exists() and not FallbackRecommendation.objects.exists()


def test_lists_are_written_in_bulk_without_model_instances(monkeypatch):
    """Issue 15: a refresh writes a row per product and candidate (20 M at a million products)
    through shop_recs.bulk (COPY on PostgreSQL, batched executemany elsewhere), never a list of
    objects; the stored rows are the computed lists, scores and evidence included."""
    from shop_recs import bulk

    p, _ = planted_shop()
    extract = data.extract_baskets(min_orders=1, min_products=1)
    lists = fallbacks.compute(extract, fallbacks._catalogue())
    monkeypatch.setattr(FallbackRecommendation.objects, "bulk_create",
                        lambda *a, **k: pytest.fail("bulk_create builds every row as an object"))
    monkeypatch.setattr(bulk, "BATCH", 4)  # several batches on SQLite
    assert fallbacks.write(lists) == len(lists) > 8
    rows = sorted(FallbackRecommendation.objects.values_list(
        "product", "rank", "recommended", "method", "score", "evidence"))
    want = sorted((a, r, i, m, float(t if m == fallbacks.COOCCURRENCE else b),
                   {"orders_together": t, "purchases": b}) for a, i, r, m, t, b in zip(
        lists.anchor, lists.item, lists.rank.tolist(), lists.method, lists.together.tolist(),
        lists.bought.tolist()))
    assert rows == want
    assert stored(p[0])[0] == (p[1].pk, "cooccurrence", {"orders_together": 3, "purchases": 3})


def test_json_text_is_stored_as_the_document_it_serialises(monkeypatch):
    """shop_recs.bulk.JSONText: evidence formatted by the caller reads back as the dict,
    beside rows given as dicts (COPY on PostgreSQL, executemany on SQLite)."""
    from shop_recs import bulk

    p = make_products(3)
    doc = {"orders_together": 12345678901, "purchases": 0}
    text = bulk.JSONText(f'{{"orders_together": {12345678901}, "purchases": {0}}}')
    assert text == json.dumps(doc)  # the format fallbacks.write uses is json.dumps's
    rows = [(p[0].pk, p[1].pk, 1, "cooccurrence", 1.0, text),
            (p[0].pk, p[2].pk, 2, "popular", 2.0, {"orders_together": 0, "purchases": 7})]
    assert bulk.write_rows(FallbackRecommendation, fallbacks.WRITE_FIELDS, rows, batch=1) == 2
    assert stored(p[0]) == [(p[1].pk, "cooccurrence", doc),
                            (p[2].pk, "popular", {"orders_together": 0, "purchases": 7})]
    # a backend that adapts JSON itself is given the parsed document, never the text
    from django.db.models import JSONField

    field = FallbackRecommendation._meta.get_field("evidence")
    seen = []
    monkeypatch.setattr(type(connection.ops), "adapt_json_value",
                        lambda self, value, encoder: seen.append(value) or json.dumps(value))
    prep = bulk._json_preparer(field, connection, copy=False)
    assert isinstance(field, JSONField) and prep(text) == json.dumps(doc) and seen == [doc]


def _reference_fill(lists, pks, catalogue, popular, limit):
    """The category part of compute() one product at a time (its definition)."""
    position = {str(pk): i for i, pk in enumerate(pks)}
    category_of = {position[str(pk)]: c for pk, c in catalogue if str(pk) in position}
    best = {}
    for j in np.argsort(-popular, kind="stable"):
        if popular[j] <= 0:
            break
        if category_of.get(j):
            entries = best.setdefault(category_of[j], [])
            if len(entries) <= limit:
                entries.append(j)
    listed = {}
    for a, j, m in zip(lists.anchor, lists.item, lists.method):
        if m == fallbacks.COOCCURRENCE:
            listed.setdefault(position[str(a)], set()).add(position[str(j)])
    out = []
    for pk, category in catalogue:
        a = position.get(str(pk), -1)
        taken = listed.get(a, set())
        rank = len(taken)
        for j in best.get(category, []) if category else []:
            if rank >= limit:
                break
            if j != a and j not in taken:
                rank += 1
                out.append((pk, pks[j], rank, int(popular[j])))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_category_bestsellers_fill_each_list_as_one_product_at_a_time_would(seed):
    """The fill is arrays over the whole catalogue (30 M entries at 10^6 products): the
    same rows, in the same order, as filling each product's list in turn."""
    from types import SimpleNamespace

    from shop_recs.ml.types import Baskets

    rng = np.random.default_rng(seed)
    n, n_orders = 60, 150
    sizes = rng.integers(1, 5, size=n_orders)
    items = (rng.zipf(1.4, size=int(sizes.sum())) % n).astype(np.int32)
    baskets = Baskets(np.concatenate([[0], np.cumsum(sizes)]), items, np.arange(n_orders),
                      np.full(n_orders, -1), n)
    pks = [f"p{i}" for i in range(n)]
    catalogue = [(pk, str(rng.choice(["", "a", "b", "c"]))) for pk in pks if rng.random() < .9]
    catalogue += [("new", "a"), ("other", "b")]  # not bought yet: the bestsellers alone
    limit, window = 6, 200
    lists = fallbacks.compute(SimpleNamespace(pks=pks, baskets=baskets), catalogue,
                              limit=limit, keep=20, window=window)
    filled = lists.method == fallbacks.POPULAR
    popular = np.bincount(items[-window:], minlength=n)
    got = list(zip(lists.anchor[filled], lists.item[filled], lists.rank[filled].tolist(),
                   lists.bought[filled].tolist()))
    assert got == _reference_fill(lists, pks, catalogue, popular, limit) and len(got) > 50
