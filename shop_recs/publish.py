"""Turning a fitted scorer into published rows: FBT lists and proposed bundles.

``build(fitted, pks)`` computes the rows (numpy, no database writes);
``activate(run, rows)`` writes them and makes ``run`` the serving run in one
transaction, so customers see either the old run's rows or the new run's, never a mix.

Bundle numbers (logged by :func:`activate` and stored in ``run.counts``, which the admin shows),
one set that adds up: ``bundles_found`` distinct bundles the search returned =
``bundles_proposed`` (awaiting review from this run: ``bundles_new`` + ``bundles_refreshed``,
earlier proposals found again) + ``bundles_skipped`` (reviewed before and their evidence has not
grown enough). ``bundles_dropped``: earlier proposals this run no longer makes, deleted.
Every proposal says which kind of scorer found it (``Bundle.Source.MODEL`` or ``BASELINE``).

Products with no or few orders (below ``MIN_PRODUCT_ORDERS``) get lists scored from their
content (``shop_recs.content_lists``), rows of the run with source ``"content"``
(``shop_recs.newproducts.SOURCE``); the warm products' rows are computed as before.
"""

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from itertools import islice

import numpy as np
from django.db import transaction
from django.utils import timezone

from shop_recs import bulk, content_lists, newproducts
from shop_recs.conf import recs_settings
from shop_recs.ml.bundle_search import LIST_SPARE, BundleSearch
from shop_recs.ml.bundles import BundleRules, Evidence
from shop_recs.ml.topk import topk_of_scores
from shop_recs.models import Bundle, BundleItem, Recommendation, TrainingRun, bundle_signature
from shop_recs.signals import bundles_changed, run_activated

logger = logging.getLogger(__name__)

SCORE_CHUNK = 256
MIN_BUNDLE_ORDERS = 2


@dataclass
class Rows:
    # (product pk, recommended pk, rank, score, evidence): a list, or FbtRows from build()
    fbt: list = field(default_factory=list)
    bundles: list = field(default_factory=list)  # (anchor pk, [item pks], score, evidence)
    source: str = ""  # the shipped candidate's name (FBT rows)
    content: list = field(default_factory=list)  # like fbt: lists of products without orders
    content_s: float = 0.0  # seconds spent on them (the run's "content" timing)
    bundle_source: str = Bundle.Source.MODEL  # MODEL when the learned model takes part


def explanation(n_orders, lift):
    times = f", {lift:.0f}× more often than chance" if lift >= 1.5 else ""
    return f"bought together in {n_orders} order{'s' if n_orders != 1 else ''}{times}"


