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
    "query_chunks", "score_chunk", "query_rows",
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


def time_rows(baskets: Baskets, val_frac: float = 0.1,
              test_frac: float = 0.1) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(order, {"train", "val", "test": rows})``: the orders sorted by time (stable) and
    cut into the oldest, then ``val_frac``, then the latest ``test_frac`` of them."""
    order = np.argsort(baskets.timestamps, kind="stable")
    n = len(order)
    n_test, n_val = int(round(n * test_frac)), int(round(n * val_frac))
    n_train = n - n_test - n_val
    if n_train < 1 or n_val < 1 or n_test < 1:
        raise DataError(f"too few orders ({n}) for a train/validation/test split")
    return order, {"train": order[:n_train], "val": order[n_train:n_train + n_val],
                   "test": order[n_train + n_val:]}


def temporal_split(baskets: Baskets, index: ItemIndex, attrs: ItemAttributes,
                   val_frac: float = 0.1, test_frac: float = 0.1, min_count: int = 2) -> Split:
    """Split orders by time and restrict everything to the training catalogue."""
    order, rows = time_rows(baskets, val_frac, test_frac)
    n, n_train, n_val = len(order), len(rows["train"]), len(rows["val"])
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
    Anonymous orders get an empty history. Nothing from the future leaks in. Array
    operations throughout (issue 15: millions of orders in seconds).
    """
    pool_c, pool_t = history_pool.customers, history_pool.timestamps
    # the pool by customer, then time (ties: pool order, as a stable sort by time gives)
    order = np.lexsort((np.arange(len(pool_c)), pool_t, pool_c))
    order = order[pool_c[order] >= 0]
    sc, st = pool_c[order], pool_t[order]
    qc, qt = baskets.customers, baskets.timestamps
    lo = np.searchsorted(sc, qc, "left")
    hi = np.searchsorted(sc, qc, "right")
    # orders of the customer strictly before the basket: binary search on (customer, time)
    end = lo + _count_before(st, lo, hi, qt)
    end = np.where(qc >= 0, end, lo)
    start = np.maximum(lo, end - max_orders)
    n_orders = end - start
    # the chosen pool orders, most recent first, and their items in basket order
    q_of = np.repeat(np.arange(len(qc)), n_orders)
    nth = np.arange(len(q_of)) - np.repeat(np.cumsum(n_orders) - n_orders, n_orders)
    chosen = order[np.repeat(end, n_orders) - 1 - nth]
    sizes = history_pool.sizes[chosen]
    at = np.repeat(history_pool.indptr[chosen] - np.cumsum(sizes) + sizes, sizes) + np.arange(
        int(sizes.sum()))
    items = history_pool.items[at].astype(np.int32)
    owner = np.repeat(q_of, sizes)
    per_q = np.bincount(owner, minlength=len(qc))
    first = np.cumsum(per_q) - per_q
    keep = (np.arange(len(owner)) - first[owner]) < max_items
    counts = np.minimum(per_q, max_items)
    return np.split(items[keep], np.cumsum(counts)[:-1]) if len(qc) else []


def _count_before(sorted_t: np.ndarray, lo: np.ndarray, hi: np.ndarray, t: np.ndarray
                  ) -> np.ndarray:
    """For each query, how many of ``sorted_t[lo:hi]`` (sorted) are < ``t``: a vectorised
    binary search over every query's own range at once."""
    left, right = lo.copy(), hi.copy()
    while True:
        active = left < right
        if not active.any():
            return left - lo
        mid = (left + right) // 2
        less = active & (sorted_t[np.minimum(mid, len(sorted_t) - 1)] < t)
        left = np.where(less, mid + 1, left)
        right = np.where(active & ~less, mid, right)


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


def _hits(topk: np.ndarray, targets: Sequence[np.ndarray], k: int) -> np.ndarray:
    """bool [q, min(k, width)]: whether each listed item is one of its row's targets."""
    top = np.asarray(topk, dtype=np.int64)[:, :k]
    lengths = np.array([len(t) for t in targets], dtype=np.int64)
    flat = (np.concatenate([np.asarray(t, dtype=np.int64) for t in targets]) if lengths.sum()
            else np.zeros(0, dtype=np.int64))
    span = int(max(top.max(initial=0), flat.max(initial=0))) + 2  # -1 pads never match
    keys = (top + 1) + np.arange(len(top))[:, None] * span
    return np.isin(keys, flat + 1 + np.repeat(np.arange(len(lengths)), lengths) * span) & (
        top >= 0)


