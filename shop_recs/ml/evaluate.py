"""The evaluation protocol every figure of shop_recs uses (numpy only, no torch).

Protocol (issue 3):

* :func:`temporal_split`: orders sorted by time; the last ``test_frac`` are test, the
  ``val_frac`` before them validation, the rest training. The catalogue is the products seen in
  at least ``min_count`` training orders; evaluated orders keep their catalogue items and need
  at least two of them.
* Task **complete** (:func:`complete_queries`): one seeded item of each order is hidden, the rest
  is the context; the whole catalogue minus the context is ranked. HitRate@k, NDCG@k, MRR.
* Task **anchor** (:func:`anchor_queries`): one seeded item is the product on the page, its
  basket-mates are the targets; the catalogue minus the anchor is ranked. Recall@k, NDCG@k.
* Full ranking, never sampled negatives. Ties are broken by item index, the same way for every
  scorer, so a constant scorer gets no free hits.

Usage::

    split = temporal_split(baskets, index, attrs)
    q = complete_queries(split.test, seed=0)
    metrics = evaluate(scorer, q, popularity=split.train.item_counts())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from shop_recs.ml.topk import rank_and_topk
from shop_recs.ml.types import Baskets, DataError, ItemAttributes, ItemIndex

__all__ = [
    "Scorer", "Split", "Queries", "temporal_split", "complete_queries", "anchor_queries",
    "customer_histories", "evaluate", "rank_items", "hit_rate_at_k", "ndcg_at_k", "mrr",
    "recall_at_k", "multi_ndcg_at_k", "ndcg_rows", "multi_ndcg_rows", "subset",
]


class Scorer(Protocol):
    """What every model and baseline implements; scores line up with the item index."""

    name: str

    def fit(self, train: Baskets, attrs: ItemAttributes | None = None) -> "Scorer": ...

    def score(self, contexts: Sequence[np.ndarray],
              histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """float32 [len(contexts), n_items]; higher is better. Context items need no masking."""
        ...


@dataclass
class Split:
    train: Baskets
    val: Baskets
    test: Baskets
    index: ItemIndex  # the catalogue (items seen >= min_count times in training)
    attrs: ItemAttributes
    all_baskets: Baskets  # every order remapped to the catalogue (histories are drawn from it)
    info: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)  # part -> rows of the input baskets, by time
    items: np.ndarray | None = None  # catalogue item -> item of the input index


@dataclass
class Queries:
    contexts: list[np.ndarray]  # the items the scorer sees
    targets: list[np.ndarray]  # the items it should rank high
    histories: list[np.ndarray] | None = None  # customer's earlier items, or None


def temporal_split(baskets: Baskets, index: ItemIndex, attrs: ItemAttributes,
                   val_frac: float = 0.1, test_frac: float = 0.1, min_count: int = 2) -> Split:
    """Split orders by time and restrict everything to the training catalogue."""
    order = np.argsort(baskets.timestamps, kind="stable")
    n = len(order)
    n_test, n_val = int(round(n * test_frac)), int(round(n * val_frac))
    n_train = n - n_test - n_val
    if n_train < 1 or n_val < 1 or n_test < 1:
        raise DataError(f"too few orders ({n}) for a train/validation/test split")
    rows = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:]}
    counts = baskets.select(rows["train"]).item_counts()
    keep = np.flatnonzero(counts >= min_count)
    if len(keep) < 2:
        raise DataError("fewer than two products were bought at least "
                         f"{min_count} times in the training period")
    mapping = np.full(baskets.n_items, -1, dtype=np.int64)
    mapping[keep] = np.arange(len(keep))
    remapped = baskets.select(order).remap_items(mapping, len(keep))
    parts = {}
    start = 0
    for name in ("train", "val", "test"):
        part = remapped.select(np.arange(start, start + len(rows[name])))
        start += len(rows[name])
        parts[name] = part if name == "train" else part.select(part.sizes >= 2)
    ts = remapped.timestamps
    info = {"orders": n, "train_orders": len(parts["train"]), "val_orders": len(parts["val"]),
            "test_orders": len(parts["test"]), "catalogue": len(keep), "min_count": min_count,
            "train_val_orders": n_train + n_val,  # rows of all_baskets before the test period
            "val_from": int(ts[n_train]), "test_from": int(ts[n_train + n_val])}
    return Split(parts["train"], parts["val"], parts["test"], ItemIndex(index.ids[keep]),
                 attrs.take(keep), remapped, info, rows, keep)


def customer_histories(baskets: Baskets, history_pool: Baskets, max_items: int = 256,
                       max_orders: int = 50) -> list[np.ndarray]:
    """For each basket, its customer's items from strictly earlier orders of ``history_pool``.

    The items of the last ``max_orders`` orders, most recent order first, at most ``max_items``.
    An item bought in several of those orders appears once per order: how often a customer
    re-ordered a product is the strongest repeat signal (items are distinct within an order).
    Anonymous orders get an empty history. Nothing from the future leaks in.
    """
    by_customer: dict[int, list[int]] = {}
    order = np.argsort(history_pool.timestamps, kind="stable")
    for i in order:
        c = int(history_pool.customers[i])
        if c >= 0:
            by_customer.setdefault(c, []).append(int(i))
    empty = np.zeros(0, dtype=np.int32)
    out = []
    for ts, c in zip(baskets.timestamps, baskets.customers):
        rows = by_customer.get(int(c), [])
        earlier = [r for r in rows if history_pool.timestamps[r] < ts]
        if not earlier:
            out.append(empty)
            continue
        items = np.concatenate([history_pool.basket(r) for r in reversed(earlier[-max_orders:])])
        out.append(items[:max_items].astype(np.int32))
    return out


def complete_queries(baskets: Baskets, seed: int = 0,
                     histories: list[np.ndarray] | None = None) -> Queries:
    rng = np.random.default_rng(seed)
    contexts, targets = [], []
    for items in baskets.as_list():
        hide = rng.integers(len(items))
        contexts.append(np.delete(items, hide))
        targets.append(items[hide:hide + 1])
    return Queries(contexts, targets, histories)


def anchor_queries(baskets: Baskets, seed: int = 0,
                   histories: list[np.ndarray] | None = None) -> Queries:
    rng = np.random.default_rng(seed + 1_000_003)
    contexts, targets = [], []
    for items in baskets.as_list():
        a = rng.integers(len(items))
        contexts.append(items[a:a + 1])
        targets.append(np.delete(items, a))
    return Queries(contexts, targets, histories)


def subset(queries: Queries, rows: np.ndarray) -> Queries:
    """The queries at positions ``rows`` (for cross-fitting on parts of a split)."""
    pick = [int(r) for r in rows]
    return Queries([queries.contexts[r] for r in pick], [queries.targets[r] for r in pick],
                   None if queries.histories is None else [queries.histories[r] for r in pick])


def rank_items(scores: np.ndarray, contexts: Sequence[np.ndarray]) -> np.ndarray:
    """Items by decreasing score, context items last; ties broken by item index. int [n, n_items]."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    scores[~np.isfinite(scores)] = -np.inf
    for row, ctx in enumerate(contexts):
        scores[row, ctx] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")


