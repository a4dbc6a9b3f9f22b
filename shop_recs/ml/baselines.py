"""Baseline scorers (numpy only): real competitors for the learned model and its cold-start fallback.

* :class:`Popularity` - how many training orders contain the item.
* :class:`CoOccurrence` - pair counts summed over the context; ``kind`` = ``count``,
  ``confidence`` (count / support of the context item) or ``lift``.
* :class:`ItemKNN` - cosine similarity of item purchase vectors, top ``k`` neighbours kept.
* :class:`EASE` - Steck (2019), "Embarrassingly Shallow Autoencoders for Sparse Data":
  ``B = I - P / diag(P)`` with ``P = (X^T X + lambda I)^-1``, diagonal forced to 0.

All implement the :class:`shop_recs.ml.evaluate.Scorer` protocol::

    ease = EASE(lam=300).fit(train)
    scores = ease.score([np.array([3, 17])])  # float32 [1, n_items]

A tiny popularity term breaks ties among items a baseline cannot tell apart (e.g. never
co-bought), so their order is meaningful rather than by index.

Catalogue size: :func:`cooccurrence_counts` returns a dense array up to
``shop_recs.ml.sparse.DENSE_MAX_ITEMS`` products and a SciPy CSR matrix above (the one rule,
``sparse.use_dense``); each baseline follows the type of the counts it is given, so above the
threshold nothing allocates ``n_items²``: item-item matrices are CSR pruned per row to
``keep`` neighbours, and EASE becomes ``sparse.head_tail_ease`` (exact on the ``head_items``
best sellers). Sparse and dense give the same single-anchor top-``keep`` lists where both apply.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from shop_recs.ml import sparse
from shop_recs.ml.candidates import flat_rows, row_sets, split_counts
from shop_recs.ml.topk import rank_and_topk, rank_sparse, topk_rows, topk_sparse
from shop_recs.ml.types import Baskets, ItemAttributes

logger = logging.getLogger("shop_recs.ml.baselines")

__all__ = ["Popularity", "CoOccurrence", "ItemKNN", "EASE", "cooccurrence_counts",
           "ItemMatrixScorer"]

_TIE = 1e-6


def cooccurrence_counts(baskets: Baskets, chunk_pairs: int = 20_000_000,
                        dense_max_items: int | None = None) -> "np.ndarray | sp.csr_matrix":
    """``C[i, j]`` = number of baskets holding both i and j (diagonal = item support). float32.

    Dense up to ``dense_max_items`` products (default ``sparse.DENSE_MAX_ITEMS``): pairs are
    accumulated with ``bincount`` in chunks, memory ``n_items**2`` plus one chunk. Above it,
    a CSR matrix (``sparse.sparse_cooccurrence``), memory in the number of distinct pairs.
    """
    n = baskets.n_items
    if not sparse.use_dense(n, dense_max_items):
        return sparse.sparse_cooccurrence(baskets)
    flat = np.zeros(n * n, dtype=np.float64)
    buf: list[np.ndarray] = []
    pending = 0
    for items in baskets.as_list():
        if len(items) == 0:
            continue
        items = items.astype(np.int64)
        buf.append((items[:, None] * n + items[None, :]).ravel())
        pending += len(items) ** 2
        if pending >= chunk_pairs:
            flat += np.bincount(np.concatenate(buf), minlength=n * n)
            buf, pending = [], 0
    if buf:
        flat += np.bincount(np.concatenate(buf), minlength=n * n)
    return flat.reshape(n, n).astype(np.float32)


class ItemMatrixScorer:
    """Scores a context as the sum of item-item rows: ``score[j] = sum_{a in ctx} M[a, j]``."""

    name = "item_matrix"
    matrix: "np.ndarray | sp.csr_matrix"  # float32 [n_items, n_items], CSR above the threshold
    popularity: np.ndarray  # float32 [n_items]

    def score(self, contexts: Sequence[np.ndarray],
              histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        tie = _TIE * self.popularity / max(float(self.popularity.max(initial=0.0)), 1.0)
        if sp.issparse(self.matrix):
            q = sparse.context_matrix(contexts, self.matrix.shape[0])  # [len, n] 0/1
            return (q @ self.matrix).toarray().astype(np.float32) + tie[None, :]
        out = np.empty((len(contexts), self.matrix.shape[1]), dtype=np.float32)
        for row, ctx in enumerate(contexts):
            out[row] = self.matrix[np.asarray(ctx, dtype=np.int64)].sum(axis=0) + tie
        return out

    def score_candidates(self, contexts: Sequence[np.ndarray], candidates: np.ndarray
                         ) -> np.ndarray:
        """``score(contexts)`` at each row's ``candidates`` (int [len, m]) only: float32
        [len, m], the same values, without a ``len x n`` row on the sparse path (issue 15)."""
        cand = np.asarray(candidates, dtype=np.int64)
        tie = _TIE * self.popularity / max(float(self.popularity.max(initial=0.0)), 1.0)
        if not sp.issparse(self.matrix):
            return np.take_along_axis(self.score(contexts), cand, 1)
        n = self.matrix.shape[0]
        prod = (sparse.context_matrix(contexts, n) @ self.matrix).tocsr()
        prod.sort_indices()
        # each (row, candidate) looked up among the product's sorted (row, column) keys: a
        # binary search, faster than SciPy's element indexing
        keys = np.repeat(np.arange(len(contexts), dtype=np.int64), np.diff(prod.indptr)) * n \
            + prod.indices
        want = (np.arange(len(contexts), dtype=np.int64)[:, None] * n + cand).ravel()
        spot = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
        hit = keys[spot] == want if len(keys) else np.zeros(len(want), dtype=bool)
        vals = np.where(hit, prod.data[spot] if len(keys) else 0.0, 0.0).astype(np.float32)
        return vals.reshape(cand.shape) + tie[cand]

    def topk(self, contexts: Sequence[np.ndarray], k: int, chunk: int = 256,
             allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` items per context, context excluded: int64 [q, k], float32 [q, k].

        Same lists as sorting :meth:`score` (ties by index); never ``q x n`` at once, and on
        the sparse path never ``chunk x n`` either. ``allowed`` (bool [n]): only these are
        listed (-inf past them).
        """
        if sp.issparse(self.matrix):
            return topk_sparse(self.matrix, contexts, k, self._tie(), allowed=allowed)
        if allowed is None:
            return topk_rows(self.score, contexts, k, chunk)
        ok = np.asarray(allowed, dtype=bool)
        return topk_rows(lambda c: np.where(ok[None, :], self.score(c), -np.inf), contexts, k,
                         chunk)

    def rank_and_topk(self, contexts: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                      k: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """``topk.rank_and_topk`` of :meth:`score` (what ``evaluate`` computes); on the sparse
        path from the matrix's entries, never ``chunk x n`` (issue 15)."""
        if sp.issparse(getattr(self, "matrix", None)):
            tie = _TIE * self.popularity / max(float(self.popularity.max(initial=0.0)), 1.0)
            return rank_sparse(self.matrix, contexts, targets, k, tie)
        ranks, tops = [], []
        for s in range(0, len(contexts), chunk):
            r, t = rank_and_topk(self.score(contexts[s:s + chunk]), contexts[s:s + chunk],
                                 targets[s:s + chunk], k)
            ranks.append(r)
            tops.append(t)
        if not ranks:
            return np.zeros(0, np.int64), np.zeros((0, k), np.int64)
        return np.concatenate(ranks), np.concatenate(tops)

    def _tie(self) -> np.ndarray:
        return _TIE * self.popularity / max(float(self.popularity.max(initial=0.0)), 1.0)

    def row_moments(self, contexts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of each :meth:`score` row over the catalogue (float64 [len]), from
        the sparse rows' entries: every item without an entry scores its tie-break alone."""
        tie = self._tie().astype(np.float64)
        n = len(tie)
        prod = (sparse.context_matrix(contexts, n) @ self.matrix).tocsr()
        rows = np.repeat(np.arange(len(contexts)), np.diff(prod.indptr))
        t = tie[prod.indices]
        v = prod.data.astype(np.float64) + t
        s1 = tie.sum() + np.bincount(rows, weights=v - t, minlength=len(contexts))
        s2 = (tie ** 2).sum() + np.bincount(rows, weights=v ** 2 - t ** 2,
                                            minlength=len(contexts))
        mean = s1 / n
        return mean, np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0))

    def candidates(self, contexts: Sequence[np.ndarray], head: int = 50) -> list[np.ndarray]:
        """Each context's items with a stored entry on its rows, and the ``head`` best
        sellers (the rest score their tie-break alone), context items removed."""
        n = len(self.popularity)
        prod = (sparse.context_matrix(contexts, n) @ self.matrix).tocsr()
        best = np.lexsort((np.arange(n), -self.popularity))[:head]
        q = len(contexts)  # every row at once: (row, item) keys, sorted and split
        owner = np.concatenate([np.repeat(np.arange(q), np.diff(prod.indptr)),
                                np.repeat(np.arange(q), len(best))])
        items = np.concatenate([prod.indices.astype(np.int64), np.tile(best, q)])
        return row_sets(owner, items, q, flat_rows(contexts))

    @property
    def lists_from_topk(self) -> bool:
        """Whether :meth:`topk` gives the published lists without a dense row (sparse)."""
        return sp.issparse(getattr(self, "matrix", None))

    def _set_popularity(self, train: Baskets) -> None:
        self.popularity = train.item_counts().astype(np.float32)


