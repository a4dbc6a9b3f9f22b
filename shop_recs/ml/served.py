"""What a shop is served: per-product published lists, merged for a cart the way serving merges.

A run publishes, for every product, the top ``top_k`` products of its scorer
(``shop_recs.publish.build``); no model runs at request time. The product page shows the
anchor's list; the cart widget (``ranking.complete_the_cart``) merges the lists of the cart's
items by reciprocal-rank fusion (``serving_queries._fuse``): an item's score is the sum of
``1 / position`` over the lists it is on; ties go to its best position, then to the higher
stored score at that position. So a figure that describes what ships scores every candidate
through these lists, on both tasks::

    served = PublishedLists(ease, n_items, top_k=10)
    evaluate(served, complete_queries(split.test), pop)   # the cart, as served
    evaluate(served, anchor_queries(split.test), pop)     # the product page, as served

Products on no list of the cart are not ranked (-inf; the fallback lists fill the widget the
same way whatever scorer published). :func:`blend_lists` builds the lists of a weighted blend
for a whole grid of weights from one pass over the catalogue.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from shop_recs.ml.blend import standardise
from shop_recs.ml.topk import topk_of_scores

__all__ = ["PublishedLists", "top_lists", "sparse_lists", "blend_lists"]

CHUNK = 256


def _top(scores: np.ndarray, anchors: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``top_k`` items of each row (the anchor and non-finite scores left out, -1 pads),
    ordered like ``publish.build``: decreasing score, ties by item index."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    scores[~np.isfinite(scores)] = -np.inf
    scores[np.arange(len(anchors)), anchors] = -np.inf
    best = topk_of_scores(scores, top_k)  # a stable argsort's first top_k, O(n) a row
    vals = np.take_along_axis(scores, best, axis=1)
    best = np.where(np.isfinite(vals), best, -1)
    return best.astype(np.int64), np.where(np.isfinite(vals), vals, 0.0)


def top_lists(score_rows: Callable[[np.ndarray], np.ndarray], n_items: int, top_k: int,
              chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(items int [n_items, top_k], scores) of ``score_rows(anchors) -> [len, n_items]``."""
    lists = np.full((n_items, top_k), -1, dtype=np.int64)
    scores = np.zeros((n_items, top_k))
    for start in range(0, n_items, chunk):
        anchors = np.arange(start, min(start + chunk, n_items))
        lists[anchors], scores[anchors] = _top(score_rows(anchors), anchors, top_k)
    return lists, scores


def sparse_lists(scorer, n_items: int, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_lists` of a sparse item-item scorer from its ``topk`` (the same lists)."""
    idx, vals = scorer.topk([np.asarray([a]) for a in range(n_items)], top_k)
    lists = np.full((n_items, top_k), -1, dtype=np.int64)
    scores = np.zeros((n_items, top_k))
    ok = np.isfinite(vals)
    lists[:, :idx.shape[1]] = np.where(ok, idx, -1)
    scores[:, :idx.shape[1]] = np.where(ok, vals.astype(np.float64), 0.0)
    return lists, scores


def blend_lists(first, second, weights: Sequence[float], n_items: int, top_k: int,
                name: str = "blend", chunk: int = CHUNK) -> dict[float, "PublishedLists"]:
    """``{w: lists of standardise(first) + w * standardise(second)}`` (inf: ``second``
    alone), the way ``BlendScorer.pair_weights(w)`` would publish them; each component is
    scored once per chunk of anchors."""
    out = {w: (np.full((n_items, top_k), -1, np.int64), np.zeros((n_items, top_k)))
           for w in weights}
    for start in range(0, n_items, chunk):
        anchors = np.arange(start, min(start + chunk, n_items))
        contexts = [np.asarray([a]) for a in anchors]
        za = standardise(first.score(contexts))
        zb = standardise(second.score(contexts))
        for w, (lists, scores) in out.items():
            mixed = zb if np.isinf(w) else (za + np.float32(w) * zb if w else za)
            lists[anchors], scores[anchors] = _top(mixed, anchors, top_k)
    return {w: PublishedLists.from_lists(lists, scores, name) for w, (lists, scores)
            in out.items()}


class PublishedLists:
    """A scorer seen as served: its published lists, fused for several context items."""

    def __init__(self, scorer, n_items: int, top_k: int = 10, chunk: int = CHUNK) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, not {top_k!r}")
        self.scorer, self.name, self.n_items = scorer, scorer.name, n_items
        if sp.issparse(getattr(scorer, "matrix", None)) and hasattr(scorer, "topk"):
            # a sparse item-item scorer: its lists without a dense chunk x n (issue 15)
            self.lists, self.list_scores = sparse_lists(scorer, n_items, top_k)
            return
        self.lists, self.list_scores = top_lists(
            lambda a: scorer.score([np.asarray([x]) for x in a]), n_items, top_k, chunk)

    @classmethod
    def from_lists(cls, lists: np.ndarray, scores: np.ndarray, name: str,
                   scorer=None) -> "PublishedLists":
        self = cls.__new__(cls)
        self.scorer, self.name, self.n_items = scorer, name, len(lists)
        self.lists, self.list_scores = np.asarray(lists, np.int64), np.asarray(scores)
        return self

    def fit(self, train=None, attrs=None) -> "PublishedLists":
        return self  # the lists come from a fitted scorer

    def merge(self, context: np.ndarray) -> np.ndarray:
        """The items the lists of ``context`` serve, in serving order (context items
        included: serving drops them without reordering the rest)."""
        ctx = np.unique(np.asarray(context, dtype=np.int64))
        lists, scores = self.lists[ctx], self.list_scores[ctx]
        pos = np.broadcast_to(np.arange(1, lists.shape[1] + 1), lists.shape)
        ok = lists >= 0
        items, pos, scores = lists[ok], pos[ok], scores[ok]
        if len(ctx) == 1:
            return items  # one anchor: its list in order
        # each item's first row in (position, -score) order holds its best position
        first = np.lexsort((-scores, pos))
        uniq, at, inverse = np.unique(items[first], return_index=True, return_inverse=True)
        fusion = np.zeros(len(uniq))
        np.add.at(fusion, inverse, 1.0 / pos[first])
        best_pos, best_score = pos[first][at], scores[first][at]
        return uniq[np.lexsort((uniq, -best_score, best_pos, -fusion))]

    def score(self, contexts, histories=None) -> np.ndarray:
        """Served order as scores (float32 [len(contexts), n_items]); -inf off the lists."""
        out = np.full((len(contexts), self.n_items), -np.inf, dtype=np.float32)
        for row, ctx in enumerate(contexts):
            order = self.merge(ctx)
            out[row, order] = np.arange(len(order), 0, -1, dtype=np.float32)
        return out