def build(fitted, pks):
    """FBT lists for every published product of the shipped catalogue, and bundles around each.

    Each chunk of anchors is scored once: the same rows give the FBT lists and the first step
    of the bundle search (``BundleSearch``, over each anchor's candidate list above the dense
    threshold: issue 15).
    """
    # every product of the catalogue is scored; only those with enough orders are published
    allowed = content_lists.available(pks) & np.asarray(fitted.published, dtype=bool)
    anchors_all = np.flatnonzero(fitted.published)
    evidence = Evidence(fitted.baskets)
    rows = Rows(fbt=FbtRows(pks), source=fitted.choice, bundle_source=(
        Bundle.Source.MODEL if fitted.model is not None else Bundle.Source.BASELINE))
    top_k = recs_settings.FBT_TOP_K
    per_anchor = recs_settings.BUNDLES_PER_PRODUCT
    search = None
    if per_anchor:
        rules = BundleRules(sizes=(recs_settings.BUNDLE_SIZE,), allowed=allowed,
                            per_anchor=per_anchor)
        search = BundleSearch(fitted.index, fitted.attrs, rules)  # O(n) once, not per chunk
    # above the dense size the scorer lists from candidates: no [chunk, n] row (issue 15)
    by_lists = bool(getattr(fitted.scorer, "lists_from_topk", False))
    want = (top_k if search is None or search.exhaustive
            else max(top_k, search.list_size + LIST_SPARE))
    for start in range(0, len(anchors_all), SCORE_CHUNK):
        anchors = anchors_all[start:start + SCORE_CHUNK]
        if by_lists:
            idx, val = fitted.scorer.topk([np.asarray([a]) for a in anchors], want,
                                          allowed=allowed)
            _list_rows(rows, idx[:, :top_k], val[:, :top_k], anchors, evidence)
            if search is None or not allowed[anchors].any():
                continue
            mine = allowed[anchors]
            if search.exhaustive:  # a small catalogue (a sparse scorer all the same)
                _bundle_rows(rows, search.search(fitted.scorer, anchors[mine], evidence), pks)
            else:
                search.learn_lists(anchors[mine], idx[mine], val[mine])
            continue
        raw = fitted.scorer.score([np.asarray([a]) for a in anchors])  # [chunk, n]
        _fbt_rows(rows, raw, anchors, allowed, evidence, top_k)
        if search is None or not allowed[anchors].any():
            continue
        mine = allowed[anchors]
        if search.exhaustive:  # a small catalogue: search at once from the same rows
            _bundle_rows(rows, search.search(fitted.scorer, anchors[mine], evidence,
                                             first=raw[mine]), pks)
        else:  # candidate lists: every list is known before any bundle grows
            search.learn(anchors[mine], raw[mine])
    if search is not None and not search.exhaustive:
        bundle_anchors = np.flatnonzero(allowed)
        for start in range(0, len(bundle_anchors), SCORE_CHUNK):
            _bundle_rows(rows, search.search(fitted.scorer,
                                             bundle_anchors[start:start + SCORE_CHUNK],
                                             evidence), pks)
    started = time.monotonic()
    rows.content = content_lists.content_rows(fitted, pks, allowed)
    rows.content_s = time.monotonic() - started
    logger.debug("built %d FBT rows, %d content rows and %d bundle candidates", len(rows.fbt),
                 len(rows.content), len(rows.bundles))
    return rows


class FbtRows:
    """FBT rows ``(product pk, recommended pk, rank, score, evidence)``, held as columns and
    made into tuples as they are read: 10 M rows as tuples with an evidence dict each take
    about 5 GB, as columns about 0.3 GB (issue 15). Reads like the list it replaces."""

    def __init__(self, pks):
        self.pks, self.parts, self.count = pks, [], 0

    def add(self, src, dst, rank, score, together, lift, support):
        self.parts.append((np.asarray(src, np.int32), np.asarray(dst, np.int32),
                           np.asarray(rank, np.int16), np.asarray(score, np.float32),
                           np.asarray(together, np.float32), np.asarray(lift, np.float64),
                           np.asarray(support, np.float64)))
        self.count += len(src)

    def __len__(self):
        return self.count

    def __iter__(self):
        pks = self.pks
        for part in self.parts:
            for a, j, rank, score, n, lift, sup in zip(*(col.tolist() for col in part)):
                yield (pks[a], pks[j], rank, score, {
                    "orders_together": int(n),
                    "lift": round(lift, 3),
                    "confidence": round(int(n) / sup, 4) if sup else 0.0,
                })

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(islice(self, *index.indices(len(self))))
        return next(islice(self, index % len(self), None))

    def __eq__(self, other):
        return list(self) == list(other)


def _fbt_rows(rows, raw, anchors, allowed, evidence, top_k):
    """Add the FBT rows of ``anchors`` (scored ``raw`` [chunk, n]) to ``rows.fbt``."""
    scores = np.where(allowed[None, :], raw, -np.inf)
    scores[np.arange(len(anchors)), anchors] = -np.inf
    scores = np.where(np.isnan(scores), -np.inf, scores)
    # a stable argsort's first top_k, in O(n) a row (issue 15: catalogues of 10^6)
    best = topk_of_scores(scores, top_k)
    _list_rows(rows, best, np.take_along_axis(scores, best, 1), anchors, evidence)


