"""Serving benchmark: what a shop's visitors wait for, cold and warm, API and page.

    python -m benchmarks.serving --db DB.sqlite3 [--cache locmem|redis] [--requests 2000]
    python -m benchmarks.serving --build DB.sqlite3 [--time-budget 120]   # make that DB
    python -m benchmarks.serving --synthetic 100000 [--cache ...]          # a large catalogue

Runs with the demo shop's own settings (``shop_demo.settings``: its cache, middleware and
``SHOP_RECS``), ``DEBUG`` off and API throttles off (one client makes thousands of
requests). ``--cache locmem`` keeps the demo's cache (``LocMemCache``, 20,000 entries);
``--cache locmem-300`` uses Django's default (``LocMemCache``, 300 entries), what a host
that never configured ``CACHES`` has; ``--cache redis`` starts a private ``redis-server``.

``--build`` imports one year of UCI Online Retail (found in ``../shared/data`` or fetched),
trains one run with the pipeline and stores the fallback lists; ``--db`` then reuses that
database (read only: it is copied first). ``--synthetic N`` builds N products with FBT,
fallback and bundle rows instead (no orders, no training).

Traffic: ``--requests`` requests over the 500 best-selling products (drawn in proportion to
their sales) and as many over a long-tail sample (500 products drawn uniformly from the
rest), through Django's test client in this process. For each: *cold* (the cache cleared
before every request), *first pass* (an empty cache, then the traffic as it comes) and
*warm* (the same traffic again), with the cache hit rate; the FBT API against a trivial DRF
endpoint and the product page with the widget against the same page without it, measured
in alternating rounds. The pages are requested by a shopper with a session (the demo's
pages start one); the API by the same shopper, or with ``--headless`` by a client that
sends no cookies (no session to load: a cheaper trivial view, so higher ratios). The row
*cold defer* is the cold page with ``WIDGET_ON_MISS = "defer"`` (a placeholder), and in its
API columns the fragment request that fills it against the trivial endpoint, both from the
shopper. Prints figures and ratios; asserts nothing about time.
"""

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TRIVIAL_URL = "/__bench__/trivial/"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def private_redis():
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", folder],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def setup_django(db_path, var_dir, redis_url=None):
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings"
    os.environ["SHOP_DEMO_SQLITE"] = str(db_path)
    os.environ["SHOP_DEMO_VAR_DIR"] = str(var_dir)
    os.environ.pop("DATABASE_URL", None)
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    else:
        os.environ.pop("REDIS_URL", None)
    import django  # noqa: PLC0415

    django.setup()


# Building the databases ---------------------------------------------------------------

def build_online_retail(time_budget):
    """Import one year of Online Retail, train a run, store fallbacks (Django set up)."""
    from django.core.management import call_command  # noqa: PLC0415

    from shop_demo.datasets import fetch_online_retail  # noqa: PLC0415
    from shop_recs import fallbacks, pipeline  # noqa: PLC0415
    from shop_recs.importer import import_orders  # noqa: PLC0415
    from shop_recs.runs import request_training  # noqa: PLC0415

    call_command("migrate", verbosity=0)
    files = [p for p in fetch_online_retail() if "2010-12_2011-12" in p.name]
    result = import_orders(files, fmt="online_retail")
    print(f"import: {result.report.read:,} lines in {result.seconds:.1f} s")
    run = request_training(trigger="benchmark", config={"time_budget_s": time_budget},
                           broker_check=False, enqueue=False)
    status = pipeline.run_training(run.pk)
    run.refresh_from_db()
    print(f"training run {run.pk}: {status}, {run.counts.get('fbt_rows', 0):,} FBT rows, "
          f"timings {run.timings}")
    if status != "succeeded":
        print(f"fallback lists only: {fallbacks.refresh()}")


