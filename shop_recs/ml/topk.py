"""Top-k lists and target ranks without sorting whole score rows (numpy only, no torch).

A full ``argsort`` of ``queries x n_items`` scores costs ``n log n`` per query and dominates
evaluation and publishing once the catalogue has 10^4-10^6 products. These functions give
exactly the lists and ranks of a stable full sort (score descending, ties by item index,
context items last) in ``O(n)`` per query:

* :func:`rank_and_topk` - for evaluation: each query's best-ranked target and its top k.
* :func:`topk_rows` - chunked top-k of any score function, never ``queries x n`` at once.
* :func:`topk_sparse` - top-k of a sparse item-item matrix's scores, never ``chunk x n``.
* :func:`topk_candidates` - top-k of a scorer asked about each query's candidates only.

Usage::

    ranks, top = rank_and_topk(scores, contexts, targets, k=10)   # int64 [b], int64 [b, k]
    idx, val = topk_rows(scorer.score, [np.array([a]) for a in anchors], k=10)
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from shop_recs.ml.sparse import context_matrix

__all__ = ["masked", "rank_and_topk", "topk_of_scores", "topk_rows", "topk_sparse",
           "topk_candidates"]


def masked(scores: np.ndarray, contexts: Sequence[np.ndarray], dtype=np.float64) -> np.ndarray:
    """A copy of ``scores`` with non-finite entries and each row's context items at -inf."""
    s = np.array(scores, dtype=dtype, copy=True)
    s[~np.isfinite(s)] = -np.inf
    for row, ctx in enumerate(contexts):
        s[row, np.asarray(ctx, dtype=np.int64)] = -np.inf
    return s


