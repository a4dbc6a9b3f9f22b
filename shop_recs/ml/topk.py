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

from shop_recs.ml.sparse import context_matrix, descending_key

__all__ = ["masked", "rank_and_topk", "topk_of_scores", "topk_rows", "topk_sparse",
           "rank_sparse", "topk_candidates", "member", "distinct"]


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
                tie: np.ndarray, chunk: int = 4096, allowed: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of ``score = sum of context rows + tie`` without a dense ``chunk x n`` array.

    Exactly the ranking of the dense scores (float32, ties by item index, context excluded):
    the candidates of a row are its stored entries, and past them the items with no entry
    score ``tie`` alone, so the next ones come from the popularity order (precomputed once).
    ``allowed`` (bool [n]): only these items are listed.
    """
    return _SparseRanker(matrix, tie, allowed).run(contexts, None, k, chunk)[1:]


def rank_sparse(matrix: sp.csr_matrix, contexts: Sequence[np.ndarray],
                targets: Sequence[np.ndarray], k: int, tie: np.ndarray, chunk: int = 4096
                ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rank_and_topk` of the sparse scores of :func:`topk_sparse` (the best target's
    0-based rank and the top ``k``), without a dense ``chunk x n`` array: a target's rank
    counts the stored entries ahead of it plus the entry-less items whose ``tie`` alone is
    ahead, found by binary search in the popularity order."""
    ranks, idx, _ = _SparseRanker(matrix, tie).run(contexts, targets, k, chunk)
    return ranks, idx


