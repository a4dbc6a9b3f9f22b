"""Serving benchmark: the FBT endpoint, the product page with and without the widget,
and the events endpoint. Prints figures; asserts nothing about time.

    .venv/bin/python -m benchmarks.serving [--products 5000] [--requests 2000]

Builds a catalogue in a throw-away SQLite database (FBT rows for every product, an
approved bundle for one in ten), warms the cache, then times requests in this process
through Django's test client. Latencies are reported as ratios to a trivial DRF
endpoint (and to the page without the widget) measured in the same run, in alternating
rounds.
"""

import argparse
import contextlib
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import include, path  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

import shop_demo.urls  # noqa: E402
from shop_recs.api.views import PublicView  # noqa: E402
from shop_recs.models import (Bundle, BundleItem, Product, Recommendation,  # noqa: E402
                              TrainingRun)


class Trivial(APIView):
    # The same permission and throttle classes as the public read endpoints (the FBT
    # view's), so that the ratio measures the recommendation work, not a difference in
    # DRF machinery. Rates are off for both (one client makes thousands of requests).
    permission_classes = PublicView.permission_classes
    throttle_classes = PublicView.throttle_classes

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [path("trivial/", Trivial.as_view()), *shop_demo.urls.urlpatterns]


def build(n):
    products = Product.objects.bulk_create([
        Product(sku=f"S{i:05d}", name=f"Product {i} <b>&</b>", price=Decimal("1.25") + i % 50,
                currency="GBP", category=f"c{i % 40}") for i in range(n)], batch_size=2000)
    run = TrainingRun.objects.create(status="succeeded", pending=None, is_active=True)
    Recommendation.objects.bulk_create([
        Recommendation(run=run, product=p, recommended=products[(i + k * 7) % n], rank=k,
                       score=1 / k, source="bpr", evidence={"orders_together": 20 - k,
                                                            "lift": 2.5, "confidence": 0.1})
        for i, p in enumerate(products) for k in range(1, 11)], batch_size=5000)
    for i in range(0, n, 10):
        bundle = Bundle.objects.create(anchor=products[i], status="approved", signature=str(i),
                                       score=3.0, discount_percent=5, run=run)
        BundleItem.objects.bulk_create([BundleItem(bundle=bundle, product=products[(i + 1) % n],
                                                   position=1),
                                        BundleItem(bundle=bundle, product=products[(i + 2) % n],
                                                   position=2)])
    return products


def timed(client, urls, method="get", **kwargs):
    times = []
    for url in urls:
        start = time.perf_counter()
        response = getattr(client, method)(url, **kwargs)
        times.append(time.perf_counter() - start)
        assert response.status_code in (200, 201), (url, response.status_code)
    return times


def alternating(client, runs, rounds=10):
    """The times of each of ``runs`` (``(urls, patch)``: ``patch`` makes a context manager
    to time them in, or None), taken in ``rounds`` alternating slices so that load from
    elsewhere on the machine, or drift during the run, touches each alike."""
    times = [[] for _ in runs]
    for r in range(rounds):
        for spent, (urls, patch) in zip(times, runs):
            size = -(-len(urls) // rounds)
            with patch() if patch else contextlib.nullcontext():
                spent += timed(client, urls[r * size:(r + 1) * size])
    return times


@contextlib.contextmanager
def without_widget():
    from shop_recs.templatetags import shop_recs as tags  # noqa: PLC0415

    real = tags._render
    tags._render = lambda *a, **k: ""
    try:
        yield
    finally:
        tags._render = real


def quantiles(times):
    ordered = sorted(times)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]


def report(name, times, base=None):
    p50, p99 = quantiles(times)
    line = f"{name:<34} p50 {p50 * 1e3:7.3f} ms   p99 {p99 * 1e3:7.3f} ms"
    if base:
        b50, b99 = quantiles(base)
        line += f"   ratio p50 {p50 / b50:5.2f}  p99 {p99 / b99:5.2f}"
    print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    setup_test_environment()
    connection.creation.create_test_db(verbosity=0)
    start = time.perf_counter()
    products = build(args.products)
    print(f"catalogue: {args.products} products, {Recommendation.objects.count()} FBT rows, "
          f"{Bundle.objects.count()} bundles, built in {time.perf_counter() - start:.1f} s")
    client = Client()
    n = args.requests
    anchors = [products[i % len(products)] for i in range(0, n * 7, 7)][:n]
    fbt_urls = [f"/api/shop-recs/v1/products/{p.pk}/frequently-bought-together/?limit=3"
                for p in anchors]
    page_urls = [f"/products/{p.pk}/" for p in anchors[:max(n // 4, 200)]]
    timed(client, fbt_urls)  # warm the cache
    timed(client, page_urls)
    trivial, fbt = alternating(client, [(["/trivial/"] * 2 * n, None), (fbt_urls, None)])
    report("trivial DRF endpoint", trivial)
    report(f"FBT endpoint, warm ({n} requests)", fbt, trivial)

    without, with_widget = alternating(client, [(page_urls * 2, without_widget),
                                                (page_urls * 2, None)])
    report("product page without widget", without)
    report(f"product page with widget ({len(page_urls)})", with_widget, without)

    batch = 500
    events = [{"kind": "widget_impression", "product": str(products[i % len(products)].pk)}
              for i in range(args.events)]
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        timed(client, ["/api/shop-recs/v1/events/"], "post",
              data={"events": events[i:i + batch]}, content_type="application/json")
    elapsed = time.perf_counter() - start
    print(f"events endpoint: {len(events)} events in batches of {batch}: "
          f"{len(events) / elapsed:,.0f} events/s (SQLite, {connection.vendor})")


if __name__ == "__main__":
    rates = {"shop_recs.read": None, "shop_recs.events": None, "shop_recs.staff": None}
    # A cache that holds every product's list, as Redis would (locmem keeps 300 by default).
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                          "OPTIONS": {"MAX_ENTRIES": 1_000_000}}}
    with override_settings(ROOT_URLCONF=__name__, DEBUG=False, CACHES=caches,
                           SHOP_RECS={**settings.SHOP_RECS, "THROTTLE_RATES": rates}):
        main()
