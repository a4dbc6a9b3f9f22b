"""Benchmark: the analytics roll-up over N events, and the analytics page over its result.

    python -m benchmarks.rollups [--events 1000000] [--days 365] [--repeat 3] [--json PATH]
                                 [--keep PATH] [--db PATH]
    scripts/services.sh run -- sh -c \
        '.venv/bin/python -m benchmarks.rollups --database-url "$PG_DATABASE_URL"'

Builds a throw-away SQLite database (or fills the empty PostgreSQL database of
``--database-url``) with plain-SQL bulk inserts: ``--events`` interactions
spread over ``--days`` days, generated as shopping sessions (views; FBT, cart and API widget
impressions of three successive training runs, some with one of 200 bundles; clicks; adds to
cart, some from a widget; orders of about a third of the sessions, whose lines carry the
widget's attribution when they were added from one). Then it times the first roll-up of
every day (``rollups.rollup_days(rollups.pending_days())``, what the periodic task does on
its first run), samples the process's resident memory while it runs, times a re-run of one
day, and times the admin analytics page (median of ``--repeat`` after a warm-up, and its
query count) for the default 30 days, the whole range, a widget filter and the CSV export.
``--db`` times the roll-up and the page of a database kept earlier with ``--keep``
(its roll-ups are deleted first, so the first roll-up is timed again). Prints figures
(and writes JSON); asserts nothing.
"""

import argparse
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

PRODUCTS = 5_000
BUNDLES = 200
CHUNK = 50_000
WIDGETS = ("fbt", "fbt", "fbt", "cart", "api")