def topk_of_scores(s: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's ``k`` best entries of (already masked) ``s``: score descending,
    ties by index, as ``np.argsort(-s, kind="stable")[:, :k]`` gives them. int64 [b, k]."""
    b, n = s.shape
    kk = min(k, n)
    if kk == 0:
        return np.zeros((b, 0), dtype=np.int64)
    part = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n),
                                                                               (b, 1))
    # argpartition cuts arbitrarily among ties: take every item tied with the k-th value
    kth = np.take_along_axis(s, part, 1).min(axis=1)
    out = np.empty((b, kk), dtype=np.int64)
    for r in range(b):
        cand = np.flatnonzero(s[r] >= kth[r])
        out[r] = cand[np.lexsort((cand, -s[r, cand]))[:kk]]
    return out


def rank_and_topk(scores: np.ndarray, contexts: Sequence[np.ndarray],
                  targets: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """0-based rank of each row's best-ranked target, and its top ``k`` (int64 [b], [b, k]).

    Identical to ranking with ``evaluate.rank_items`` (float64, non-finite scores and context
    items last, ties by index). The best target is the one with the highest score (lowest
    index among equals); its rank is the count of items that sort before it.
    """
    s = masked(scores, contexts)
    b, n = s.shape
    best_item = np.empty(b, dtype=np.int64)
    for r, t in enumerate(targets):
        t = np.asarray(t, dtype=np.int64)
        best_item[r] = t[np.lexsort((t, -s[r, t]))[0]]
    best = s[np.arange(b), best_item]
    ahead = (s > best[:, None]).sum(1) + (
        (s == best[:, None]) & (np.arange(n)[None, :] < best_item[:, None])).sum(1)
    return ahead.astype(np.int64), topk_of_scores(s, k)


def topk_rows(score: Callable[[Sequence[np.ndarray]], np.ndarray],
              contexts: Sequence[np.ndarray], k: int, chunk: int = 256, dtype=np.float32
              ) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` items per context (context excluded) in chunks of ``chunk`` contexts.

    ``score`` maps a list of contexts to float scores [len, n_items]; only ``chunk x n`` is
    held at once. Returns int64 [q, k] indices and [q, k] scores in ``dtype`` (-inf where a
    context left fewer than k items); ranked in ``dtype`` (float64: ``rank_items``' order).
    """
    idx_out, val_out = [], []
    for s in range(0, len(contexts), chunk):
        ctx = contexts[s:s + chunk]
        sc = masked(score(ctx), ctx, dtype)
        top = topk_of_scores(sc, k)
        idx_out.append(top)
        val_out.append(np.take_along_axis(sc, top, 1))
    if not idx_out:
        return np.zeros((0, k), np.int64), np.zeros((0, k), dtype)
    return np.concatenate(idx_out), np.concatenate(val_out)


def topk_sparse(matrix: sp.csr_matrix, contexts: Sequence[np.ndarray], k: int,
                tie: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of ``score = sum of context rows + tie`` without a dense ``chunk x n`` array.

    Exactly the ranking of the dense scores (float32, ties by item index, context excluded):
    the candidates of a row are its stored entries, and past them the items with no entry
    score ``tie`` alone, so the next ones come from the popularity order (precomputed once).
    """
    n = matrix.shape[1]
    tie = np.asarray(tie, dtype=np.float32)
    by_tie = np.lexsort((np.arange(n), -tie))  # popularity order, ties by index
    kk = min(k, n)
    idx_out = np.zeros((len(contexts), kk), dtype=np.int64)
    val_out = np.full((len(contexts), kk), -np.inf, dtype=np.float32)
    for s in range(0, len(contexts), chunk):
        ctx = contexts[s:s + chunk]
        prod = (context_matrix(ctx, n) @ matrix).tocsr()
        prod.sort_indices()
        for r, c in enumerate(ctx):
            a, b = prod.indptr[r], prod.indptr[r + 1]
            cols = prod.indices[a:b].astype(np.int64)
            vals = prod.data[a:b].astype(np.float32) + tie[cols]
            taken = set(cols.tolist()) | set(np.asarray(c, dtype=np.int64).tolist())
            extra = []
            for j in by_tie:  # items without an entry: score = tie, popularity order
                if len(extra) >= kk:
                    break
                if int(j) not in taken:
                    extra.append(int(j))
            extra_arr = np.asarray(extra, dtype=np.int64)
            keep = ~np.isin(cols, np.asarray(c, dtype=np.int64))
            cand = np.concatenate([cols[keep], extra_arr])
            score = np.concatenate([vals[keep], tie[extra_arr]])
            order = np.lexsort((cand, -score))[:kk]
            idx_out[s + r, :len(order)] = cand[order]
            val_out[s + r, :len(order)] = score[order]
    return idx_out, val_out


def topk_candidates(score_columns: Callable[[int, int, np.ndarray], np.ndarray],
                    candidates: Sequence[np.ndarray], k: int, chunk: int = 256
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of each query's ``candidates`` (distinct item arrays), never ``chunk x n``.

    ``score_columns(start, stop, cols)`` scores queries ``start:stop`` at ``cols`` (int64
    [b, C], item ids ascending per row, -1 = padding) and returns float [b, C] (-inf where an
    item may not be listed). Ranked by score, ties by item index: a stable full sort's order
    restricted to the candidates, so where the candidates hold a query's dense top ``k`` the
    lists are the dense ones. Returns int64 [q, k] (-1 past the candidates) and float32
    [q, k] (-inf there).
    """
    idx_out = np.full((len(candidates), k), -1, dtype=np.int64)
    val_out = np.full((len(candidates), k), -np.inf, dtype=np.float32)
    for s in range(0, len(candidates), chunk):
        rows = [np.unique(np.asarray(c, dtype=np.int64)) for c in candidates[s:s + chunk]]
        width = max([len(r) for r in rows] + [1])
        cols = np.full((len(rows), width), -1, dtype=np.int64)
        for r, c in enumerate(rows):
            cols[r, :len(c)] = c
        sc = np.asarray(score_columns(s, s + len(rows), cols), dtype=np.float64)
        sc = np.where((cols >= 0) & np.isfinite(sc), sc, -np.inf)
        top = topk_of_scores(sc, k)  # column order is item order: ties by item index
        val = np.take_along_axis(sc, top, 1)
        ok = np.isfinite(val)
        idx_out[s:s + len(rows), :top.shape[1]] = np.where(ok, np.take_along_axis(cols, top, 1),
                                                           -1)
        val_out[s:s + len(rows), :top.shape[1]] = np.where(ok, val, -np.inf)
    return idx_out, val_out