def build_synthetic(n, seed=0):
    """N products in 40 categories; 10 FBT rows, 30 fallback rows each; a bundle per 10."""
    from decimal import Decimal  # noqa: PLC0415

    from django.core.management import call_command  # noqa: PLC0415
    from django.db import transaction  # noqa: PLC0415

    from shop_recs.models import (Bundle, BundleItem, FallbackRecommendation,  # noqa: PLC0415
                                  Product, Recommendation, TrainingRun)

    call_command("migrate", verbosity=0)
    rng = random.Random(seed)
    with transaction.atomic():
        Product.objects.bulk_create([
            Product(sku=f"S{i:07d}", name=f"Product {i} <b>&</b>", currency="GBP",
                    price=Decimal("1.25") + i % 50, category=f"c{i % 40}") for i in range(n)],
            batch_size=5000)
    pks = list(Product.objects.order_by("pk").values_list("pk", flat=True))
    run = TrainingRun.objects.create(status="succeeded", pending=None, is_active=True,
                                     shipped_model="synthetic")
    for start in range(0, n, 5000):
        with transaction.atomic():
            chunk = pks[start:start + 5000]
            Recommendation.objects.bulk_create([
                Recommendation(run=run, product_id=pk, recommended_id=pks[rng.randrange(n)],
                               rank=k, score=1 / k, source="ease",
                               evidence={"orders_together": 20 - k, "lift": 2.5})
                for pk in chunk for k in range(1, 11)], batch_size=5000)
            FallbackRecommendation.objects.bulk_create([
                FallbackRecommendation(product_id=pk, recommended_id=pks[rng.randrange(n)],
                                       rank=k, score=31 - k, method="cooccurrence",
                                       evidence={"orders_together": 31 - k, "purchases": 40})
                for pk in chunk for k in range(1, 31)], batch_size=5000)
    for i in range(0, n, 10):
        bundle = Bundle.objects.create(anchor_id=pks[i], status="approved", signature=str(i),
                                       score=3.0, discount_percent=5, run=run)
        BundleItem.objects.bulk_create([
            BundleItem(bundle=bundle, product_id=pks[(i + 1) % n], position=1),
            BundleItem(bundle=bundle, product_id=pks[(i + 2) % n], position=2)])
    print(f"synthetic catalogue: {n:,} products, {Recommendation.objects.count():,} FBT rows, "
          f"{FallbackRecommendation.objects.count():,} fallback rows")


# Measuring ----------------------------------------------------------------------------

def traffic(requests, seed=0):
    """``(best-seller pks, long-tail pks)``: ``requests`` draws over each set."""
    from django.db.models import Count  # noqa: PLC0415

    from shop_recs.models import Interaction, Product  # noqa: PLC0415

    rng = random.Random(seed)
    sales = list(Interaction.objects.purchases().values("product").annotate(n=Count("pk"))
                 .order_by("-n", "product").values_list("product", "n"))
    active = set(Product.objects.filter(is_active=True).values_list("pk", flat=True))
    if sales:
        sales = [(pk, n) for pk, n in sales if pk in active]
        head, rest = sales[:500], [pk for pk, _ in sales[500:]]
    else:  # synthetic: popularity by pk
        ordered = sorted(active)
        head = [(pk, 1.0 / (rank + 1)) for rank, pk in enumerate(ordered[:500])]
        rest = ordered[500:]
    best = rng.choices([pk for pk, _ in head], weights=[n for _, n in head], k=requests)
    tail_set = rng.sample(rest, min(500, len(rest)))
    tail = [rng.choice(tail_set) for _ in range(requests)]
    return best, tail


def quantiles(times):
    ordered = sorted(times)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]


class Bench:
    def __init__(self, headless=False):
        from django.core.cache import caches  # noqa: PLC0415
        from django.test import Client  # noqa: PLC0415

        from shop_recs.conf import recs_settings  # noqa: PLC0415

        self.client = Client()  # pages: a shopper (the demo's pages start a session)
        # The API's caller: the same shopper (the widget's JavaScript on the shop's own
        # domain sends the session cookie) or, ``headless``, a client without cookies (a
        # storefront rendered elsewhere).
        self.api_client = Client() if headless else self.client
        self.cache = caches[recs_settings.CACHE_ALIAS]
        self.hits = 0
        self.calls = 0

    def get(self, url, clear=False, shopper=False):
        if clear:
            from shop_recs import serving_cache  # noqa: PLC0415

            # A cache miss as production has it: a new generation (what a run, a bundle
            # decision or a fallback refresh does) makes every answer and candidate list
            # miss; the shard tokens and "no purchases" marks stay, as they would.
            serving_cache.invalidate()
        client = (self.api_client if url.startswith(("/api/", TRIVIAL_URL)) and not shopper
                  else self.client)
        start = time.perf_counter()
        response = client.get(url)
        spent = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code}")
        return spent

    def alternating(self, runs, rounds=10):
        """Times of ``runs`` (``(urls, clear, patch)``), taken in alternating slices so that
        load from elsewhere on the machine touches each alike."""
        times = [[] for _ in runs]
        for r in range(rounds):
            for spent, (urls, clear, patch, *shopper) in zip(times, runs):
                size = -(-len(urls) // rounds)
                with patch() if patch else contextlib.nullcontext():
                    spent += [self.get(u, clear, *shopper) for u in urls[r * size:(r + 1) * size]]
        return times

    def fragment_urls(self, pages):
        """The deferred widget's fragment URL on each page (a cache miss, ``deferring``)."""
        import re  # noqa: PLC0415

        urls = []
        with deferring():
            for page in pages:
                from shop_recs import serving_cache  # noqa: PLC0415

                serving_cache.invalidate()
                html = self.client.get(page).content.decode()
                found = re.search(r'data-shop-recs-defer="([^"]+)"', html)
                if found is None:
                    raise RuntimeError(f"{page}: no deferred widget on a miss")
                urls.append(found.group(1).replace("&amp;", "&"))
        return urls


@contextlib.contextmanager
def without_widget():
    from shop_recs.templatetags import shop_recs as tags  # noqa: PLC0415

    real = tags._render
    tags._render = lambda *a, **k: ""
    try:
        yield
    finally:
        tags._render = real


@contextlib.contextmanager
def deferring():
    """``WIDGET_ON_MISS = "defer"``: a miss renders a placeholder, the fragment the widget."""
    from django.conf import settings  # noqa: PLC0415
    from django.test import override_settings  # noqa: PLC0415

    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "WIDGET_ON_MISS": "defer"}):
        yield


