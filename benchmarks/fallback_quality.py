"""How good is what a widget shows before the first run? The stored fallback lists against
the baselines, on the learning benchmark's temporal split.

    python -m benchmarks.fallback_quality [--orders FILE.csv.gz] [--format online_retail]

Reads the order file (default: the 2010-12..2011-12 year of UCI Online Retail), splits it
by time exactly as ``python -m shop_recs.ml.benchmark`` does (80 / 10 / 10 % of orders,
catalogue = products bought at least twice in training), computes the fallback lists from
the training orders with the code the shop runs (``shop_recs.fallbacks``: co-occurrence in
each product's ``FALLBACK_ORDERS`` most recent orders, then category bestsellers, up to
``CANDIDATES`` entries) and ranks the whole catalogue with them: listed products in list
order, the rest after them (a widget shows nothing for those). Prints test NDCG@10 for the
product-page (anchor, multi-target NDCG) and cart (complete) tasks next to popularity, co-occurrence and
EASE with λ tuned on validation; those rows equal the learning benchmark's (same split,
same queries), so its ``shipped`` row compares directly.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT = REPO.parent / "shared" / "data" / "online_retail" / "online_retail_2010-12_2011-12.csv.gz"


class ListScorer:
    """Scores from stored lists: ``1 / rank`` for listed items, -inf otherwise; several
    context items add them up (reciprocal-rank fusion, as ``ranking`` serves a cart)."""

    name = "fallback_lists"

    def __init__(self, anchors, items, ranks, n_items, limit):
        self.rows = {}
        for a, j, r in zip(anchors.tolist(), items.tolist(), ranks.tolist()):
            self.rows.setdefault(a, []).append((j, 1.0 / r))
        self.n_items = n_items

    def score(self, contexts, histories=None):
        out = np.full((len(contexts), self.n_items), -np.inf, dtype=np.float32)
        for row, ctx in enumerate(contexts):
            for a in np.asarray(ctx).tolist():
                for j, s in self.rows.get(a, ()):
                    out[row, j] = s if not np.isfinite(out[row, j]) else out[row, j] + s
        return out


def fallback_lists(train, attrs, keep, limit, window):
    """``(anchors, items, ranks)`` as ``shop_recs.fallbacks.compute`` stores them."""
    from shop_recs import fallbacks  # noqa: PLC0415

    class Extract:  # what compute() reads of shop_recs.data.Extract
        baskets = train
        pks = list(range(train.n_items))

    categories = [str(c or "") for c in attrs.categories]
    lists = fallbacks.compute(Extract, list(zip(range(train.n_items), categories)),
                              limit=limit, keep=keep, window=window)
    return (lists.anchor.astype(np.int64), lists.item.astype(np.int64),
            lists.rank.astype(np.int64), lists.method)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=Path, default=DEFAULT)
    parser.add_argument("--format", default="online_retail")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django  # noqa: PLC0415

    django.setup()
    from shop_recs.conf import recs_settings  # noqa: PLC0415
    from shop_recs.ml.baselines import (EASE, CoOccurrence, Popularity,  # noqa: PLC0415
                                        cooccurrence_counts)
    from shop_recs.ml.evaluate import (anchor_queries, complete_queries,  # noqa: PLC0415
                                       evaluate, temporal_split)
    from shop_recs.ml.orders import read_orders  # noqa: PLC0415
    from shop_recs.ml.types import baskets_from_frame  # noqa: PLC0415

    frame = read_orders([args.orders], args.format)
    baskets, index, attrs = baskets_from_frame(frame)
    split = temporal_split(baskets, index, attrs)
    print(f"split: {split.info}")
    pop = split.train.item_counts()
    tasks = {"anchor": anchor_queries, "complete": complete_queries}
    metric = {"anchor": "multi_ndcg", "complete": "ndcg"}  # as the learning benchmark
    queries = {(part, t): make(getattr(split, part), 0) for part in ("val", "test")
               for t, make in tasks.items()}
    limit = recs_settings.CANDIDATES
    anchors, items, ranks, methods = fallback_lists(
        split.train, split.attrs, recs_settings.FALLBACK_ORDERS, limit,
        recs_settings.POPULAR_LINES)
    listed = len(np.unique(anchors))
    print(f"fallback lists: {len(ranks):,} rows for {listed:,} of {split.train.n_items:,} "
          f"products ({(methods == 'cooccurrence').mean():.0%} co-occurrence)")
    counts = cooccurrence_counts(split.train)
    rows = {"fallback lists (served before a run)": {
        t: ListScorer(anchors, items, ranks, split.train.n_items, limit) for t in tasks}}
    rows["popularity"] = {t: Popularity().fit(split.train) for t in tasks}
    rows["co-occurrence (all orders)"] = {t: CoOccurrence("count", counts).fit(split.train)
                                          for t in tasks}
    best = {}
    for lam in (1, 10, 100, 1000, 10_000):
        scorer = EASE(lam, counts).fit(split.train)
        for t in tasks:
            value = evaluate(scorer, queries[("val", t)], pop)[metric[t]]
            if value > best.get(t, (-1,))[0]:
                best[t] = (value, lam, scorer)
    rows[f"EASE (λ {best['anchor'][1]:g} / {best['complete'][1]:g}, tuned on validation)"] = {
        t: best[t][2] for t in tasks}
    results = {name: {t: evaluate(scorers[t], queries[("test", t)], pop)[metric[t]]
                      for t in tasks}
               for name, scorers in rows.items()}
    ease = next(v for k, v in results.items() if k.startswith("EASE"))
    print(f"\n{'test NDCG@10':<58}{'product page':>13}{'cart':>9}   × EASE")
    for name, value in results.items():
        print(f"{name:<58}{value['anchor']:>13.4f}{value['complete']:>9.4f}   "
              f"{value['anchor'] / ease['anchor']:.3f} / {value['complete'] / ease['complete']:.3f}")


if __name__ == "__main__":
    main()
