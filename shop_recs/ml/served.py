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

Judging needs only the lists of the products that the evaluated orders hold: with
``anchors``, only those lists are built (the rest stay empty), and asking for another
product's list raises instead of serving an empty one (issue 15: a fifth of the lists at
10^6 products).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from shop_recs.ml.blend import standardise
from shop_recs.ml.candidates import blend_weight_lists, scales
from shop_recs.ml.topk import distinct, member, topk_of_scores

__all__ = ["PublishedLists", "anchor_rows", "top_lists", "sparse_lists", "blend_lists",
           "served_ranks"]

CHUNK = 256
QUERY_CHUNK = 65_536  # queries ranked at once by served_ranks (~15 entries each, int64)


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


def anchor_rows(n_items: int, anchors: np.ndarray | None = None) -> np.ndarray:
    """The products whose lists are built: ``anchors`` (sorted, distinct) or every one."""
    if anchors is None:
        return np.arange(n_items, dtype=np.int64)
    return distinct(np.asarray(anchors, dtype=np.int64))


def top_lists(score_rows: Callable[[np.ndarray], np.ndarray], n_items: int, top_k: int,
              chunk: int = CHUNK, anchors: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(items int [n_items, top_k], scores) of ``score_rows(anchors) -> [len, n_items]``;
    with ``anchors``, only their rows (the others -1 / 0)."""
    lists = np.full((n_items, top_k), -1, dtype=np.int64)
    scores = np.zeros((n_items, top_k))
    rows = anchor_rows(n_items, anchors)
    for start in range(0, len(rows), chunk):
        anchors = rows[start:start + chunk]
        idx, val = _top(score_rows(anchors), anchors, top_k)  # narrower below top_k items
        lists[anchors, :idx.shape[1]], scores[anchors, :idx.shape[1]] = idx, val
    return lists, scores


def sparse_lists(scorer, n_items: int, top_k: int, anchors: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_lists` of a sparse item-item scorer from its ``topk`` (the same lists)."""
    rows = anchor_rows(n_items, anchors)
    idx, vals = scorer.topk([np.asarray([a]) for a in rows], top_k)
    lists = np.full((n_items, top_k), -1, dtype=np.int64)
    scores = np.zeros((n_items, top_k))
    ok = np.isfinite(vals)
    lists[rows, :idx.shape[1]] = np.where(ok, idx, -1)
    scores[rows, :idx.shape[1]] = np.where(ok, vals.astype(np.float64), 0.0)
    return lists, scores


def blend_lists(first, second, weights: Sequence[float], n_items: int, top_k: int,
                name: str = "blend", chunk: int = CHUNK, anchors: np.ndarray | None = None
                ) -> dict[float, "PublishedLists"]:
    """``{w: lists of standardise(first) + w * standardise(second)}`` (inf: ``second``
    alone), the way ``BlendScorer.pair_weights(w)`` would publish them; each component is
    scored once per chunk of anchors (with ``anchors``, only theirs)."""
    rows = anchor_rows(n_items, anchors)
    covered = None if anchors is None else rows
    if scales([first, second]):  # above the dense size: by candidates (issue 15)
        return {w: PublishedLists.from_lists(lists, scores, name, covered=covered)
                for w, (lists, scores) in blend_weight_lists(
                    first, second, weights, n_items, top_k, anchors=rows).items()}
    out = {w: (np.full((n_items, top_k), -1, np.int64), np.zeros((n_items, top_k)))
           for w in weights}
    for start in range(0, len(rows), chunk):
        anchors = rows[start:start + chunk]
        contexts = [np.asarray([a]) for a in anchors]
        za = standardise(first.score(contexts))
        zb = standardise(second.score(contexts))
        for w, (lists, scores) in out.items():
            mixed = zb if np.isinf(w) else (za + np.float32(w) * zb if w else za)
            idx, val = _top(mixed, anchors, top_k)
            lists[anchors, :idx.shape[1]], scores[anchors, :idx.shape[1]] = idx, val
    return {w: PublishedLists.from_lists(lists, scores, name, covered=covered)
            for w, (lists, scores) in out.items()}


def _flat(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(owner row, value) of ragged int arrays, int64."""
    sizes = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    values = (np.concatenate([np.asarray(a, dtype=np.int64).ravel() for a in arrays])
              if sizes.sum() else np.zeros(0, dtype=np.int64))
    return np.repeat(np.arange(len(arrays), dtype=np.int64), sizes), values


def _served_chunk(lists: np.ndarray, scores: np.ndarray, contexts, targets, k: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`served_ranks` of one chunk of queries."""
    n = len(lists)
    q = len(contexts)
    c_own, c_item = _flat(contexts)
    ctx_keys = distinct(c_own * n + c_item)  # each query's distinct context items, sorted
    cq, citem = ctx_keys // n, ctx_keys % n
    width = lists.shape[1]
    eq = np.repeat(cq, width)
    item = lists[citem].ravel()
    score = scores[citem].ravel()
    pos = np.tile(np.arange(1, width + 1, dtype=np.int64), len(citem))
    key = eq * n + item
    keep = item >= 0
    keep[keep] = ~member(ctx_keys, key[keep])  # serving drops context items, order kept
    eq, item, score, pos, key = eq[keep], item[keep], score[keep], pos[keep], key[keep]
    # PublishedLists.merge, every query at once: entries by (position, -score) inside a
    # query; an item's first entry holds its best position, and its reciprocal ranks are
    # summed in that order (bincount adds in input order: the same floats as merge)
    first = np.lexsort((-score, pos, eq))
    key, item, score, pos, eq = key[first], item[first], score[first], pos[first], eq[first]
    uniq, at, inverse = np.unique(key, return_index=True, return_inverse=True)
    fusion = np.bincount(inverse.ravel(), weights=1.0 / pos, minlength=len(uniq))
    uq, uitem = uniq // n, uniq % n
    served = np.lexsort((uitem, -score[at], pos[at], -fusion, uq))  # serving order per query
    listed = np.bincount(uq, minlength=q)  # items each query's lists serve
    start = np.cumsum(listed) - listed
    rank_of = np.empty(len(uniq), dtype=np.int64)  # position in its query's served order
    rank_of[served] = np.arange(len(served)) - start[uq[served]]
    # the best-ranked target: the listed one served first, else (every target unranked, -inf)
    # the lowest item id, behind every listed item and every lower id (ties by item index)
    t_own, t_item = _flat(targets)
    t_key = t_own * n + t_item
    spot = np.searchsorted(uniq, t_key)
    found = spot < len(uniq)
    found[found] = uniq[spot[found]] == t_key[found]
    best = np.full(q, np.iinfo(np.int64).max)
    np.minimum.at(best, t_own[found], rank_of[spot[found]])
    lowest = np.full(q, n, dtype=np.int64)
    np.minimum.at(lowest, t_own, t_item)
    below = np.searchsorted(uniq, np.arange(q) * n + lowest) - start  # listed ids < lowest
    ranks = np.where(best < np.iinfo(np.int64).max, best, listed + lowest - below)
    # the top k: the served order, then (a short list) the lowest ids not served, as a
    # stable sort puts the -inf scores (context items among them)
    kk = min(k, n)
    top = np.full((q, kk), -1, dtype=np.int64)
    order_q, order_item = uq[served], uitem[served]
    r = np.arange(len(served)) - start[order_q]
    head = r < kk
    top[order_q[head], r[head]] = order_item[head]
    for row in np.flatnonzero(listed < kk):
        taken = set(order_item[start[row]:start[row] + listed[row]].tolist())
        fill = [j for j in range(min(n, kk + len(taken))) if j not in taken][:kk - listed[row]]
        top[row, listed[row]:listed[row] + len(fill)] = fill
    return ranks.astype(np.int64), top


def served_ranks(lists: np.ndarray, scores: np.ndarray, contexts: Sequence[np.ndarray],
                 targets: Sequence[np.ndarray], k: int, chunk: int = QUERY_CHUNK
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``rank_and_topk`` of published lists without a ``queries x n_items`` array.

    The same ranks and top-``k`` lists as ranking :meth:`PublishedLists.score` densely
    (served items in serving order, then every other item by id, context items at -inf), for
    every query at once from the lists' entries: memory and time grow with the queries times
    the context's list entries, not with the catalogue. int64 [q] and [q, min(k, n)].
    """
    ranks, tops = [], []
    for s in range(0, len(contexts), chunk):
        r, t = _served_chunk(lists, scores, contexts[s:s + chunk], targets[s:s + chunk], k)
        ranks.append(r)
        tops.append(t)
    if not ranks:
        return np.zeros(0, dtype=np.int64), np.zeros((0, min(k, len(lists))), dtype=np.int64)
    return np.concatenate(ranks), np.concatenate(tops)


class PublishedLists:
    """A scorer seen as served: its published lists, fused for several context items.

    With ``anchors``, only those products' lists are built; a context outside them raises
    ``ValueError`` (an empty list there would be a wrong figure, not a cheaper one).
    """

    def __init__(self, scorer, n_items: int, top_k: int = 10, chunk: int = CHUNK,
                 anchors: np.ndarray | None = None) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, not {top_k!r}")
        self.scorer, self.name, self.n_items = scorer, scorer.name, n_items
        self._cover(None if anchors is None else anchor_rows(n_items, anchors))
        if getattr(scorer, "lists_from_topk", False):
            # sparse item-item, popularity, a candidate-scored model: no chunk x n (issue 15)
            self.lists, self.list_scores = sparse_lists(scorer, n_items, top_k, anchors)
            return
        self.lists, self.list_scores = top_lists(
            lambda a: scorer.score([np.asarray([x]) for x in a]), n_items, top_k, chunk,
            anchors)

    @classmethod
    def from_lists(cls, lists: np.ndarray, scores: np.ndarray, name: str,
                   scorer=None, covered: np.ndarray | None = None) -> "PublishedLists":
        """Lists built elsewhere; ``covered``: the anchors they were built for (None: all)."""
        self = cls.__new__(cls)
        self.scorer, self.name, self.n_items = scorer, name, len(lists)
        self.lists, self.list_scores = np.asarray(lists, np.int64), np.asarray(scores)
        self._cover(covered)
        return self

    def _cover(self, rows: np.ndarray | None) -> None:
        self.covered = None
        if rows is not None:
            self.covered = np.zeros(self.n_items, dtype=bool)
            self.covered[rows] = True

    def require(self, items: np.ndarray) -> None:
        """Raise ``ValueError`` unless every product of ``items`` has its list built."""
        if self.covered is None:
            return
        items = np.asarray(items, dtype=np.int64).ravel()
        if len(items) and not self.covered[items].all():
            missing = items[~self.covered[items]]
            raise ValueError(f"{self.name}: lists were built for some anchors only; "
                             f"{len(missing)} context item(s) have none (e.g. {missing[0]})")

    def same_as(self, other: "PublishedLists") -> bool:
        """Whether both publish the same lists with the same scores (so rank the same)."""
        mine, theirs = self.covered, other.covered
        return ((mine is None) == (theirs is None)
                and (mine is None or np.array_equal(mine, theirs))
                and np.array_equal(self.lists, other.lists)
                and np.array_equal(self.list_scores, other.list_scores))

    def fit(self, train=None, attrs=None) -> "PublishedLists":
        return self  # the lists come from a fitted scorer

    def merge(self, context: np.ndarray) -> np.ndarray:
        """The items the lists of ``context`` serve, in serving order (context items
        included: serving drops them without reordering the rest)."""
        ctx = np.unique(np.asarray(context, dtype=np.int64))
        self.require(ctx)
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

    def rank_and_topk(self, contexts, targets, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``topk.rank_and_topk`` of :meth:`score`, from the lists (see :func:`served_ranks`)."""
        if self.covered is not None:
            self.require(_flat(contexts)[1])
        return served_ranks(self.lists, self.list_scores, contexts, targets, k)

    def score(self, contexts, histories=None) -> np.ndarray:
        """Served order as scores (float32 [len(contexts), n_items]); -inf off the lists."""
        out = np.full((len(contexts), self.n_items), -np.inf, dtype=np.float32)
        for row, ctx in enumerate(contexts):
            order = self.merge(ctx)
            out[row, order] = np.arange(len(order), 0, -1, dtype=np.float32)
        return out
