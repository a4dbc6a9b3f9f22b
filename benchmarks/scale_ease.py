"""How EASE should run above the dense threshold: head size against quality and cost.

    python -m benchmarks.scale_ease --products 100000 --lines 2000000 --heads 0,1000,4000
        [--dense] [--lam 100] [--json FILE]

On a synthetic shop (``benchmarks.synthetic_shop``, seed 0): a temporal split
(``evaluate.temporal_split``), then for each head size ``sparse.head_tail_ease`` (exact EASE on
the ``head`` best sellers, the diagonal approximation elsewhere; head 0 = the approximation
alone), item-kNN and co-occurrence lift for reference, and with ``--dense`` the exact dense
EASE (only where ``n²`` fits). Reported per variant: fit seconds, process peak RSS after the
fit, anchor recall@10 and NDCG@10 on the test orders (full ranking), and planted-complement
recall@10 of every product's top 10. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.synthetic_shop import ShopParams, planted_recall, synthetic_baskets


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--heads", default="0,1000,4000")
    parser.add_argument("--lam", type=float, default=100.0)
    parser.add_argument("--dense", action="store_true", help="also exact dense EASE")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from shop_recs.ml import sparse
    from shop_recs.ml.baselines import EASE, CoOccurrence, ItemKNN, cooccurrence_counts
    from shop_recs.ml.evaluate import anchor_queries, evaluate, temporal_split
    from shop_recs.ml.types import ItemAttributes, ItemIndex

    baskets, groups = synthetic_baskets(ShopParams(args.products, args.lines, seed=0))
    index = ItemIndex([f"P{i:07d}" for i in range(baskets.n_items)])
    split = temporal_split(baskets, index, ItemAttributes.empty(baskets.n_items))
    train, n = split.train, split.train.n_items
    item_pos = np.full(baskets.n_items, -1)
    item_pos[split.items] = np.arange(n)
    keep_groups = [[int(item_pos[g]) for g in grp if item_pos[g] >= 0] for grp in groups]
    keep_groups = [g for g in keep_groups if len(g) >= 2]
    queries = anchor_queries(split.test, seed=0)
    pop = train.item_counts()
    counts = sparse.sparse_cooccurrence(train)
    print(f"{args.products:,} products, {args.lines:,} lines: catalogue {n:,}, "
          f"{len(train):,} training orders, {len(queries.contexts):,} test anchors, "
          f"C nnz {counts.nnz:,}", flush=True)
    variants = [("cooc lift", lambda: CoOccurrence("lift", counts)),
                ("item-kNN k=200", lambda: ItemKNN(200, 10.0, counts))]
    for h in (int(x) for x in args.heads.split(",") if x.strip()):
        variants.append((f"EASE head {h:,}", lambda h=h: EASE(args.lam, counts, head_items=h)))
    if args.dense:
        dense_counts = cooccurrence_counts(train, dense_max_items=n)  # n x n, forced
        variants.append(("EASE dense (exact)", lambda: EASE(args.lam, dense_counts)))
    rows = []
    anchors = [np.array([a]) for a in range(n)]
    for name, make in variants:
        t = time.perf_counter()
        scorer = make().fit(train)
        fit_s = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        m = evaluate(scorer, queries, pop)
        top, _ = scorer.topk(anchors, 10)
        planted = planted_recall({i: top[i].tolist() for i in range(n)}, keep_groups)
        row = {"variant": name, "fit_s": round(fit_s, 1), "peak_rss_mb": round(peak),
               "recall10": round(m["recall"], 4), "ndcg10": round(m["multi_ndcg"], 4),
               "planted_recall10": round(planted, 4)}
        rows.append(row)
        print(f"{name:<22} fit {row['fit_s']:>7.1f} s  peak {row['peak_rss_mb']:>6,} MB  "
              f"recall@10 {row['recall10']:.4f}  NDCG@10 {row['ndcg10']:.4f}  "
              f"planted {row['planted_recall10']:.4f}", flush=True)
        del scorer
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "catalogue": n, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