class Popularity(ItemMatrixScorer):
    name = "popularity"
    lists_from_topk = True  # one row for every anchor

    def fit(self, train: Baskets, attrs: ItemAttributes | None = None) -> "Popularity":
        self._set_popularity(train)
        return self

    def score(self, contexts, histories=None) -> np.ndarray:
        row = np.log1p(self.popularity)
        return np.repeat(row[None, :], len(contexts), axis=0)

    def score_candidates(self, contexts, candidates) -> np.ndarray:
        return np.log1p(self.popularity)[np.asarray(candidates, dtype=np.int64)]

    def row_moments(self, contexts) -> tuple[np.ndarray, np.ndarray]:
        row = np.log1p(self.popularity).astype(np.float64)
        return np.full(len(contexts), row.mean()), np.full(len(contexts), row.std())

    def candidates(self, contexts, head: int = 200) -> list[np.ndarray]:
        n = len(self.popularity)
        best = np.lexsort((np.arange(n), -self.popularity))[:head]
        own, item = flat_rows(contexts)  # each row's best sellers, in order, less its context
        taken = np.isin(np.arange(len(contexts))[:, None] * n + best[None, :], own * n + item,
                        kind="sort")
        keep = ~taken
        return split_counts(np.tile(best, len(contexts))[keep.ravel()], keep.sum(1))

    def topk(self, contexts: Sequence[np.ndarray], k: int, chunk: int = 4096,
             allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`ItemMatrixScorer.topk` of the one popularity row: the best sellers in
        order (ties by index), each context's items skipped; O(k + |context|) a query."""
        row = np.log1p(self.popularity).astype(np.float32)
        n = len(row)
        sizes = np.fromiter((len(c) for c in contexts), dtype=np.int64, count=len(contexts))
        width = min(n, k + int(sizes.max(initial=0)))  # enough best sellers for every query
        head = np.lexsort((np.arange(n), -row))
        if allowed is not None:
            head = head[np.asarray(allowed, dtype=bool)[head]]
        head = head[:width]
        kk = min(k, n)
        idx = np.zeros((len(contexts), kk), dtype=np.int64)
        val = np.full((len(contexts), kk), -np.inf, dtype=np.float32)
        for s in range(0, len(contexts), chunk):
            ctx = contexts[s:s + chunk]
            own = np.repeat(np.arange(len(ctx)), sizes[s:s + len(ctx)])
            flat = (np.concatenate([np.asarray(c, dtype=np.int64) for c in ctx])
                    if len(own) else np.zeros(0, dtype=np.int64))
            # head items that are in the row's context: a sorted (row, item) key lookup
            keys = np.sort(own * n + flat)
            cand = np.arange(len(ctx))[:, None] * n + head[None, :]
            spot = np.minimum(np.searchsorted(keys, cand), max(len(keys) - 1, 0))
            taken = (keys[spot] == cand) if len(keys) else np.zeros(cand.shape, dtype=bool)
            # the first kk untaken head items of each row, in head order
            order = np.argsort(taken, axis=1, kind="stable")[:, :kk]
            ok = ~np.take_along_axis(taken, order, 1)
            items = head[order]
            idx[s:s + len(ctx), :order.shape[1]] = items
            val[s:s + len(ctx), :order.shape[1]] = np.where(ok, row[items], -np.inf)
        return idx, val


class CoOccurrence(ItemMatrixScorer):
    KINDS = ("count", "confidence", "lift")

    def __init__(self, kind: str = "count", counts=None, keep: int = sparse.KEEP) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}")
        self.kind = kind
        self.name = f"cooc_{kind}"
        self._counts = counts  # reuse a precomputed cooccurrence_counts() between variants
        self.keep = keep  # neighbours kept per item on the sparse path

    def fit(self, train: Baskets, attrs: ItemAttributes | None = None) -> "CoOccurrence":
        self._set_popularity(train)
        c = self._counts if self._counts is not None else cooccurrence_counts(train)
        self._counts = None  # the shared counts are not kept by a fitted scorer
        if sp.issparse(c):
            self.matrix = sparse.transform_rows(c, self.kind, len(train), self.keep)
            return self
        support = np.maximum(np.diag(c).astype(np.float32), 1.0)
        m = c.copy()
        np.fill_diagonal(m, 0.0)
        if self.kind == "confidence":
            m /= support[:, None]
        elif self.kind == "lift":
            m *= len(train) / (support[:, None] * support[None, :])
        self.matrix = m
        return self


