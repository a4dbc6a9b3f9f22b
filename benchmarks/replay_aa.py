"""The A/A part of ``benchmarks.replay_experiment``: one replay per seed, each with a fresh
salt, through the code the views call (see that module's docstring).

:func:`replay_fast` does what ``replay_experiment.replay`` does through the test client,
without the HTTP layer and the page rendering, which do not depend on the seed: the product
pages' widgets are rendered once through the real view (:func:`widget_cache`).
:func:`same_through_both_paths` checks that both give the same figures.
"""

import time
from collections import defaultdict

import numpy as np

from benchmarks.replay_experiment import parse_widget, run_experiment, shopper_key


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
