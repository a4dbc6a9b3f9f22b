"""Benchmark: the admin's interaction and bundle screens on a million rows.

    python -m benchmarks.admin_changelist [--interactions 1000000] [--bundles 1000000]
                                          [--repeat 3] [--json PATH] [--keep PATH]
    python -m benchmarks.admin_changelist --db db.sqlite3   # time an existing database


Builds a throw-away SQLite database (bulk inserts: 5,000 products, ``--interactions``
interactions over two years, ``--bundles`` bundles of an anchor and two items, three
training runs), then times each admin page through Django's test client as a logged-in
superuser: the median of ``--repeat`` requests after one warm-up, and the queries each
made. The review screen is timed cold (its revenue aggregate not cached yet) and warm.
For scale it also times the queries the changelists no longer make: a full COUNT(*),
``date_hierarchy``'s list of years, a ``LIKE '%…%'`` order search and a
``SELECT DISTINCT`` of widget names. Prints figures (and writes JSON); asserts nothing.
With ``--db`` nothing is built: the pages of that database (the demo's, say) are timed
inside a transaction that is rolled back, so its temporary superuser is not kept.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

PRODUCTS = 5_000
CHUNK = 50_000


def build(n_interactions, n_bundles, seed=0):
    """Bulk-insert the rows with plain SQL (the ORM would take minutes for this)."""
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from shop_recs.models import Product, TrainingRun

    rng = random.Random(seed)
    Product.objects.bulk_create(
        Product(sku=f"SKU{i:05d}", name=f"PRODUCT {i} " + rng.choice(
            ["JUMBO SHOPPER VINTAGE RED PAISLEY", "WHITE HANGING HEART T-LIGHT HOLDER",
             "SET OF 3 CAKE TINS PANTRY DESIGN", "REGENCY CAKESTAND 3 TIER"]),
            price=rng.randint(50, 5000) / 100, currency="GBP",
            category=rng.choice(["kitchen", "garden", "gifts", "party", "storage"]))
        for i in range(PRODUCTS))
    pks = list(Product.objects.values_list("pk", flat=True))
    runs = [TrainingRun.objects.create(status="succeeded", pending=None,
                                       counts={"fbt_rows": 0, "bundles_proposed": n_bundles})
            for _ in range(3)]
    User.objects.create_superuser("bench", "bench@example.com", "bench")
    start = datetime(2010, 1, 1, tzinfo=UTC)
    span = 2 * 365 * 24 * 3600
    kinds = (["purchase"] * 50 + ["view"] * 40 + ["cart_add"] * 5 + ["widget_impression"] * 3
             + ["widget_click"] * 2)
    with connection.cursor() as cursor, transaction.atomic():
        for first in range(0, n_interactions, CHUNK):
            rows = []
            for i in range(first, min(first + CHUNK, n_interactions)):
                kind = rng.choice(kinds)
                ts = start + timedelta(seconds=span * i // n_interactions)
                widget = rng.choice(["fbt", "cart"]) if kind.startswith("widget") else ""
                rows.append((kind, f"v{rng.randrange(50_000)}",
                             f"{i // 20}" if kind == "purchase" else "", rng.randint(1, 12),
                             f"{rng.randint(50, 5000) / 100:.2f}" if kind == "purchase" else None,
                             ts.isoformat(sep=" "), "import" if kind == "purchase" else "server",
                             widget, rng.choice(pks)))
            cursor.executemany(
                "INSERT INTO shop_recs_interaction (kind, visitor_id, order_id, quantity, "
                "unit_price, timestamp, source, widget, product_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
        statuses = ["proposed"] * 6 + ["rejected"] * 3 + ["approved"]
        now = datetime.now(UTC).isoformat(sep=" ")
        for first in range(0, n_bundles, CHUNK):
            rows, items = [], []
            for i in range(first, min(first + CHUNK, n_bundles)):
                orders = rng.randint(2, 400)
                rows.append((i + 1, rng.choice(statuses), "model", rng.random() * 80,
                             json.dumps({"orders_with_all": orders, "lift": rng.random() * 20,
                                         "model_score": rng.random()}),
                             f"sig{i}", "0", now, rng.choice(pks), runs[i % 3].pk))
                a, b = rng.sample(pks, 2)
                items += [(i + 1, a, 1), (i + 1, b, 2)]
            cursor.executemany(
                "INSERT INTO shop_recs_bundle (id, status, source, score, evidence, signature, "
                "discount_percent, created_at, anchor_id, run_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
            cursor.executemany(
                "INSERT OR IGNORE INTO shop_recs_bundleitem (bundle_id, product_id, position) "
                "VALUES (%s, %s, %s)", items)
        cursor.execute("ANALYZE")
    return pks


def timed(client, url, repeat):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm-up (and the status we report)
    seconds = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            seconds.append(time.perf_counter() - started)
    return {"status": response.status_code, "median_s": statistics.median(seconds),
            "queries": len(queries)}


def timed_sql(sql, repeat):
    from django.db import connection

    seconds = []
    with connection.cursor() as cursor:
        for _ in range(repeat):
            started = time.perf_counter()
            cursor.execute(sql)
            cursor.fetchall()
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def measure(user, repeat):
    """Time every admin page as ``user``; return (pages, queries no longer made)."""
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from shop_recs import review
    from shop_recs.models import Bundle, Interaction, TrainingRun

    client = Client()
    client.force_login(user)
    interactions = reverse("admin:shop_recs_interaction_changelist")
    bundles = reverse("admin:shop_recs_bundle_changelist")
    newest = Interaction.objects.order_by("-timestamp").values_list("timestamp", flat=True)[0]
    since = (newest - timedelta(days=7)).strftime("%Y-%m-%d+%H:%M:%S%%2B00:00")
    order_id = Interaction.objects.exclude(order_id="").values_list("order_id", flat=True)[0]
    run = TrainingRun.objects.order_by("-pk").first()
    category = Bundle.objects.values_list("anchor__category", flat=True).first() or ""
    pages = {
        "interactions": interactions,
        "interactions kind=purchase": f"{interactions}?kind__exact=purchase",
        "interactions widget=fbt": f"{interactions}?widget=fbt",
        "interactions source=server": f"{interactions}?source__exact=server",
        "interactions last week": f"{interactions}?timestamp__gte={since}",
        "interactions search order": f"{interactions}?q={order_id}",
        "interactions page 100": f"{interactions}?p=100",
        "interaction detail": reverse("admin:shop_recs_interaction_change",
                                      args=[Interaction.objects.values_list("pk", flat=True)[0]]),
        "bundles": bundles,
        "bundles status=proposed": f"{bundles}?status__exact=proposed",
        "bundles status=approved": f"{bundles}?status__exact=approved",
        "bundles run": f"{bundles}?run__id__exact={run.pk}",
        "bundles category": f"{bundles}?category={category}",
        "bundles sorted by orders": f"{bundles}?o=3",
        "bundle edit": reverse("admin:shop_recs_bundle_change",
                               args=[Bundle.objects.values_list("pk", flat=True)[0]]),
        "training runs": reverse("admin:shop_recs_trainingrun_changelist"),
        "training run": reverse("admin:shop_recs_trainingrun_change", args=[run.pk]),
        "products": reverse("admin:shop_recs_product_changelist"),
    }
    figures = {name: timed(client, url, repeat) for name, url in pages.items()}
    cache.clear()
    started = time.perf_counter()
    first = review.review_queue().after(None)
    figures["review queue (cold cache)"] = {"status": 0, "queries": None,
                                            "median_s": time.perf_counter() - started}
    figures["review screen"] = timed(
        client, reverse("admin:shop_recs_bundle_review", args=[first]), repeat)
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        call_command("shop_recs_runs", "--json", "--limit", "5", stdout=StringIO(),
                     stderr=StringIO())
        seconds = time.perf_counter() - started
    figures["shop_recs_runs --json --limit 5"] = {"status": 0, "median_s": seconds,
                                                  "queries": len(queries)}
    removed = {
        "full COUNT(*) of interactions": "SELECT COUNT(*) FROM shop_recs_interaction",
        "date_hierarchy years": "SELECT DISTINCT django_datetime_trunc('year', timestamp, "
                                "'UTC', 'UTC') FROM shop_recs_interaction",
        "LIKE '%4242%' order search": "SELECT id FROM shop_recs_interaction "
                                      "WHERE order_id LIKE '%4242%' LIMIT 51",
        "DISTINCT widget": "SELECT DISTINCT widget FROM shop_recs_interaction ORDER BY widget",
        "full COUNT(*) of bundles": "SELECT COUNT(*) FROM shop_recs_bundle",
    }
    avoided = {}
    for name, sql in removed.items():
        try:
            avoided[name] = timed_sql(sql, repeat)
        except Exception as exc:  # noqa: BLE001 (a figure we cannot take is reported)
            avoided[name] = f"n/a ({exc})"
    return figures, avoided


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--bundles", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="build the database here and keep it")
    parser.add_argument("--db", type=Path, help="time this SQLite database; build nothing")
    args = parser.parse_args(argv)
    if min(args.interactions, args.bundles) < 1 or args.repeat < 1:
        parser.error("--interactions, --bundles and --repeat must be positive")
    tmp = tempfile.TemporaryDirectory()
    os.environ["SHOP_DEMO_VAR_DIR"] = tmp.name
    if args.keep and args.keep.exists():
        parser.error(f"{args.keep} exists; give a new path")
    if args.db and not args.db.exists():
        parser.error(f"{args.db} does not exist")
    os.environ["SHOP_DEMO_SQLITE"] = str(args.db or args.keep
                                         or Path(tmp.name) / "admin_bench.sqlite3")
    os.environ["DJANGO_DEBUG"] = "0"
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import transaction

    if args.db:
        with transaction.atomic():
            user = User.objects.create_superuser("shop_recs_bench", "bench@example.com", None)
            figures, avoided = measure(user, args.repeat)
            transaction.set_rollback(True)
    else:
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        build(args.interactions, args.bundles)
        print(f"built {args.interactions:,} interactions and {args.bundles:,} bundles "
              f"in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        figures, avoided = measure(User.objects.get(username="bench"), args.repeat)
    print(f"{'page':<32} {'status':>6} {'median ms':>10} {'queries':>8}")
    for name, f in figures.items():
        print(f"{name:<32} {f['status']:>6} {1000 * f['median_s']:>10.1f} "
              f"{f['queries'] if f['queries'] is not None else '-':>8}")
    print("\nqueries the changelists no longer make (median ms):")
    for name, value in avoided.items():
        print(f"  {name:<34} {value if isinstance(value, str) else f'{1000 * value:.1f}'}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "pages": figures,
                                         "avoided_s": avoided}, indent=2, default=str))


if __name__ == "__main__":
    main()
