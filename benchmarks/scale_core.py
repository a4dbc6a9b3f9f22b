"""Scale of the learning core alone: a whole fit at up to 10^6 products, no database.

    python -m benchmarks.scale_core --products 1m --lines 20m [--time-budget 150]
        [--epochs 40] [--json FILE] [--device cpu] [--serve blend]

``benchmarks.scale`` runs the real pipeline (import into a database, extract, train, publish);
at 1,000,000 products and 20,000,000 lines its import alone takes about 90 minutes on two
cores. This runs what the training task does between extraction and the database writes, on
``shop_recs.ml.synthetic`` orders built in memory (Zipf popularity, planted pairs): the
protocol's ``fit_shop`` with the shop's default settings (every baseline and grid, the
network, the gate, the refit, the serving policy), then the FBT lists of every published
product and the bundle search around each, as ``publish.build`` computes them. Per stage:
wall seconds and peak RSS; then the planted-pair recall@10 of the published lists. Prints a
table and writes JSON; asserts nothing about time. No Django: runs on a GPU machine too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.scale import RssSampler, parse_size


def attributes(shop):
    """Names, categories and prices of the synthetic products (what a catalogue gives)."""
    from shop_recs.ml.types import ItemAttributes

    names = np.asarray([" ".join(f"w{w}" for w in row) for row in shop.words], dtype=object)
    cats = np.asarray([f"c{c}" for c in shop.category], dtype=object)
    return ItemAttributes(names, cats, 5.0 * shop.price_band.astype(np.float64))


def planted_recall(lists: np.ndarray, anchors: np.ndarray, pairs: np.ndarray) -> float:
    """Share of published anchors with a planted mate whose list holds the mate."""
    mate = np.full(int(max(pairs.max(initial=0), anchors.max(initial=0))) + 1, -1)
    mate[pairs[:, 0]], mate[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
    m = mate[anchors]
    has = m >= 0
    hit = (lists[has] == m[has, None]).any(axis=1)
    return float(hit.mean()) if has.any() else float("nan")


def run(args) -> dict:
    from shop_recs.ml.bundle_search import LIST_SPARE, BundleSearch
    from shop_recs.ml.bundles import BundleRules, Evidence
    from shop_recs.ml.config import configure, get_default_config
    from shop_recs.ml.protocol import fit_shop
    from shop_recs.ml.synthetic import synthetic_orders
    from shop_recs.ml.types import ItemIndex

    rss = RssSampler()
    stages: dict[str, dict] = {}

    def record(name, start, seconds=None):
        end = time.monotonic() if seconds is None else start + seconds
        stages[name] = {"seconds": round(end - start, 2),
                        "peak_rss_mb": round(rss.peak(start, end))}

    t = time.monotonic()
    shop = synthetic_orders(args.products, args.lines, seed=0)
    index = ItemIndex(np.asarray([f"p{i}" for i in range(args.products)], dtype=object))
    attrs = attributes(shop)
    baskets = shop.baskets  # timestamps: the order index (orders arrive in order)
    record("generate", t)
    cfg = configure(get_default_config(), {"train.time_budget_s": args.time_budget,
                                           "train.epochs": args.epochs,
                                           "train.device": args.device})
    t = time.monotonic()
    fitted = fit_shop(baskets, index, attrs, cfg)
    cursor = t
    for name, seconds in fitted.timings.items():
        record(name, cursor, seconds)
        cursor += seconds
    record("fit_total", t)

    t = time.monotonic()
    scorer = fitted.scorer
    params = fitted.metrics["params"]
    if args.serve == "blend" and "+" not in fitted.choice:
        # what the lists and the search cost when the gate ships the blend (it ships the
        # partner or the blend by a fraction of a percent, so a run may go either way): the
        # shipped baseline and the network with the validation-tuned weights
        from shop_recs.ml.blend import BlendScorer

        scorer = BlendScorer([scorer, fitted.trained], params["blend_weights"],
                             f"bundle_model+{fitted.choice}", personal=[False, False])
    allowed = np.asarray(fitted.published, dtype=bool)
    anchors = np.flatnonzero(allowed)
    search = BundleSearch(fitted.index, fitted.attrs, BundleRules(sizes=(3,), allowed=allowed,
                                                                  per_anchor=3))
    want = max(10, search.list_size + LIST_SPARE) if not search.exhaustive else 10
    lists = np.full((len(anchors), 10), -1, dtype=np.int64)
    chunk = 1024
    for s in range(0, len(anchors), chunk):
        part = anchors[s:s + chunk]
        ctx = [np.asarray([a]) for a in part]
        if getattr(scorer, "lists_from_topk", False):
            idx, val = scorer.topk(ctx, want, allowed=allowed)
            lists[s:s + len(part)] = np.where(np.isfinite(val[:, :10]), idx[:, :10], -1)
            search.learn_lists(part, idx, val)
        else:
            raw = scorer.score(ctx)
            raw = np.where(allowed[None, :], raw, -np.inf)
            raw[np.arange(len(part)), part] = -np.inf
            from shop_recs.ml.topk import topk_of_scores

            lists[s:s + len(part)] = topk_of_scores(raw, 10)
            search.learn(part, raw)
    record("lists", t)
    t = time.monotonic()
    evidence = Evidence(fitted.baskets)
    found = 0
    for s in range(0, len(anchors), 256):
        found += sum(len(b) for b in search.search(scorer, anchors[s:s + 256],
                                                   evidence).values())
    record("search", t)
    rss.stop()
    return {"products": args.products, "lines": int(len(baskets.items)),
            "orders": len(baskets), "catalogue": fitted.split.get("catalogue"),
            "published": int(len(anchors)), "choice": fitted.choice,
            "served": getattr(scorer, "name", fitted.choice),
            "gate": fitted.reason, "bundles_found": found,
            "planted_recall10": round(planted_recall(lists, anchors, shop.pairs), 4),
            "shipped_test": fitted.metrics["test"].get("shipped"),
            "stages": stages, "peak_rss_mb": round(max(mb for _, mb in rss.samples))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=parse_size, default=parse_size("1m"))
    parser.add_argument("--lines", type=parse_size, default=parse_size("20m"))
    parser.add_argument("--time-budget", type=float, default=150.0,
                        help="seconds per model fit (SHOP_RECS TIME_BUDGET_S; default the "
                             "shop default)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", type=Path, default=Path("scale_core.json"))
    parser.add_argument("--serve", default="shipped", choices=["shipped", "blend"],
                        help="list and search with what the gate shipped, or with the blend "
                             "of the network and the shipped baseline whatever it shipped")
    args = parser.parse_args(argv)
    out = run(args)
    print(f"{'stage':<12} {'seconds':>9} {'peak MB':>9}")
    for name, s in out["stages"].items():
        print(f"{name:<12} {s['seconds']:>9} {s['peak_rss_mb']:>9}")
    print(json.dumps({k: v for k, v in out.items() if k != "stages"}, default=str))
    args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