def recall_at_k(topk: np.ndarray, targets: Sequence[np.ndarray], k: int = 10) -> float:
    """Hits in the top k over min(k, |targets|), so a perfect list scores 1."""
    if len(targets) == 0:
        return float(np.mean([]))
    lengths = np.array([len(t) for t in targets])
    return float(np.mean(_hits(topk, targets, k).sum(1) / np.minimum(k, lengths)))


def multi_ndcg_rows(topk: np.ndarray, targets: Sequence[np.ndarray], k: int = 10) -> np.ndarray:
    """Per-row NDCG@k of a list against several targets (float64 [q]).

    Each distinct hit pattern's DCG is summed once the way a single row's would be, so the
    figures are the same to the last bit as a per-row loop, without one."""
    if len(targets) == 0:
        return np.zeros(0, dtype=np.float64)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    hits = _hits(topk, targets, k)  # a catalogue smaller than k gives shorter lists
    width = hits.shape[1]
    codes = hits.astype(np.int64) @ (1 << np.arange(width, dtype=np.int64))
    patterns, inverse = np.unique(codes, return_inverse=True)
    dcg = np.array([float(disc[:width][(int(c) >> np.arange(width)) & 1 == 1].sum())
                    for c in patterns])
    ideal = np.array([float(disc[:m].sum()) for m in range(k + 1)])
    lengths = np.array([len(t) for t in targets])
    return dcg[inverse.ravel()] / ideal[np.minimum(k, lengths)]


def multi_ndcg_at_k(topk: np.ndarray, targets: Sequence[np.ndarray], k: int = 10) -> float:
    return float(np.mean(multi_ndcg_rows(topk, targets, k)))


def query_chunks(queries: Queries, batch_size: int = 256):
    """(start, contexts, histories, targets) of consecutive chunks of ``queries``."""
    for start in range(0, len(queries.contexts), batch_size):
        stop = start + batch_size
        yield (start, queries.contexts[start:stop],
               None if queries.histories is None else queries.histories[start:stop],
               queries.targets[start:stop])


def score_chunk(scorer: "Scorer | np.ndarray", start: int, contexts, histories=None):
    """Scores of one chunk: a slice of precomputed scores, or the scorer run on it."""
    if isinstance(scorer, np.ndarray):
        return scorer[start:start + len(contexts)]
    return scorer.score(contexts, histories)


def query_rows(scores: np.ndarray, contexts, targets, k: int = 10) -> dict:
    """Per-query figures of one chunk of scores: {hr, ndcg, mrr, recall, multi_ndcg} float
    [b] (their means over all chunks are :func:`evaluate`'s figures), and ``topk``."""
    best, top = rank_and_topk(scores, contexts, targets, k)
    ranks = np.asarray(best)
    lengths = np.array([len(t) for t in targets])
    return {"hr": (ranks < k).astype(np.float64), "ndcg": ndcg_rows(ranks, k),
            "mrr": 1.0 / (ranks.astype(np.float64) + 1),
            "recall": (_hits(top, targets, k).sum(1) / np.minimum(k, lengths)
                       if len(targets) else np.zeros(0)),
            "multi_ndcg": multi_ndcg_rows(top, targets, k), "topk": top}


def evaluate(scorer: "Scorer | np.ndarray", queries: Queries, popularity: np.ndarray,
             k: int = 10, batch_size: int = 256) -> dict:
    """Full-ranking metrics of ``scorer`` (or of precomputed scores [n, n_items]) on ``queries``.

    Returns hr, ndcg, mrr (the single-target view), recall (multi-target view), plus the
    top-k lists (``"topk"``, int [n, k]) for coverage and popularity figures and the per-query
    values (``"rows"``: {"ndcg", "multi_ndcg"} float [n]) that paired comparisons resample.
    Scores exist one chunk of ``batch_size`` queries at a time.
    """
    ranks, tops = [], []
    served = getattr(scorer, "rank_and_topk", None)  # published lists rank without scores
    if served is not None:
        ranks_arr, topk = served(queries.contexts, queries.targets, k)
    else:
        for start, ctx, hist, tgt in query_chunks(queries, batch_size):
            scores = score_chunk(scorer, start, ctx, hist)
            # the ranks and lists of rank_items' stable sort, in O(n) per query (issue 15)
            best, top = rank_and_topk(scores, ctx, tgt, k)
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