class _SparseRanker:
    """The shared work of :func:`topk_sparse` and :func:`rank_sparse`, a chunk of queries at
    a time with array operations (a Python loop only for a query whose best sellers are
    nearly all in its context or on its rows)."""

    SPARE = 16  # best sellers looked at past k + the longest context + the most entries
    MAX_ENTRIES = 512  # ... counted up to this many (a longer row walks the order itself)

    def __init__(self, matrix: sp.csr_matrix, tie: np.ndarray,
                 allowed: np.ndarray | None = None) -> None:
        self.matrix, self.n = matrix, matrix.shape[1]
        self.tie = np.asarray(tie, dtype=np.float32)
        self.tie_max = self.tie.max(initial=-np.inf)
        self.by_tie = np.lexsort((np.arange(self.n), -self.tie))  # popularity, ties by index
        self.allowed = None if allowed is None else np.asarray(allowed, dtype=bool)
        self.head_order = (self.by_tie if allowed is None
                           else self.by_tie[self.allowed[self.by_tie]])
        neg = -self.tie[self.by_tie].astype(np.float64)
        self.neg = neg
        block = np.concatenate([[0], np.cumsum(neg[1:] != neg[:-1])])  # equal-tie blocks
        self.block_key = block * self.n + self.by_tie  # ascending: (block, index)
        self.block_of = block

    def _ahead_without_entry(self, s: np.ndarray, b: np.ndarray) -> np.ndarray:
        """#items j with ``tie[j] > s`` or (``tie[j] == s`` and ``j < b``), every item."""
        lo = np.searchsorted(self.neg, -s, "left")
        hi = np.searchsorted(self.neg, -s, "right")
        same = hi > lo
        out = lo.copy()
        blk = self.block_of[np.minimum(lo, self.n - 1)]
        out[same] = np.searchsorted(self.block_key, blk[same] * self.n + b[same])
        return out

    def run(self, contexts, targets, k: int, chunk: int):
        n = self.n
        kk = min(k, n)
        q = len(contexts)
        ranks = np.zeros(q, dtype=np.int64)
        idx_out = np.zeros((q, kk), dtype=np.int64)
        val_out = np.full((q, kk), -np.inf, dtype=np.float32)
        for s in range(0, q, chunk):
            ctx = contexts[s:s + chunk]
            r_, i_, v_ = self._chunk(ctx, None if targets is None else targets[s:s + chunk], kk)
            ranks[s:s + len(ctx)], idx_out[s:s + len(ctx)], val_out[s:s + len(ctx)] = r_, i_, v_
        return ranks, idx_out, val_out

    def _chunk(self, ctx, targets, kk: int):
        n, b = self.n, len(ctx)
        prod = (context_matrix(ctx, n) @ self.matrix).tocsr()
        prod.sort_indices()
        e_row = np.repeat(np.arange(b, dtype=np.int64), np.diff(prod.indptr))
        e_col = prod.indices.astype(np.int64)
        e_val = prod.data.astype(np.float32) + self.tie[e_col]  # the dense scores' float32
        cmat = context_matrix(ctx, n)
        ctx_keys = np.repeat(np.arange(b, dtype=np.int64), np.diff(cmat.indptr)) * n + \
            cmat.indices.astype(np.int64)  # sorted: csr rows, sorted columns
        in_ctx = member(ctx_keys, e_row * n + e_col)
        e_row, e_col, e_val = e_row[~in_ctx], e_col[~in_ctx], e_val[~in_ctx]
        e_keys = e_row * n + e_col  # sorted
        ranks = np.zeros(b, dtype=np.int64)
        if targets is not None:
            ranks = self._ranks(targets, b, e_keys, e_val, ctx_keys)
        # candidates: the entries, and (for a row with fewer than kk entries above every
        # tie-break) the best sellers that are neither entries nor context
        c_len = np.diff(cmat.indptr)
        if self.allowed is not None:  # listing only allowed items (ranks are unaffected)
            ok = self.allowed[e_col]
            e_row, e_col, e_val = e_row[ok], e_col[ok], e_val[ok]
            e_keys = e_row * n + e_col
        e_len = np.bincount(e_row, minlength=b)
        # an entry above the largest tie-break outranks every item without an entry: a row
        # with kk of them is listed from those alone (most rows; the rest need best sellers)
        strong = e_val > self.tie_max
        weak = np.bincount(e_row[strong], minlength=b) < kk
        keep = strong | weak[e_row]
        e_row, e_col, e_val = e_row[keep], e_col[keep], e_val[keep]
        e_keys = e_row * n + e_col
        w_rows = np.flatnonzero(weak)
        n_ok = len(self.head_order)
        # enough best sellers that only a row with more than MAX_ENTRIES entries can run out
        width = min(n_ok, kk + int(c_len[w_rows].max(initial=0)) + self.SPARE
                    + min(int(e_len[w_rows].max(initial=0)), self.MAX_ENTRIES))
        head = np.sort(self.head_order[:width])  # by index: merged with the entries below
        h_keys = (w_rows[:, None] * n + head[None, :]).ravel()
        free = ~(member(e_keys, h_keys) | member(ctx_keys, h_keys))
        h_keys = h_keys[free]
        avail = np.bincount(h_keys // n, minlength=b)
        c_ok = c_len if self.allowed is None else np.bincount(
            ctx_keys[self.allowed[ctx_keys % n]] // n, minlength=b)
        short = np.flatnonzero(weak & (avail < kk) & (avail + e_len < n_ok - c_ok))  # rare
        # every candidate in (row, item) order, then a stable sort by (row, score descending):
        # the dense order (ties by item index) with one sort key
        keys = np.concatenate([e_keys, h_keys])
        vals = np.concatenate([e_val, self.tie[h_keys % n]])
        by_item = np.argsort(keys, kind="stable")  # two sorted runs: a merge
        keys, vals = keys[by_item], vals[by_item]
        rows, cols = keys // n, keys % n
        order = np.argsort(descending_key(rows, vals), kind="stable")
        rows, cols, vals = rows[order], cols[order], vals[order]
        first = np.searchsorted(rows, np.arange(b))
        nth = np.arange(len(rows)) - first[rows]
        top = nth < kk
        idx = np.zeros((b, kk), dtype=np.int64)
        val = np.full((b, kk), -np.inf, dtype=np.float32)
        idx[rows[top], nth[top]] = cols[top]
        val[rows[top], nth[top]] = vals[top]
        for r in short:  # the best sellers ran out: walk the popularity order for this row
            lo, hi = np.searchsorted(e_row, [r, r + 1])  # e_row is sorted (csr rows)
            taken = set(e_col[lo:hi].tolist()) | set(np.asarray(ctx[r]).tolist())
            # at most len(taken) of the first len(taken) + kk best sellers are taken
            extra = [j for j in self.head_order[:len(taken) + kk].tolist()
                     if j not in taken][:kk]
            cand = np.concatenate([e_col[lo:hi], np.asarray(extra, dtype=np.int64)])
            score = np.concatenate([e_val[lo:hi], self.tie[extra]])
            pick = np.lexsort((cand, -score))[:kk]
            idx[r], val[r] = 0, -np.inf
            idx[r, :len(pick)], val[r, :len(pick)] = cand[pick], score[pick]
        return ranks, idx, val

    def _ranks(self, targets, b, e_keys, e_val, ctx_keys):
        n = self.n
        sizes = np.fromiter((len(t) for t in targets), dtype=np.int64, count=b)
        t_row = np.repeat(np.arange(b, dtype=np.int64), sizes)
        t_col = np.concatenate([np.asarray(t, dtype=np.int64) for t in targets])
        t_key = t_row * n + t_col
        spot = np.minimum(np.searchsorted(e_keys, t_key), max(len(e_keys) - 1, 0))
        has = (e_keys[spot] == t_key) if len(e_keys) else np.zeros(len(t_key), dtype=bool)
        t_val = np.where(has, e_val[spot] if len(e_val) else 0.0, self.tie[t_col])
        t_val = np.where(member(ctx_keys, t_key), -np.inf, t_val).astype(np.float64)
        # each row's best target: highest score, then lowest index
        pick = np.lexsort((t_col, -t_val, t_row))
        best_at = pick[np.searchsorted(t_row[pick], np.arange(b))]
        s_best, b_best = t_val[best_at], t_col[best_at]
        e_row, e_col = e_keys // n, e_keys % n
        e_ahead = (e_val > s_best[e_row]) | ((e_val == s_best[e_row]) & (e_col < b_best[e_row]))
        ahead = np.bincount(e_row[e_ahead], minlength=b)
        # entry-less items ahead: all items by tie, less those that have an entry or are context
        c_row, c_col = ctx_keys // n, ctx_keys % n
        o_row = np.concatenate([e_row, c_row])
        o_tie = self.tie[np.concatenate([e_col, c_col])].astype(np.float64)
        o_col = np.concatenate([e_col, c_col])
        o_ahead = (o_tie > s_best[o_row]) | ((o_tie == s_best[o_row]) & (o_col < b_best[o_row]))
        finite = np.isfinite(s_best)
        total = np.where(finite, self._ahead_without_entry(np.where(finite, s_best, 0.0),
                                                           b_best), 0)
        ahead += total - np.bincount(o_row[o_ahead], minlength=b)
        # a target in the context (-inf): behind every finite score, then by index
        inf_rows = np.flatnonzero(~finite)
        for r in inf_rows:
            finite_items = (n - int(np.sum(c_row == r)))
            ahead[r] = finite_items + int(np.sum(c_col[c_row == r] < b_best[r]))
        return ahead.astype(np.int64)


def member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Whether each of ``keys`` is in ``sorted_keys`` (int64, ascending)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    spot = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[spot] == keys


def distinct(keys: np.ndarray) -> np.ndarray:
    """``np.unique`` of int64 keys by a sort (numpy 2's hashed unique is ~50x slower on
    millions of distinct keys)."""
    keys = np.sort(keys)
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys


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
