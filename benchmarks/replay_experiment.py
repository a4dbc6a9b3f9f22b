"""Replay real held-out Online Retail orders as shoppers through an A/B experiment.

    python -m benchmarks.replay_experiment [--file NAME] [--holdout 0.1] [--shoppers N]
        [--adopt 0.5] [--aa-seeds 200] [--aa-check] [--skip-ab] [--epochs 2] [--seed 0]
        [--shop DIR] [--log PATH]

What it does, end to end, with the code staff use:

1. imports the order file (default: the 2010-12..2011-12 year, found like the demo finds its
   data: ``shop_demo.datasets.fetch_online_retail``) into a temporary SQLite shop, holds out
   the last ``--holdout`` of the orders by time (deleted from the database, kept as
   shoppers), trains a run on the rest (``pipeline.run_training``, ``--epochs``) and serves it;
2. creates an experiment *no widget* (control) vs *the serving run* (weights 1:1) through the
   models the admin writes, and starts it (``experiments.start``);
3. replays every held-out order as one new shopper (a fresh Django test client: a session)
   through the real views: the product page of the order's first product (the widget tag
   assigns the arm and renders it), the exposure and impression beacons ``widget.js`` would
   send, then the cart and the checkout of the demo storefront;
4. stops it, rolls it up (``experiment_rollups``, the hourly task's code) and reads the
   results with ``shop_recs.analytics.results`` (exposures, attribution, stats).

Behaviour model (documented, deliberately simple): a shopper shown the widget examines it
top-down; the item at position k (1-based) that is in their real basket is clicked and added
from the widget (its signed attribution travels with it) with probability ``adopt / k``;
every other product of the real basket is added to the cart as they really bought it (the
demo cart takes quantity 1 per product). A shopper never buys what they did not really buy,
so the widget moves *attribution*, not the basket: the attributed revenue differs between
the arms, total revenue per visitor should not. Prices are the catalogue's.

A/A through the code staff use: ``--aa-seeds`` experiments, each with two arms serving the
serving run and a fresh salt (``experiments.start``), each replayed with its own behaviour
seed by ``replay_aa.replay_fast``: the calls the views make, in their order (the widget tag's
``experiments.assign``, the exposure endpoint's ``log_exposure``, the events endpoint's
``record_events``, the cart form's attribution, the checkout's ``record_order``), then the
roll-up (``experiment_rollups``) and the results page's statistics (``results.report``).
What does not depend on the seed is done once: the import and training (``--shop``), and
the product pages' widgets, rendered through the real view (both A/A arms show the same
items; only who is exposed and what they do changes). ``--aa-check`` first replays one A/A
through the HTTP views and the fast path with the same salt and shoppers and compares the
per-arm figures. The rate of "significant" verdicts at alpha = 5 % is the false-positive
rate (with its exact binomial interval). SRM: all exposed visitors of the A/B split 45/55
by the same hash (a planted broken assignment), analysed as if the weights were 1:1.

Prints a table, and writes it to ``--log`` when given. Timings are figures, never asserted.
The A/A code lives in ``benchmarks.replay_aa``.
"""

import argparse
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HELD = "held_out_orders.json"
PRODUCT_ID = re.compile(r'data-product-id="([^"]+)"')


def parse_widget(html):
    """``(ids in display order, events token, choices token, exposure token, run)``."""
    section = re.search(r'<section class="shop-recs shop-recs-fbt".*?</section>', html, re.S)
    exposure = re.search(r'data-exposure="([^"]+)"', html)
    if section is None:
        return [], "", "", exposure.group(1) if exposure else "", None
    text = section.group(0)
    token = re.search(r'data-token="([^"]+)"', text).group(1)
    forms = re.findall(r'name="attribution" value="([^"]+)"', text)
    run = re.search(r'data-run-id="(\d+)"', text)
    return (PRODUCT_ID.findall(text), token, forms[-1] if forms else token,
            exposure.group(1) if exposure else "", int(run.group(1)) if run else None)


