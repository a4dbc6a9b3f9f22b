"""Replay real held-out Online Retail orders as shoppers through an A/B experiment.

    python -m benchmarks.replay_experiment [--file NAME] [--holdout 0.1] [--shoppers N]
        [--adopt 0.5] [--aa-seeds 200] [--epochs 2] [--seed 0] [--log PATH]

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
4. reads the results with ``shop_recs.analytics.results`` (exposures, attribution, stats).

Behaviour model (documented, deliberately simple): a shopper shown the widget examines it
top-down; the item at position k (1-based) that is in their real basket is clicked and added
from the widget (its signed attribution travels with it) with probability ``adopt / k``;
every other product of the real basket is added to the cart as they really bought it (the
demo cart takes quantity 1 per product). A shopper never buys what they did not really buy,
so the widget moves *attribution*, not the basket: the attributed revenue differs between
the arms, total revenue per visitor should not. Prices are the catalogue's.

A/A: the visitors of the *serving run* arm all saw the same thing, so re-splitting them with
``--aa-seeds`` other salts (``experiments.choose``, 1:1) gives A/A experiments on real
outcomes; the rate of "significant" differences at alpha = 5 % is the false-positive rate.
SRM: all exposed visitors split 45/55 by the same hash (a planted broken assignment),
analysed as if the weights were 1:1.

Prints a table and writes it to ``--log`` (default ``/work/notes/s3/replay_<time>.log`` when
that folder exists). Timings are figures, never asserted.
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


def widget_cache(orders, args):
    """``{anchor: parse_widget(...) or None}``: what each shopper's product page shows,
    rendered once through the real view while no experiment runs. Both arms of an A/A
    serve the serving run, so what the widget shows does not depend on the seed (only who
    sees it, what they do, and what is recorded do); None: the page was not available."""
    from django.test import Client
    from django.urls import reverse

    client, found = Client(), {}
    for items in orders[:args.shoppers or None]:
        anchor = items[0][0]
        if anchor not in found:
            response = client.get(reverse("shop_demo:product", args=[anchor]))
            found[anchor] = (parse_widget(response.content.decode())
                             if response.status_code == 200 else None)
    return found


def replay_fast(orders, args, seed, widgets):
    """:func:`replay` without the HTTP layer and the page rendering (``widgets``): each
    shopper calls what the views call, in the same order, with the same random draws:
    ``experiments.assign`` (the widget tag), ``experiments.log_exposure`` (the exposure
    endpoint), ``ingest.record_events`` with the tokens' attribution (the events endpoint),
    the cart form's attribution and ``ingest.record_order`` (the checkout). Cart adds are
    not recorded: no experiment figure reads them."""
    from django.db import transaction

    with transaction.atomic():  # one commit per replay, not three per shopper
        return _replay_fast(orders, args, seed, widgets)


def _replay_fast(orders, args, seed, widgets):
    from django.utils import timezone

    from shop_demo.forms import AttributionForm, purchasable_products
    from shop_recs.analytics import experiments
    from shop_recs.attribution import read_token
    from shop_recs.conf import recs_settings
    from shop_recs.ingest import pseudonymise, record_events, record_order
    from shop_recs.products import get_adapter
    from shop_recs.ranking import Visitor

    rng = np.random.default_rng(seed)
    products = {str(p.pk): p for p in purchasable_products()}
    adapter = get_adapter()
    counts = defaultdict(int)
    started = time.monotonic()
    for number, items in enumerate(orders[:args.shoppers or None], 1):
        widget = widgets.get(items[0][0])
        if widget is None:
            counts["anchor unavailable"] += 1
            continue
        ids, token, choices, _, run = widget
        visitor = Visitor(None, pseudonymise("session", shopper_key(seed, number)))
        basket = {str(pk) for pk, _ in items} & products.keys()
        assigned = experiments.assign(experiments.FBT, visitor)
        events = []
        if ids and assigned is not None and assigned.exposure:
            experiments.log_exposure(assigned.exposure, visitor)
            counts["exposed"] += 1
        seen = read_token(token)
        fields = seen.as_event_fields() if seen else {}
        events += [{"kind": "widget_impression", "product": products[pk], **fields}
                   for pk in ids if pk in products]
        adopted = [pk for k, pk in enumerate(ids, 1)
                   if pk in basket and rng.random() < args.adopt / k]
        events += [{"kind": "widget_click", "product": products[pk], **fields} for pk in adopted]
        if events:
            record_events(events, visitor_id=visitor.visitor_id,
                          dedupe_window=recs_settings.EVENT_DEDUP_WINDOW)
        form = {"widget": "fbt", "attribution": choices, **({"run": run} if run else {})}
        attribution = AttributionForm(form).attribution()
        lines = [{"product": products[pk], "quantity": 1,
                  "unit_price": adapter.price(products[pk]), **attribution} for pk in adopted]
        lines += [{"product": products[pk], "quantity": 1,
                   "unit_price": adapter.price(products[pk])}
                  for pk in sorted(basket) if pk not in adopted]
        counts["adopted"] += len(adopted)
        if lines:
            record_order(f"replay-{seed}-{number}-{timezone.now():%H%M%S%f}", lines,
                         visitor_id=visitor.visitor_id)
            counts["orders"] += 1
    counts["seconds"] = time.monotonic() - started
    return counts


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
    counts = (replay(orders, args, log, seed=seed) if widgets is None
              else replay_fast(orders, args, seed, widgets))
    experiment = experiments.stop(experiment)
    experiment_rollups.rollup_experiment(experiment)
    return experiment, counts


def binomial_interval(hits, n):
    """The exact (Clopper-Pearson) 95 % interval of a rate."""
    from scipy.stats import beta

    low = beta.ppf(0.025, hits, n - hits + 1) if hits else 0.0
    high = beta.ppf(0.975, hits + 1, n - hits) if hits < n else 1.0
    return low, high


def aa_through_views(orders, args, log):
    """``--aa-seeds`` A/A experiments, each replayed through the views with its own salt
    and behaviour seed; the rate of 'significant' verdicts per metric."""
    from shop_recs.analytics import results
    from shop_recs.models import Arm, Interaction

    hits, seeds = defaultdict(int), args.aa_seeds
    quiet = (lambda text: None)
    started = time.monotonic()
    widgets = widget_cache(orders, args)
    log(f"\nA/A: the widgets of {len(widgets):,} product pages rendered once through the "
        f"view in {time.monotonic() - started:.0f} s")
    arms = [("A", Arm.Kind.ACTIVE_RUN), ("A'", Arm.Kind.ACTIVE_RUN)]
    if args.aa_check:
        same_through_both_paths(orders, args, arms, widgets, log)
    started = time.monotonic()
    for seed in range(seeds):
        began = timezone_now()
        experiment, counts = run_experiment(f"A/A {seed}", arms, orders, args, 1000 + seed,
                                            quiet, widgets=widgets)
        report = results.report(experiment)
        for key in ("rpv", "widget_rpv", "conversion", "ctr"):
            hits[key] += report.comparisons[0].metrics[key].significant
        hits["srm"] += report.srm.flagged
        # The shoppers of this replay leave: the next one starts from the same shop.
        forget_since(began)
        if (seed + 1) % 10 == 0 or seed + 1 == seeds:
            done = seed + 1
            log(f"  A/A {done}/{seeds}: rpv {hits['rpv']}, widget rpv {hits['widget_rpv']}, "
                f"conversion {hits['conversion']}, ctr {hits['ctr']}, SRM {hits['srm']}; "
                f"{(time.monotonic() - started) / done:.1f} s per replay "
                f"({counts['orders']:,} orders, {counts['exposed']:,} exposed)")
    log(f"\nA/A through the views, {seeds} replays (a fresh salt and behaviour seed each), "
        f"'significant' at alpha 5 % (exact 95 % binomial interval):")
    for key, label in (("rpv", "revenue / visitor"), ("widget_rpv", "widget revenue / visitor"),
                       ("conversion", "conversion"), ("ctr", "widget CTR"),
                       ("srm", "SRM flagged (p < 0.001)")):
        low, high = binomial_interval(hits[key], seeds)
        log(f"  {label}: {hits[key]}/{seeds} = {hits[key] / seeds:.1%} "
            f"[{low:.1%} … {high:.1%}]")


def same_through_both_paths(orders, args, arms, widgets, log):
    """One A/A replay through the HTTP views and again through :func:`replay_fast` (same
    salt, shoppers and draws): the per-arm figures must be the same."""
    from shop_recs.analytics import results
    from shop_recs.models import Interaction

    from django.core.cache import caches

    from shop_recs.conf import recs_settings

    figures = []
    for label, cached in (("views", None), ("fast", widgets)):
        # The same shoppers twice within minutes: forget the beacons' de-duplication keys.
        caches[recs_settings.CACHE_ALIAS].clear()
        began = timezone_now()
        experiment, counts = run_experiment(
            f"A/A check ({label})", arms, orders, args, 999, lambda text: None,
            widgets=cached, salt=figures[0][0] if figures else None)
        data = results.arm_data(experiment)
        figures.append((experiment.salt, [
            (a.visitors, a.orders_total, round(a.revenue_total, 2),
             round(a.moments["widget_rpv"].sx, 2), a.moments["ctr"].sx, a.moments["ctr"].sy)
            for a in data], counts["seconds"]))
        forget_since(began)
    same = figures[0][1] == figures[1][1]
    log(f"A/A check, one replay both ways (visitors, orders, revenue, widget revenue, clicks, "
        f"impressions per arm): views {figures[0][1]} in {figures[0][2]:.0f} s; fast "
        f"{figures[1][1]} in {figures[1][2]:.1f} s: {'identical' if same else 'DIFFERENT'}")


def forget_since(moment):
    """Delete the interactions recorded since ``moment`` (one statement: no row refers to
    an interaction, so the ORM's collector, which loads every pk first, is not needed)."""
    from shop_recs.models import Interaction

    rows = Interaction.objects.filter(timestamp__gte=moment)
    rows._raw_delete(rows.db)


def timezone_now():
    from django.utils import timezone

    return timezone.now()


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
            aa_through_views(orders, args, log)
    if log_path is not None:
        log_path.write_text("\n".join(lines) + "\n")
        print(f"written to {log_path}")


if __name__ == "__main__":
    main()
