"""Benchmark: what returning visitors are served, through the ranking code, on real orders.

    python -m benchmarks.returning [--orders FILE --format online_retail|generic]
                                   [--test-frac 0.1] [--time-budget 120] [--json OUT]

The orders before the last ``--test-frac`` of the file are imported into a fresh SQLite
database with the demo's settings and a run is trained on them (``pipeline.run_training``:
the gate, the published lists and the run's returning-visitor policy, decided on its own
validation orders). The later orders are then replayed in time order as customers coming
back: for every order of a customer with earlier purchases and at least two products of the
catalogue, a seeded product of the order is the page (``ranking.frequently_bought_together``,
10 items), its basket-mates are what the customer went on to buy. The same call without the
visitor gives the anonymous list. After each order its lines are recorded (``record_order``),
so a customer's later visit sees them, as a live shop would.

Prints product-page NDCG@10 of both (multi-target, as ``shop_recs.ml.evaluate``), their
ratio with a paired-bootstrap interval, the run's policy with its validation figures and the
offline test figures the run recorded; writes them as JSON with ``--json``. Without
``--orders`` it reads UCI Online Retail 2010-12..2011-12 from ``../shared/data`` (or its
download cache).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def setup_django(folder):
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings"
    os.environ["SHOP_DEMO_SQLITE"] = str(folder / "returning.sqlite3")
    os.environ["SHOP_DEMO_VAR_DIR"] = str(folder)
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    import django  # noqa: PLC0415

    django.setup()


def split_orders(frame, test_frac):
    """(history lines, test orders): orders by their first line's time; the last
    ``test_frac`` of them are the test period."""
    first = frame.groupby("order_id")["timestamp"].min().sort_values(kind="stable")
    n_test = int(round(len(first) * test_frac))
    test_ids = set(first.index[len(first) - n_test:])
    is_test = frame["order_id"].isin(test_ids)
    test = frame[is_test]
    orders = [(order_id, group) for order_id, group in test.groupby("order_id", sort=False)]
    orders.sort(key=lambda pair: pair[1]["timestamp"].min())
    return frame[~is_test], orders


def replay(orders, seed=0, limit=10):
    """Per-query NDCG@10 of the personal and anonymous lists over the replayed orders."""
    from shop_recs import ranking  # noqa: PLC0415
    from shop_recs.ingest import pseudonymise, record_order  # noqa: PLC0415
    from shop_recs.ml.evaluate import multi_ndcg_rows  # noqa: PLC0415
    from shop_recs.models import Interaction, Product  # noqa: PLC0415

    by_sku = {sku: pk for sku, pk in Product.objects.values_list("sku", "pk")}
    products = Product.objects.in_bulk(list(by_sku.values()))
    rng = np.random.default_rng(seed)
    personal, anonymous, sources = [], [], {"history": 0, "other": 0}
    seen_customers = set(Interaction.objects.purchases().exclude(visitor_id="")
                         .values_list("visitor_id", flat=True).distinct())
    for order_id, lines in orders:
        customer = str(lines["customer_id"].iloc[0] or "")
        items = list(dict.fromkeys(by_sku[s] for s in lines["product_id"] if s in by_sku))
        visitor_id = pseudonymise("customer", customer) if customer else ""
        if visitor_id in seen_customers and len(items) >= 2:
            anchor = items[int(rng.integers(len(items)))]
            targets = np.array([i for i in items if i != anchor])
            for out, visitor in ((personal, ranking.Visitor(visitor_id=visitor_id)),
                                 (anonymous, None)):
                result = ranking.frequently_bought_together(products[anchor], limit=limit,
                                                            visitor=visitor)
                shown = [item.product.pk for item in result.items]
                if visitor is not None:
                    for item in result.items:
                        sources["history" if item.source == "history" else "other"] += 1
                top = np.full((1, limit), -1, dtype=np.int64)
                top[0, :len(shown)] = shown
                out.append(float(multi_ndcg_rows(top, [targets], limit)[0]))
        if items:
            when = lines["timestamp"].min().to_pydatetime()
            record_order(f"replay-{order_id}", [{"product": products[pk]} for pk in items],
                         visitor_id=visitor_id, timestamp=when)
        if visitor_id:
            seen_customers.add(visitor_id)
    return np.array(personal), np.array(anonymous), sources


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=Path, help="an order file (default: Online Retail)")
    parser.add_argument("--format", default="online_retail", choices=["online_retail", "generic"])
    parser.add_argument("--test-frac", type=float, default=0.1)
    parser.add_argument("--time-budget", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-returning-"))
    try:
        setup_django(folder)
        from django.core.management import call_command  # noqa: PLC0415

        from shop_demo.datasets import fetch_online_retail  # noqa: PLC0415
        from shop_recs import pipeline  # noqa: PLC0415
        from shop_recs.importer import import_orders  # noqa: PLC0415
        from shop_recs.ml.gate import paired_bootstrap  # noqa: PLC0415
        from shop_recs.ml.orders import read_orders  # noqa: PLC0415
        from shop_recs.models import TrainingRun  # noqa: PLC0415
        from shop_recs.runs import request_training  # noqa: PLC0415

        path = args.orders or next(p for p in fetch_online_retail()
                                   if "2010-12_2011-12" in p.name)
        frame = read_orders([path], args.format)
        history, test = split_orders(frame, args.test_frac)
        lines = folder / "history.csv"
        columns = ["order_id", "product_id", "timestamp", "customer_id", "quantity",
                   "unit_price", "product_name", "category"]
        history[columns].to_csv(lines, index=False)
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        result = import_orders([lines], fmt="generic")
        print(f"imported {result.report.kept:,} lines before the test period "
              f"({time.perf_counter() - started:.0f} s); {len(test):,} test orders")
        run = request_training(trigger="benchmark", config={"time_budget_s": args.time_budget},
                               broker_check=False, enqueue=False)
        status = pipeline.run_training(run.pk)
        run = TrainingRun.objects.get(pk=run.pk)
        if status != TrainingRun.Status.SUCCEEDED:
            sys.exit(f"training failed: {run.error}")
        policy = run.serving_policy
        print(f"run {run.pk}: shipped {run.shipped_model}; policy {policy.get('mode')} "
              f"(weight {policy.get('weight')}, half-life {policy.get('half_life')}): "
              f"{policy.get('reason')}")
        started = time.perf_counter()
        personal, anonymous, sources = replay(test, args.seed)
        spent = time.perf_counter() - started
        mean, low, high = paired_bootstrap(personal, anonymous, 2000, 0.95, args.seed)
        base = float(anonymous.mean())
        figures = {
            "queries": int(len(personal)), "personal_ndcg10": float(personal.mean()),
            "anonymous_ndcg10": base, "ratio": float(personal.mean()) / base if base else None,
            "gain_interval_pct": [100 * low / base, 100 * high / base] if base else None,
            "history_items_shown_share": sources["history"] / max(sum(sources.values()), 1),
            "replay_s": spent, "policy": policy, "shipped": run.shipped_model,
            "offline_test": policy.get("test"),
        }
        print(f"\nreturning visitors, served through shop_recs.ranking "
              f"({figures['queries']:,} test orders of customers with earlier orders):")
        print(f"  anonymous list  NDCG@10 {base:.4f}")
        print(f"  as served       NDCG@10 {figures['personal_ndcg10']:.4f}  "
              f"ratio {figures['ratio']:.3f}  "
              f"(gain 95% interval {figures['gain_interval_pct'][0]:+.1f}% to "
              f"{figures['gain_interval_pct'][1]:+.1f}%)")
        print(f"  items from the visitor's history: {figures['history_items_shown_share']:.1%}"
              f" of those shown; replay {spent:.0f} s")
        if policy.get("test"):
            print(f"  offline (ml.policy on the run's own test split): {policy['test']}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2, default=str))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