def saved_shop(args, log):
    """The held-out orders of the shop saved in ``--shop`` (copied in by ``main``), or None."""
    import json

    if args.shop is None or not (args.shop / HELD).exists():
        return None
    held = json.loads((args.shop / HELD).read_text())
    log(f"reused the trained shop of {args.shop} ({len(held):,} held-out orders)")
    return held


def shop_with_holdout(args, log):
    """Import, hold out the last orders, train and serve; return the held-out orders."""
    held = saved_shop(args, log)
    if held is not None:
        return held
    from django.db.models import Min

    from shop_demo.datasets import fetch_online_retail
    from shop_recs import fallbacks, pipeline
    from shop_recs.importer import import_orders
    from shop_recs.models import Interaction, TrainingRun
    from shop_recs.runs import request_training

    paths = fetch_online_retail(download_if_missing=False)
    paths = [p for p in paths if args.file in p.name] or paths[-1:]
    started = time.monotonic()
    result = import_orders(paths, fmt="online_retail")
    log(f"imported {result.report.read:,} lines of {', '.join(p.name for p in paths)} "
        f"in {time.monotonic() - started:.0f} s")
    purchases = Interaction.objects.filter(kind=Interaction.Kind.PURCHASE).exclude(order_id="")
    firsts = sorted(purchases.values("order_id").annotate(t=Min("timestamp"))
                    .values_list("t", "order_id"))
    cut = firsts[int(len(firsts) * (1 - args.holdout))][0]
    held = defaultdict(list)
    for order_id, product, quantity in (purchases.filter(timestamp__gte=cut)
                                        .order_by("order_id", "pk")
                                        .values_list("order_id", "product_id", "quantity")):
        held[order_id].append((product, quantity))
    purchases.filter(timestamp__gte=cut).delete()
    log(f"held out {len(held):,} orders from {cut:%Y-%m-%d %H:%M} on; training on "
        f"{purchases.values('order_id').distinct().count():,}")
    started = time.monotonic()
    run = request_training(trigger="benchmark", config={"device": "cpu"}, broker_check=False,
                           enqueue=False)
    pipeline.run_training(run.pk)
    fallbacks.refresh()
    run.refresh_from_db()
    serving = TrainingRun.objects.filter(is_active=True).first()
    log(f"run {run.pk}: {run.status}, shipped {run.shipped_model or '-'}, serving "
        f"{serving.pk if serving else None}, {time.monotonic() - started:.0f} s")
    if serving is None:
        raise SystemExit(f"no run serves (gate: {run.gate}); nothing to test")
    orders = [items for _, items in sorted(held.items())]
    if args.shop is not None:  # the import and training do not depend on the seed: keep them
        import json
        import shutil

        from django.db import connection

        connection.close()
        shutil.copytree(os.environ["SHOP_DEMO_VAR_DIR"], args.shop, dirs_exist_ok=True)
        (args.shop / HELD).write_text(json.dumps(orders))
        log(f"saved the trained shop in {args.shop}")
    return orders