def _list_rows(rows, best, vals, anchors, evidence):
    """Add the FBT rows of ``anchors``' lists (items ``best``, scores ``vals`` [chunk, k])."""
    # a row's list stops at its first non-finite score (or missing item)
    keep = np.cumprod(np.isfinite(vals) & (best >= 0), axis=1).astype(bool)
    src = np.broadcast_to(anchors[:, None], best.shape)[keep]
    dst = best[keep]
    together = evidence.together(src, dst)
    rows.fbt.add(src, dst, np.cumsum(keep, axis=1)[keep], vals[keep], together,
                 evidence.lifts(src, dst, together), evidence.support[src])


def _bundle_rows(rows, found, pks):
    """Append the bundles of ``found`` ({anchor: [Bundle]}) with enough orders to ``rows``."""
    for anchor, bundles in found.items():
        for bundle in bundles:
            if bundle.n_orders < MIN_BUNDLE_ORDERS:
                continue
            lifts = list(bundle.pair_lift.values())
            lift = float(np.mean(lifts)) if lifts else 0.0
            rows.bundles.append((pks[anchor], [pks[i] for i in bundle.items[1:]],
                                 float(bundle.score), {
                                     "orders_with_all": bundle.n_orders,
                                     "lift": round(lift, 3),
                                     "pair_lift": bundle.pair_lift,
                                     "model_score": round(float(bundle.score), 4),
                                     "explanation": explanation(bundle.n_orders, lift),
                                 }))


NEW_BUNDLE_FIELDS = ("anchor", "run", "score", "evidence", "signature", "source", "status",
                     "discount_percent", "created_at")


def _propose(run, rows):
    """Store the bundles of ``rows`` as proposals of ``run``; returns the bundle counts.

    Written at bulk speed (``shop_recs.bulk``: COPY on PostgreSQL), never as model
    instances: at 10^6 products a run proposes millions of bundles (issue 15). Earlier
    proposals found again are refreshed in place; reviewed ones are proposed again only when
    their evidence grew by ``REPROPOSE_EVIDENCE_GROWTH``; earlier proposals this run no
    longer makes are deleted, with one ``bundles_changed`` for their anchors.
    """
    growth = recs_settings.REPROPOSE_EVIDENCE_GROWTH
    candidates = {}
    for anchor, items, score, evidence in rows.bundles:
        candidates.setdefault(bundle_signature(anchor, items), (anchor, items, score, evidence))
    existing = {}  # signature -> [(pk, status, orders_with_all)], in the model's ordering
    sigs = list(candidates)
    for start in range(0, len(sigs), 900):
        for sig, pk, status, evidence in Bundle.objects.filter(
                signature__in=sigs[start:start + 900]).values_list(
                    "signature", "pk", "status", "evidence"):
            existing.setdefault(sig, []).append(
                (pk, status, (evidence or {}).get("orders_with_all", 0)))
    new, updated, skipped = [], [], 0
    for sig, (anchor, items, score, evidence) in candidates.items():
        previous = existing.get(sig, [])
        proposed = [pk for pk, status, _ in previous if status == Bundle.Status.PROPOSED]
        if proposed:
            updated.append((proposed[0], run.pk, score, evidence, rows.bundle_source))
            continue
        reviewed = [orders for _, _, orders in previous]
        if reviewed and evidence["orders_with_all"] < growth * max(reviewed):
            skipped += 1
            continue
        new.append(sig)
    bulk.update_rows(Bundle, ("run", "score", "evidence", "source"), updated)
    now = timezone.now()
    bulk.write_rows(Bundle, NEW_BUNDLE_FIELDS, (
        (candidates[sig][0], run.pk, candidates[sig][2], candidates[sig][3], sig,
         rows.bundle_source, Bundle.Status.PROPOSED, 0, now) for sig in new))
    if new:  # the new rows' keys, for their items (one proposal of this run per signature)
        pk_of = dict(Bundle.objects.filter(run=run).values_list("signature", "pk"))
        bulk.write_rows(BundleItem, ("bundle", "product", "position"), (
            (pk_of[sig], pk, pos) for sig in new
            for pos, pk in enumerate(candidates[sig][1], 1)))
    # Proposals of earlier runs that this run no longer makes were never reviewed: drop them,
    # items first, without loading each (a post_delete per object is minutes at 10^6)
    stale = Bundle.objects.filter(
        status=Bundle.Status.PROPOSED, source__in=[Bundle.Source.MODEL, Bundle.Source.BASELINE]
    ).exclude(run=run)
    dropped = stale.count()
    if dropped:
        anchors = sorted(set(stale.values_list("anchor_id", flat=True)))
        using = stale.db
        BundleItem.objects.filter(bundle__in=stale.values("pk"))._raw_delete(using)
        stale._raw_delete(using)
        transaction.on_commit(partial(bundles_changed.send, sender=Bundle, anchor_ids=anchors),
                              using=using)
    return {"bundles_found": len(candidates), "bundles_proposed": len(new) + len(updated),
            "bundles_new": len(new), "bundles_refreshed": len(updated),
            "bundles_skipped": skipped, "bundles_dropped": dropped}