@contextlib.contextmanager
def counting_misses(stats):
    """Counts answers computed (cache misses) while active."""
    from shop_recs import ranking  # noqa: PLC0415

    real = ranking.recommend

    def counted(*args, **kwargs):
        stats["misses"] += 1
        return real(*args, **kwargs)

    ranking.recommend = counted
    try:
        yield
    finally:
        ranking.recommend = real


def measure(args, label):
    from django.db import connection, reset_queries  # noqa: PLC0415
    from django.test.utils import CaptureQueriesContext  # noqa: PLC0415

    bench = Bench(headless=args.headless)
    rows = []
    sets = dict(zip(("best sellers", "long tail"), traffic(args.requests, args.seed)))
    # Every row with the same client state: the shopper has visited a page (a session).
    bench.get(f"/products/{sets['best sellers'][0]}/")
    for name, pks in sets.items():
        api = [f"/api/shop-recs/v1/products/{pk}/frequently-bought-together/" for pk in pks]
        page = [f"/products/{pk}/" for pk in pks]
        trivial = [TRIVIAL_URL] * len(api)
        reset_queries()  # a full query log (a build under DEBUG) would hide new queries
        # A process's first answer also reads what it caches once (the experiments' plans,
        # compiled SQL); the count is that of a cold answer after it.
        bench.get(api[1], clear=True)
        with CaptureQueriesContext(connection) as queries:
            bench.get(api[0], clear=True)
        n_queries = len(queries)
        # Cold: a new generation before each request (trivial requests bump it too).
        t_cold, a_cold = bench.alternating([(trivial, True, None), (api, True, None)])
        p_plain, p_cold = bench.alternating([(page, True, without_widget), (page, True, None)])
        for mode in ("first pass", "warm"):
            if mode == "first pass":
                bench.cache.clear()
            stats = {"misses": 0}
            with counting_misses(stats):
                t_w, a_w = bench.alternating([(trivial, False, None), (api, False, None)])
                pp_w, p_w = bench.alternating([(page, False, without_widget),
                                               (page, False, None)])
            hit = 1 - stats["misses"] / (2 * len(api))
            rows.append((name, mode, t_w, a_w, pp_w, p_w, hit))
        rows.insert(len(rows) - 2, (name, "cold", t_cold, a_cold, p_plain, p_cold, 0.0))
        # Cold with WIDGET_ON_MISS = "defer": the page carries a placeholder; the widget comes
        # from the fragment URL, requested by the shopper (its API columns: the fragment
        # against the trivial endpoint, both with the shopper's session).
        frags = bench.fragment_urls(page)
        t_def, f_def = bench.alternating([(trivial, True, deferring, True),
                                          (frags, True, deferring, True)])
        pp_def, p_def = bench.alternating([(page, True, without_widget), (page, True, deferring)])
        rows.insert(len(rows) - 2, (name, "cold defer", t_def, f_def, pp_def, p_def, 0.0))
        print(f"{label} / {name}: {len(set(pks))} products, {len(pks)} requests per row, "
              f"{n_queries} queries per cold API answer")
    print(f"\n{label}: times in ms (p50 / p99); ratios to the trivial DRF endpoint (API) and "
          f"to the page without the widget (page)")
    print(f"{'traffic':<13}{'mode':<11}{'hit':>5} | {'trivial':>13} {'FBT API':>13} "
          f"{'ratio':>11} | {'page w/o':>13} {'page with':>13} {'ratio':>11}")
    results = []
    for name, mode, t, a, pp, p, hit in rows:
        (t50, t99), (a50, a99), (q50, q99), (w50, w99) = map(quantiles, (t, a, pp, p))
        print(f"{name:<13}{mode:<11}{hit:>5.0%} | {t50*1e3:6.2f}/{t99*1e3:6.2f} "
              f"{a50*1e3:6.2f}/{a99*1e3:6.2f} {a50/t50:5.2f}/{a99/t99:5.2f} | "
              f"{q50*1e3:6.2f}/{q99*1e3:6.2f} {w50*1e3:6.2f}/{w99*1e3:6.2f} "
              f"{w50/q50:5.2f}/{w99/q99:5.2f}")
        results.append({"traffic": name, "mode": mode, "hit_rate": hit,
                        "trivial_ms": [t50 * 1e3, t99 * 1e3], "api_ms": [a50 * 1e3, a99 * 1e3],
                        "api_ratio": [a50 / t50, a99 / t99],
                        "page_without_ms": [q50 * 1e3, q99 * 1e3],
                        "page_with_ms": [w50 * 1e3, w99 * 1e3],
                        "page_ratio": [w50 / q50, w99 / q99]})
    return results


