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
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from shop_recs.ml.types import Baskets, ItemAttributes

logger = logging.getLogger("shop_recs.ml.baselines")

__all__ = ["Popularity", "CoOccurrence", "ItemKNN", "EASE", "cooccurrence_counts",
           "ItemMatrixScorer"]

_TIE = 1e-6


def cooccurrence_counts(baskets: Baskets, chunk_pairs: int = 20_000_000) -> np.ndarray:
    """``C[i, j]`` = number of baskets holding both i and j (diagonal = item support). float32.

    Pairs are accumulated with ``bincount`` in chunks, so memory stays bounded by
    ``n_items**2`` plus one chunk, without building a basket x item matrix.
    """
    n = baskets.n_items
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
    matrix: np.ndarray  # float32 [n_items, n_items]
    popularity: np.ndarray  # float32 [n_items]

    def score(self, contexts: Sequence[np.ndarray],
              histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        out = np.empty((len(contexts), self.matrix.shape[1]), dtype=np.float32)
        tie = _TIE * self.popularity / max(float(self.popularity.max()), 1.0)
        for row, ctx in enumerate(contexts):
            out[row] = self.matrix[np.asarray(ctx, dtype=np.int64)].sum(axis=0) + tie
        return out

    def _set_popularity(self, train: Baskets) -> None:
        self.popularity = train.item_counts().astype(np.float32)


class Popularity(ItemMatrixScorer):
    name = "popularity"

    def fit(self, train: Baskets, attrs: ItemAttributes | None = None) -> "Popularity":
        self._set_popularity(train)
        return self

    def score(self, contexts, histories=None) -> np.ndarray:
        row = np.log1p(self.popularity)
        return np.repeat(row[None, :], len(contexts), axis=0)


class CoOccurrence(ItemMatrixScorer):
    KINDS = ("count", "confidence", "lift")

    def __init__(self, kind: str = "count", counts: np.ndarray | None = None) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}")
        self.kind = kind
        self.name = f"cooc_{kind}"
        self._counts = counts  # reuse a precomputed cooccurrence_counts() between variants

    def fit(self, train: Baskets, attrs: ItemAttributes | None = None) -> "CoOccurrence":
        self._set_popularity(train)
        c = self._counts if self._counts is not None else cooccurrence_counts(train)
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
    def __init__(self, k: int = 100, shrink: float = 10.0, counts: np.ndarray | None = None) -> None:
        self.k, self.shrink = k, shrink
        self.name = "item_knn"
        self._counts = counts

    def fit(self, train: Baskets, attrs: ItemAttributes | None = None) -> "ItemKNN":
        self._set_popularity(train)
        c = self._counts if self._counts is not None else cooccurrence_counts(train)
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
    def __init__(self, lam: float = 300.0, counts: np.ndarray | None = None) -> None:
        self.lam = lam
        self.name = "ease"
        self._counts = counts

    def fit(self, train: Baskets, attrs: ItemAttributes | None = None) -> "EASE":
        self._set_popularity(train)
        g = (self._counts if self._counts is not None else cooccurrence_counts(train))
        g = g.astype(np.float64)
        g[np.diag_indices_from(g)] += self.lam
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        self.matrix = b.astype(np.float32)
        return self