def replay(orders, args, log, seed=None):
    """Each held-out order as a shopper through the views; returns counters."""
    from django.test import Client
    from django.urls import reverse

    from shop_demo.forms import MAX_PRODUCTS_PER_ADD, purchasable_products

    rng = np.random.default_rng(args.seed if seed is None else seed)
    # The cart refuses a whole add with one product it cannot sell (no price, inactive).
    sellable = {str(pk) for pk in purchasable_products().values_list("pk", flat=True)}
    cart_add, checkout = reverse("shop_demo:cart_add"), reverse("shop_demo:checkout")
    exposure_url = reverse("shop_recs:api-exposure")
    events_url = reverse("shop_recs:api-events")
    counts = defaultdict(int)
    started = time.monotonic()
    for number, items in enumerate(orders[:args.shoppers or None], 1):
        client = shopper_client(seed if seed is not None else args.seed, number)
        basket = {str(pk) for pk, _ in items} & sellable
        anchor = items[0][0]
        response = client.get(reverse("shop_demo:product", args=[anchor]))
        if response.status_code != 200:
            counts["anchor unavailable"] += 1
            continue
        ids, token, choices, exposure, run = parse_widget(response.content.decode())
        if exposure:  # the widget (or the empty spot of "no widget") scrolled into view
            client.post(exposure_url, {"token": exposure}, content_type="application/json")
            counts["exposed"] += 1
        if ids:
            client.post(events_url, {"events": [
                {"kind": "widget_impression", "product": pk, "attribution": token}
                for pk in ids]}, content_type="application/json")
        adopted = [pk for k, pk in enumerate(ids, 1)
                   if pk in basket and rng.random() < args.adopt / k]
        for pk in adopted:
            client.post(events_url, {"events": [{"kind": "widget_click", "product": pk,
                                                 "attribution": token}]},
                        content_type="application/json")
            form = {"product": pk, "quantity": 1, "widget": "fbt", "attribution": choices}
            if run:
                form["run"] = run
            client.post(cart_add, form)
        counts["adopted"] += len(adopted)
        rest = sorted(pk for pk in basket if pk not in adopted)
        for start in range(0, len(rest), MAX_PRODUCTS_PER_ADD):
            client.post(cart_add, {"product": rest[start:start + MAX_PRODUCTS_PER_ADD],
                                   "quantity": 1})
        response = client.post(checkout, {"name": "", "email": ""})
        counts["orders"] += response.headers.get("Location", "").endswith(
            reverse("shop_demo:checkout_done"))
        if number % 500 == 0:
            log(f"  {number:,} shoppers, {time.monotonic() - started:.0f} s")
    counts["seconds"] = time.monotonic() - started
    return counts


def shopper_key(seed, number):
    """The session key of shopper ``number`` of replay ``seed`` (the same in both modes)."""
    return f"replay{seed:05d}n{number:07d}".ljust(32, "0")


def shopper_client(seed, number):
    """A test client whose session has :func:`shopper_key` (a new visitor)."""
    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import Client

    store = SessionStore()
    store._session_key = shopper_key(seed, number)
    store.save(must_create=True)
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    return client


def fmt(d, money=True):
    if d.diff is None:
        return "-"
    f = "{:,.3f}" if money else "{:.4f}"
    return (f"{f.format(d.diff)} [{f.format(d.low)} … {f.format(d.high)}] "
            f"p={d.p_value:.3g}")


def report_ab(experiment, log):
    from shop_recs.analytics import results

    data = results.arm_data(experiment)
    report = results.report(experiment)
    log("\nA/B: arm | visitors | orders | conversion | revenue/visitor | widget revenue/visitor"
        " | AOV | widget CTR")
    for row in report.arms:
        log(f"  {row['name']:<12} | {row['visitors']:>6,} | {row['orders']:>6,} | "
            f"{row['conversion'] or 0:.4f} | {row['rpv'] or 0:>9,.2f} | "
            f"{row['widget_rpv'] or 0:>7,.2f} | {row['aov'] or 0:>8,.2f} | "
            f"{row['ctr'] if row['ctr'] is not None else float('nan'):.4f}")
    comparison = report.comparisons[0]
    for key, label in (("widget_rpv", "widget-attributed revenue / visitor"),
                       ("rpv", "revenue / visitor"), ("conversion", "conversion"),
                       ("aov", "average order value")):
        log(f"  difference, {label}: {fmt(comparison.metrics[key], key != 'conversion')}")
    log(f"  SRM p = {report.srm.p_value:.3g} ({'flagged' if report.srm.flagged else 'ok'}); "
        f"planned {report.planned:,} per arm; verdict [{report.verdict.level}]: "
        f"{report.verdict.text}")
    return data


def planted_srm(everyone, log):
    """All exposed visitors split 45/55 by the assignment hash, analysed as 1:1."""
    from shop_recs.analytics import experiments, stats

    cut = np.array([experiments.bucket("planted", f"u{u}") < 0.45 for u in range(everyone)])
    srm = stats.srm_check([int(cut.sum()), int((~cut).sum())], [1, 1])
    log(f"planted 45/55 split of {everyone:,} visitors: {srm.observed} -> SRM p = "
        f"{srm.p_value:.2g}, {'flagged' if srm.flagged else 'NOT flagged'}")