def trivial_urlconf(name="benchmark_urls"):
    """A URLconf module (registered as ``name``): the trivial DRF endpoint at TRIVIAL_URL,
    then the demo's own URLs."""
    from django.conf import settings  # noqa: PLC0415
    from django.urls import include, path  # noqa: PLC0415
    from rest_framework.response import Response  # noqa: PLC0415
    from rest_framework.views import APIView  # noqa: PLC0415

    from shop_recs.api.views import PublicView  # noqa: PLC0415

    class Trivial(APIView):
        # The FBT view's permission and throttle classes: the ratio measures the
        # recommendation work, not a difference in DRF machinery.
        permission_classes = PublicView.permission_classes
        throttle_classes = PublicView.throttle_classes

        def get(self, request):
            return Response({"ok": True})

    module = type(sys)(name)
    module.urlpatterns = [path(TRIVIAL_URL.strip("/") + "/", Trivial.as_view()),
                          path("", include(settings.ROOT_URLCONF))]
    sys.modules[name] = module
    return name


def run(args):
    from django.conf import settings  # noqa: PLC0415
    from django.test import override_settings  # noqa: PLC0415

    trivial_urlconf()
    # No ``setup_test_environment()``: its instrumented template rendering (a signal and a
    # copy of every context) is not what a shop runs. ``testserver`` is an allowed host.
    rates = {"shop_recs.read": None, "shop_recs.events": None, "shop_recs.staff": None}
    cache = (settings.CACHES if args.cache != "locmem-300" else
             {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})["default"]
    label = (f"{cache['BACKEND'].rsplit('.', 1)[-1]}"
             f" (MAX_ENTRIES {cache.get('OPTIONS', {}).get('MAX_ENTRIES', 300)})"
             if "locmem" in cache["BACKEND"] else cache["BACKEND"].rsplit(".", 1)[-1])
    label += ", API caller without cookies" if args.headless else ", API caller = the shopper"
    caches = settings.CACHES
    if args.cache == "locmem-300":
        caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(ROOT_URLCONF="benchmark_urls", DEBUG=False, CACHES=caches,
                           SHOP_RECS={**settings.SHOP_RECS, "THROTTLE_RATES": rates}):
        return label, measure(args, label)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", type=Path, help="a database made with --build (copied)")
    source.add_argument("--build", type=Path, help="import + train into this new database")
    source.add_argument("--synthetic", type=int, metavar="N", help="N synthetic products")
    parser.add_argument("--cache", choices=["locmem", "locmem-300", "redis"], default="locmem")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--time-budget", type=float, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--headless", action="store_true",
                        help="the API's caller sends no cookies (default: the shopper, with "
                             "the session the demo's pages start)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        if args.build:
            setup_django(args.build, work)
            build_online_retail(args.time_budget)
            return
        db = work / "serving.sqlite3"
        if args.db:
            shutil.copy(args.db, db)
        with private_redis() if args.cache == "redis" else contextlib.nullcontext() as url:
            setup_django(db, work, url)
            if args.synthetic:
                started = time.perf_counter()
                build_synthetic(args.synthetic, args.seed)
                print(f"built in {time.perf_counter() - started:.0f} s")
            else:
                from django.core.management import call_command  # noqa: PLC0415

                from shop_recs import fallbacks  # noqa: PLC0415
                from shop_recs.models import FallbackRecommendation  # noqa: PLC0415

                call_command("migrate", verbosity=0)
                if not FallbackRecommendation.objects.exists():
                    print(f"fallback lists: {fallbacks.refresh()}")
            label, results = run(args)
        if args.json:
            args.json.write_text(json.dumps({"cache": label, "rows": results}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