class ItemKNN(ItemMatrixScorer):
    def __init__(self, k: int = 100, shrink: float = 10.0, counts=None) -> None:
        self.k, self.shrink = k, shrink
        self.name = "item_knn"
        self._counts = counts

    def fit(self, train: Baskets, attrs: ItemAttributes | None = None) -> "ItemKNN":
        self._set_popularity(train)
        c = self._counts if self._counts is not None else cooccurrence_counts(train)
        self._counts = None  # the shared counts are not kept by a fitted scorer
        if sp.issparse(c):
            self.matrix = sparse.transform_rows(c, "cosine", len(train), self.k, self.shrink)
            return self
        support = np.diag(c).astype(np.float32)
        norm = np.sqrt(support)
        sim = c / (norm[:, None] * norm[None, :] + self.shrink)
        np.fill_diagonal(sim, 0.0)
        if self.k < sim.shape[1]:
            # keep the k nearest neighbours of each item; the rest are noise on sparse data
            cut = np.partition(sim, -self.k, axis=1)[:, -self.k][:, None]
            sim = np.where(sim >= cut, sim, 0.0)
        self.matrix = sim.astype(np.float32)
        return self


class EASE(ItemMatrixScorer):
    def __init__(self, lam: float = 300.0, counts=None, head_items: int | None = None,
                 keep: int = sparse.KEEP) -> None:
        self.lam = lam
        self.name = "ease"
        self._counts = counts
        # sparse path: exact EASE on this many best sellers (see sparse.EASE_HEAD_ITEMS)
        self.head_items = sparse.EASE_HEAD_ITEMS if head_items is None else head_items
        self.keep = keep

    def fit(self, train: Baskets, attrs: ItemAttributes | None = None) -> "EASE":
        self._set_popularity(train)
        g = (self._counts if self._counts is not None else cooccurrence_counts(train))
        self._counts = None  # the shared counts are not kept by a fitted scorer
        if sp.issparse(g):
            self.matrix = sparse.head_tail_ease(g, self.lam, self.head_items, self.keep)
            return self
        g = g.astype(np.float64)
        g[np.diag_indices_from(g)] += self.lam
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        self.matrix = b.astype(np.float32)
        return self