def rss_mib():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sessions(n_events, days, seed=0):
    """Yield rows (kind, visitor, order, quantity, price, ts, widget, run, bundle, product)
    of shopping sessions until ``n_events`` rows, in time order."""
    rng = random.Random(seed)
    # The days up to yesterday: the first roll-up covers exactly them (and today).
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start -= timedelta(days=days)
    span = days * 24 * 3600 - 3600
    made, session = 0, 0
    while made < n_events:
        session += 1
        base = start + timedelta(seconds=span * made // n_events)
        visitor = f"v{session}"
        run = 1 + 3 * made // n_events  # three runs served one after the other
        rows = []

        def add(kind, product, minute, order="", quantity=1, price=None, widget="",
                bundle=None, rows=rows, base=base, visitor=visitor, run=run):
            ts = (base + timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M:%S")
            rows.append((kind, visitor, order, quantity, price, ts, widget,
                         run if widget else None, bundle, product))

        viewed = [rng.randrange(PRODUCTS) + 1 for _ in range(rng.randint(4, 12))]
        for minute, product in enumerate(viewed):
            add("view", product, minute)
        widget = rng.choice(WIDGETS)
        bundle = rng.randrange(BUNDLES) + 1 if widget == "fbt" and rng.random() < 0.3 else None
        shown = [rng.randrange(PRODUCTS) + 1 for _ in range(3)]
        for _ in range(rng.randint(1, 3)):
            for product in shown:
                add("widget_impression", product, 2, widget=widget, bundle=bundle)
        cart = []
        if rng.random() < 0.3:
            add("widget_click", shown[0], 3, widget=widget, bundle=bundle)
        if rng.random() < 0.25:
            add("cart_add", shown[0], 4, widget=widget, bundle=bundle)
            cart.append((shown[0], widget, bundle))
        for product in viewed[:rng.randint(0, 2)]:
            add("cart_add", product, 5)
            cart.append((product, "", None))
        if cart and rng.random() < 0.6:
            order = f"o{session}"
            for product, line_widget, line_bundle in cart:
                add("purchase", product, 30, order=order, quantity=rng.randint(1, 4),
                    price=f"{rng.randint(50, 5000) / 100:.2f}", widget=line_widget,
                    bundle=line_bundle)
        made += len(rows)
        yield from rows[:max(0, n_events - made + len(rows))]


def build(n_events, days):
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from shop_recs.models import Bundle, Product, TrainingRun

    Product.objects.bulk_create(Product(sku=f"SKU{i:05d}", name=f"<b>PRODUCT</b> {i}",
                                        price="9.99") for i in range(PRODUCTS))
    for _ in range(3):
        TrainingRun.objects.create(status="succeeded", pending=None)
    Bundle.objects.bulk_create(Bundle(pk=i, anchor_id=i, status="approved", signature=f"s{i}")
                               for i in range(1, BUNDLES + 1))
    User.objects.create_superuser("bench", "bench@example.com", "bench")
    sql = ("INSERT INTO shop_recs_interaction (kind, visitor_id, order_id, quantity, unit_price,"
           " timestamp, widget, run_ref, bundle_ref, product_id, source) "
           "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'server')")
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":  # a larger page cache for the build only
            cursor.execute("PRAGMA cache_size = -524288")
        chunk = []
        for row in sessions(n_events, days):
            chunk.append(row)
            if len(chunk) == CHUNK:
                with transaction.atomic():  # one transaction per chunk keeps the WAL small
                    cursor.executemany(sql, chunk)
                chunk = []
        if chunk:
            with transaction.atomic():
                cursor.executemany(sql, chunk)
        if connection.vendor == "sqlite":
            cursor.execute("ANALYZE")
    connection.close()  # the roll-up starts on a fresh connection with the default cache


def timed(client, url, repeat):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)
    seconds, cpu = [], []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started, cpu_started = time.perf_counter(), time.process_time()
            response = client.get(url)
            seconds.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    # CPU time (SQLite runs in this process) is what a shared, busy machine cannot inflate.
    return {"status": response.status_code, "median_s": statistics.median(seconds),
            "median_cpu_s": statistics.median(cpu),
            "queries": len(queries), "bytes": len(response.content)}


def measure(repeat):
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    from shop_recs.analytics import rollups
    from shop_recs.analytics.models import ShopDayStat, WidgetDayStat
    from shop_recs.models import Interaction

    days = rollups.pending_days()
    samples = []

    def progress(day):
        samples.append(rss_mib())

    rss_before = rss_mib()
    started, cpu = time.perf_counter(), time.process_time()
    summary = rollups.rollup_days(days, progress=progress)
    rollup_s, rollup_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    busiest = (ShopDayStat.objects.order_by("-orders").values_list("day", flat=True)[0])
    started = time.perf_counter()
    rollups.rollup_day(busiest)
    one_day_s = time.perf_counter() - started
    client = Client()
    client.force_login(User.objects.get(username="bench"))
    url = reverse("admin:shop_recs_widgetdaystat_changelist")
    first, last = days[0], busiest
    pages = {
        "analytics (default 30 days)": url,
        "analytics (whole range)": f"{url}?start={first}&end={days[-1]}",
        "analytics widget=fbt (whole range)": f"{url}?start={first}&end={days[-1]}&widget=fbt",
        "analytics CSV (whole range)": f"{url}?start={first}&end={days[-1]}&format=csv",
        "analytics one day": f"{url}?start={last}&end={last}",
    }
    return {
        "events": Interaction.objects.count(),
        "days": summary["days"], "rollup_rows": WidgetDayStat.objects.count(),
        "rollup_s": rollup_s, "rollup_cpu_s": rollup_cpu_s,
        "load_average": os.getloadavg(),
        "rerun_busiest_day_s": one_day_s,
        "rss_mib": {"before": rss_before, "after_10pct": samples[len(samples) // 10],
                    "after_50pct": samples[len(samples) // 2], "after": samples[-1],
                    "max_sampled": max(samples)},
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "pages": {name: timed(client, page, repeat) for name, page in pages.items()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="build the database here and keep it")
    parser.add_argument("--db", type=Path, help="time this database kept with --keep")
    parser.add_argument("--database-url", help="an empty PostgreSQL database to use instead")
    args = parser.parse_args(argv)
    if min(args.events, args.days, args.repeat) < 1:
        parser.error("--events, --days and --repeat must be positive")
    if args.keep and args.keep.exists():
        parser.error(f"{args.keep} exists; give a new path")
    if args.db and not args.db.exists():
        parser.error(f"{args.db} does not exist")
    tmp = tempfile.TemporaryDirectory()
    os.environ["SHOP_DEMO_VAR_DIR"] = tmp.name
    os.environ["SHOP_DEMO_SQLITE"] = str(args.db or args.keep or Path(tmp.name) / "rollups.sqlite3")
    os.environ["DJANGO_DEBUG"] = "0"
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    if args.db:
        from shop_recs.analytics.models import ShopDayStat, WidgetDayStat

        WidgetDayStat.objects.all().delete()
        ShopDayStat.objects.all().delete()
    else:
        build(args.events, args.days)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        print(f"built {args.events:,} events over {args.days} days in "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    build_s = time.perf_counter() - started
    figures = {"args": {**vars(args), "database_url": bool(args.database_url)},
               "database": connection.vendor, "build_s": build_s, **measure(args.repeat)}
    print(f"events {figures['events']:,}; roll-up of {figures['days']} days into "
          f"{figures['rollup_rows']:,} rows: {figures['rollup_s']:.1f} s "
          f"(CPU {figures['rollup_cpu_s']:.1f} s, load {figures['load_average'][0]:.1f}) "
          f"({figures['events'] / figures['rollup_s']:,.0f} events/s); "
          f"re-run of the busiest day: {1000 * figures['rerun_busiest_day_s']:.0f} ms")
    rss = figures["rss_mib"]
    print(f"resident memory (MiB): before {rss['before']:.0f}, after 10 % of the days "
          f"{rss['after_10pct']:.0f}, 50 % {rss['after_50pct']:.0f}, end {rss['after']:.0f}; "
          f"peak of the process (build included) {figures['max_rss_mib']:.0f}")
    print(f"{'page':<38} {'status':>6} {'median ms':>10} {'CPU ms':>8} {'queries':>8}")
    for name, f in figures["pages"].items():
        print(f"{name:<38} {f['status']:>6} {1000 * f['median_s']:>10.1f} "
              f"{1000 * f['median_cpu_s']:>8.1f} {f['queries']:>8}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