# -- metrics on 0-based ranks / top-k lists (hand-checked in tests/ml/test_evaluate.py) --------

def hit_rate_at_k(ranks: np.ndarray, k: int = 10) -> float:
    return float(np.mean(np.asarray(ranks) < k))


def ndcg_rows(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """Single relevant item at 0-based ``rank``: 1/log2(rank+2) inside the top k, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2), 0.0)


def ndcg_at_k(ranks: np.ndarray, k: int = 10) -> float:
    return float(np.mean(ndcg_rows(ranks, k)))


def mrr(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / (np.asarray(ranks, dtype=np.float64) + 1)))


def recall_at_k(topk: np.ndarray, targets: Sequence[np.ndarray], k: int = 10) -> float:
    """Hits in the top k over min(k, |targets|), so a perfect list scores 1."""
    vals = [np.isin(row[:k], t).sum() / min(k, len(t)) for row, t in zip(topk, targets)]
    return float(np.mean(vals))


def multi_ndcg_rows(topk: np.ndarray, targets: Sequence[np.ndarray], k: int = 10) -> np.ndarray:
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    vals = []
    for row, t in zip(topk, targets):
        hits = np.isin(row[:k], t)  # a catalogue smaller than k gives shorter lists
        dcg = float(disc[:len(hits)][hits].sum())
        vals.append(dcg / float(disc[:min(k, len(t))].sum()))
    return np.asarray(vals, dtype=np.float64)


def multi_ndcg_at_k(topk: np.ndarray, targets: Sequence[np.ndarray], k: int = 10) -> float:
    return float(np.mean(multi_ndcg_rows(topk, targets, k)))


def evaluate(scorer: "Scorer | np.ndarray", queries: Queries, popularity: np.ndarray,
             k: int = 10, batch_size: int = 256) -> dict:
    """Full-ranking metrics of ``scorer`` (or of precomputed scores [n, n_items]) on ``queries``.

    Returns hr, ndcg, mrr (the single-target view), recall (multi-target view), plus the
    top-k lists (``"topk"``, int [n, k]) for coverage and popularity figures and the per-query
    values (``"rows"``: {"ndcg", "multi_ndcg"} float [n]) that paired comparisons resample.
    """
    ranks, tops = [], []
    for start in range(0, len(queries.contexts), batch_size):
        ctx = queries.contexts[start:start + batch_size]
        hist = None if queries.histories is None else queries.histories[start:start + batch_size]
        scores = (scorer[start:start + batch_size] if isinstance(scorer, np.ndarray)
                  else scorer.score(ctx, hist))
        # the ranks and lists of rank_items' stable sort, in O(n) per query (issue 15)
        best, top = rank_and_topk(scores, ctx, queries.targets[start:start + batch_size], k)
        ranks.extend(best.tolist())  # best-ranked target (single-target view)
        tops.append(top)
    ranks_arr = np.asarray(ranks)
    topk = np.concatenate(tops) if tops else np.zeros((0, k), dtype=np.int64)
    rows = {"ndcg": ndcg_rows(ranks_arr, k),
            "multi_ndcg": multi_ndcg_rows(topk, queries.targets, k)}
    return {
        "hr": hit_rate_at_k(ranks_arr, k), "ndcg": _mean(rows["ndcg"]), "mrr": mrr(ranks_arr),
        "recall": recall_at_k(topk, queries.targets, k), "multi_ndcg": _mean(rows["multi_ndcg"]),
        "topk": topk, "rows": rows,
    }


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def coverage_and_popularity(topks: Sequence[np.ndarray], popularity: np.ndarray) -> tuple[float, float]:
    """Share of the catalogue in any top-k list, and mean popularity percentile (0-100) recommended."""
    items = np.concatenate([t.ravel() for t in topks])
    coverage = len(np.unique(items)) / len(popularity)
    pct = 100.0 * np.argsort(np.argsort(popularity, kind="stable"), kind="stable") / max(len(popularity) - 1, 1)
    return float(coverage), float(pct[items].mean())