def run_experiment(name, arms, orders, args, seed, log, sequential=False, widgets=None,
                   salt=None):
    """Create ``arms`` ((name, kind)) as staff would, start, replay the shoppers through the
    views with ``seed``, stop, roll up (the hourly task's code) and return
    ``(experiment, counts)``."""
    from shop_recs.analytics import experiment_rollups, experiments
    from shop_recs.models import Arm, Experiment

    experiment = Experiment.objects.create(name=name, placement=Experiment.Placement.FBT,
                                           sequential=sequential,
                                           **({"salt": salt} if salt else {}))
    for position, (arm_name, kind) in enumerate(arms):
        Arm.objects.create(experiment=experiment, name=arm_name, position=position, kind=kind)
    experiment = experiments.start(experiment)  # a fresh salt: a fresh split
    if widgets is None:
        counts = replay(orders, args, log, seed=seed)
    else:
        from benchmarks.replay_aa import replay_fast

        counts = replay_fast(orders, args, seed, widgets)
    experiment = experiments.stop(experiment)
    experiment_rollups.rollup_experiment(experiment)
    return experiment, counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default="2010-12_2011-12")
    parser.add_argument("--holdout", type=float, default=0.1)
    parser.add_argument("--shoppers", type=int, default=0, help="at most this many (0: all)")
    parser.add_argument("--adopt", type=float, default=0.5)
    parser.add_argument("--aa-seeds", type=int, default=200)
    parser.add_argument("--skip-ab", action="store_true", help="only the A/A replays")
    parser.add_argument("--aa-check", action="store_true", help=(
        "first replay one A/A through the HTTP views and through the fast path: the same"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--shop", type=Path, help=(
        "a folder: the imported and trained shop is saved there on the first run and "
        "reused by the next ones (the seed changes only the replay)"))
    args = parser.parse_args(argv)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    log_path = args.log
    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)

    tmp = tempfile.TemporaryDirectory()
    if args.shop is not None and (args.shop / HELD).exists():
        import shutil

        shutil.copytree(args.shop, tmp.name, dirs_exist_ok=True)
    os.environ["SHOP_DEMO_VAR_DIR"] = tmp.name
    os.environ["SHOP_DEMO_SQLITE"] = str(Path(tmp.name) / "replay.sqlite3")
    os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings"
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django
    from django.conf import settings
    from django.core.management import call_command
    from django.test.utils import override_settings, setup_test_environment

    django.setup()
    setup_test_environment()  # the test client's ALLOWED_HOSTS and in-memory e-mail
    call_command("migrate", verbosity=0)
    recs = {**getattr(settings, "SHOP_RECS", {}), "EPOCHS": args.epochs,
            "EVALUATE_REFIT": False,
            # One loopback client stands for every shopper: no per-client throttles.
            "THROTTLE_RATES": {"shop_recs.read": None, "shop_recs.events": None,
                               "shop_recs.staff": None}}
    with override_settings(SHOP_RECS=recs):
        from shop_recs.models import Arm

        log(f"replay_experiment {' '.join(argv or sys.argv[1:])} at {stamp} UTC")
        orders = shop_with_holdout(args, log)
        if not args.skip_ab:
            experiment, counts = run_experiment(
                "trained run vs no widget", [("no widget", Arm.Kind.NO_WIDGET),
                                             ("trained run", Arm.Kind.ACTIVE_RUN)],
                orders, args, args.seed, log)
            log(f"replayed {counts['orders']:,} orders ({counts['exposed']:,} exposed, "
                f"{counts['adopted']:,} items added from the widget) in "
                f"{counts['seconds']:.0f} s")
            data = report_ab(experiment, log)
            planted_srm(sum(a.visitors for a in data), log)
        if args.aa_seeds:
            from benchmarks.replay_aa import aa_through_views

            aa_through_views(orders, args, log)
    if log_path is not None:
        log_path.write_text("\n".join(lines) + "\n")
        print(f"written to {log_path}")


if __name__ == "__main__":
    main()