FBT_FIELDS = ("run", "product", "recommended", "rank", "score", "source", "evidence")


def write_fbt(run, fbt, source):
    """Write the FBT rows ``(product pk, recommended pk, rank, score, evidence)`` of ``run``
    at bulk speed (``shop_recs.bulk``: COPY on PostgreSQL), inside the caller's transaction
    (the old run serves until it commits). Returns the count.
    """
    return bulk.write_rows(Recommendation, FBT_FIELDS,
                           ((run.pk, p, r, rank, score, source, ev)
                            for p, r, rank, score, ev in fbt))


@transaction.atomic
def activate(run, rows):
    """Write ``rows`` for ``run`` and make it the serving run, atomically.

    The first run always serves; later ones serve at once when ``FBT_PUBLISHING`` is
    ``"auto"`` and wait for staff otherwise.
    """
    previous = TrainingRun.objects.select_for_update().filter(is_active=True).first()
    Recommendation.objects.filter(run=run).delete()  # a redelivered run starts clean
    write_fbt(run, rows.fbt, rows.source)
    if rows.content:
        write_fbt(run, rows.content, newproducts.SOURCE)
    bundle_counts = _propose(run, rows)
    # With FBT_PUBLISHING = "approval" the run waits for staff ("Serve this run").
    serve = recs_settings.FBT_PUBLISHING == "auto" or previous is None
    if previous and serve:
        TrainingRun.objects.filter(pk=previous.pk).update(is_active=False)
    # Keep the rows of this run and of the one serving before it (for a roll-back).
    keep = [run.pk] + ([previous.pk] if previous else [])
    Recommendation.objects.exclude(run__in=keep).delete()
    run.counts = {**(run.counts or {}), "fbt_rows": len(rows.fbt),
                  "content_rows": len(rows.content),
                  "content_products": len({row[0] for row in rows.content}), **bundle_counts}
    run.status, run.pending, run.is_active = TrainingRun.Status.SUCCEEDED, None, serve
    run.finished_at = timezone.now()
    run.save()
    logger.info("run %s: %d FBT rows, %d content rows; %s", run.pk, len(rows.fbt),
                len(rows.content),
                ", ".join(f"{k.removeprefix('bundles_')} {v}" for k, v in bundle_counts.items()))
    if serve:
        transaction.on_commit(lambda: run_activated.send(sender=TrainingRun, run=run))
        # products created while this run trained are not in its catalogue: list them now
        newproducts.queue_new_products()
    return run

