"""Sparse item-item core (SciPy sparse, no torch, no Django): nothing here is O(n_items²).

Above :data:`DENSE_MAX_ITEMS` products a dense ``n x n`` matrix no longer fits (24·n² bytes
for the dense co-occurrence path: 22 GB at 30,000 products), so the baselines of
``shop_recs.ml.baselines`` switch to these functions; :func:`use_dense` is the one place that
decides. Every item-item matrix here is a CSR matrix pruned per row to the ``keep`` largest
entries (what can ever be published or used as a candidate), ranked with the dense scorers'
tie-break, so a single anchor's top-``keep`` list is exactly the dense one.

* :func:`sparse_cooccurrence` - ``C = X^T X`` of the order x item incidence, in row blocks.
* :func:`transform_rows` / :func:`prune_rows` - count / confidence / lift / cosine weights and
  the per-row top-k cut, a block of rows at a time.
* :func:`head_tail_ease` - EASE at scale: exact EASE (Steck 2019) on the ``head`` best-selling
  products (dense, ``head³``), and for every pair that involves a tail product the closed form
  EASE reduces to when the other products are uncorrelated with the context item,
  ``B_ij = G_ij / (G_ii + lambda)``. Why this and not SANSA (Spisak et al. 2023, a sparse
  approximate inverse): SANSA needs scikit-sparse, which PyPI ships only as source that
  compiles against SuiteSparse/CHOLMOD system headers; this machine (and a plain
  ``pip install`` of a shop) has neither, so it cannot be a dependency of a reusable app.
* Top-k of score rows without sorting whole rows: ``shop_recs.ml.topk``.

Usage::

    c = sparse_cooccurrence(baskets)                  # csr float32 [n, n], diagonal = support
    m = transform_rows(c, "lift", len(baskets), keep=200)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from shop_recs.ml.types import Baskets

__all__ = ["DENSE_MAX_ITEMS", "KEEP", "EASE_HEAD_ITEMS", "use_dense", "incidence",
           "sparse_cooccurrence",
           "transform_rows", "prune_rows", "tie_term", "head_tail_ease", "context_matrix",
           "descending_key"]

DENSE_MAX_ITEMS = 8000  # 24 * 8000^2 bytes = 1.5 GB while counting; EASE inverts in ~10 s
KEEP = 200  # neighbours kept per item: FBT lists (<= 50) and bundle candidates come from these
# Exact part of head_tail_ease. Measured (benchmarks.scale_ease, 12k-product synthetic shop,
# catalogue 9,757, lambda 100): head 1,000 fits in 2 s with test recall@10 0.190; head 4,000 in
# 23 s, 0.179; exact dense EASE in 237 s and 3.4 GB, 0.167. A larger head costs head^3 and did
# not pay on that data (synthetic baskets have little of the correlation EASE exploits).
EASE_HEAD_ITEMS = 1000
BLOCK_NNZ = 20_000_000  # entries of C processed at once (~240 MB of csr + sort keys)


def use_dense(n_items: int, limit: int | None = None) -> bool:
    """The one rule: dense item x item matrices up to ``limit`` products, sparse above."""
    return n_items <= (DENSE_MAX_ITEMS if limit is None else limit)


def incidence(baskets: Baskets) -> sp.csr_matrix:
    """Order x item 0/1 matrix, csr float32 [n_baskets, n_items]."""
    data = np.ones(len(baskets.items), dtype=np.float32)
    return sp.csr_matrix((data, baskets.items, baskets.indptr),
                         shape=(len(baskets), baskets.n_items))


def sparse_cooccurrence(baskets: Baskets, block_items: int | None = None) -> sp.csr_matrix:
    """``C[i, j]`` = orders holding both i and j (diagonal = support), csr float32 [n, n].

    Computed ``X[:, block]^T X`` a block of item rows at a time, blocks sized so one block's
    product stays around :data:`BLOCK_NNZ` pairs; memory is the result's nnz plus one block.
    """
    x = incidence(baskets)
    xt = x.T.tocsr()  # item x order
    n = baskets.n_items
    if block_items is None:
        # pairs of item i's row block = sum over its orders of the order sizes
        sizes = baskets.sizes.astype(np.int64)
        pairs_per_item = np.bincount(baskets.items, weights=sizes[baskets.basket_ids()],
                                     minlength=n)
        bounds = _blocks(pairs_per_item, BLOCK_NNZ)
    else:
        bounds = list(range(0, n, block_items)) + [n]
    parts = [(xt[a:b] @ x) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    out = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((n, n), dtype=np.float32)
    out.sort_indices()
    return out.astype(np.float32)


def _blocks(weights: np.ndarray, budget: float) -> list[int]:
    """Row boundaries so each block's summed ``weights`` is about ``budget`` (at least 1 row)."""
    cum = np.cumsum(weights)
    bounds, start = [0], 0.0
    while bounds[-1] < len(weights):
        nxt = int(np.searchsorted(cum, start + budget, side="right"))
        nxt = max(nxt, bounds[-1] + 1)
        bounds.append(min(nxt, len(weights)))
        start = cum[bounds[-1] - 1]
    return bounds


def descending_key(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """int64 sort key of (row ascending, float32 value descending): the value's bits mapped
    to an unsigned order (equal floats, -0.0 and 0.0 included, get equal keys), so one
    stable sort replaces a lexsort by row, value and position."""
    bits = (np.asarray(values, dtype=np.float32) + np.float32(0.0)).view(np.uint32)
    bits = bits.astype(np.int64)
    ascending = np.where(bits >= 1 << 31, 0xFFFFFFFF - bits, bits | (1 << 31))
    return np.asarray(rows, dtype=np.int64) * (1 << 32) + (0xFFFFFFFF - ascending)


def _row_ids(m: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))


def tie_term(support: np.ndarray) -> np.ndarray:
    """The baselines' tie-break: ``1e-6 * popularity / max popularity`` (float32)."""
    support = np.asarray(support, dtype=np.float32)
    return 1e-6 * support / max(float(support.max(initial=0.0)), 1.0)


def transform_rows(counts: sp.csr_matrix, kind: str, n_orders: int, keep: int | None = KEEP,
                   shrink: float = 10.0, lam: float = 0.0) -> sp.csr_matrix:
    """Item-item weights from co-occurrence counts, diagonal removed, pruned per row.

    ``kind``: ``count``, ``confidence`` (C_ij / s_i), ``lift`` (C_ij n / (s_i s_j)),
    ``cosine`` (C_ij / (sqrt(s_i s_j) + shrink)), ``ease_diag`` (C_ij / (s_i + lam): EASE when
    the other items are uncorrelated). Same formulas as the dense baselines.
    """
    support = counts.diagonal().astype(np.float64)
    tie = tie_term(support)  # support = the training popularity the scorers break ties by
    n = counts.shape[0]
    parts = []
    for a, b in zip(*_nnz_blocks(counts)):
        blk = counts[a:b].tocoo()
        rows, cols = blk.row + a, blk.col
        # float32 arithmetic in the dense baselines' order, so near-ties break the same way
        val = blk.data.astype(np.float32)
        s32 = np.maximum(support, 1.0).astype(np.float32)
        if kind == "confidence":
            val = val / s32[rows]
        elif kind == "lift":
            val = val * (np.float32(n_orders) / (s32[rows] * s32[cols]))
        elif kind == "cosine":
            norm = np.sqrt(support.astype(np.float32))
            val = val / (norm[rows] * norm[cols] + np.float32(shrink))
        elif kind == "ease_diag":
            val = val / (support[rows] + lam).astype(np.float32)
        elif kind != "count":
            raise ValueError(f"unknown kind {kind!r}")
        off = rows != cols
        m = sp.csr_matrix((val[off], (rows[off] - a, cols[off])),
                          shape=(b - a, n))
        parts.append(prune_rows(m, keep, tie) if keep is not None else m)
    return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((n, n), dtype=np.float32)


def _nnz_blocks(m: sp.csr_matrix) -> tuple[list[int], list[int]]:
    bounds = _blocks(np.diff(m.indptr).astype(np.float64), BLOCK_NNZ)
    return bounds[:-1], bounds[1:]


def prune_rows(m: sp.csr_matrix, keep: int, tie: np.ndarray | None = None) -> sp.csr_matrix:
    """Keep each row's ``keep`` best entries, ranked as a dense single-anchor list ranks them.

    Order: ``float32(value + tie[col])`` descending, then column index (the dense scorers'
    tie-break), so a row's top ``keep`` equals the dense top ``keep`` wherever it is positive.
    Integer counts tie a lot; keeping all ties would defeat the pruning.
    """
    m = m.tocsr()
    m.sum_duplicates()
    m.sort_indices()
    counts = np.diff(m.indptr)
    if len(counts) == 0 or counts.max() <= keep:
        return m
    rows = _row_ids(m)
    # only rows longer than keep are sorted (in a long-tailed shop most rows are short)
    long = np.flatnonzero((counts > keep)[rows])
    lrows = rows[long]
    key = m.data[long].astype(np.float32)
    if tie is not None:
        key = key + np.asarray(tie, dtype=np.float32)[m.indices[long]]
    # by row, best first, then by column: entries are in (row, column) order, so a stable
    # sort by (row, key descending) settles ties by column
    order = long[np.argsort(descending_key(lrows, key), kind="stable")]
    lens = counts[counts > keep]
    rank = np.arange(len(order)) - np.repeat(np.cumsum(lens) - lens, lens)
    chosen = np.sort(np.concatenate([np.flatnonzero((counts <= keep)[rows]),
                                     order[rank < keep]]))  # csr order (row, column) kept
    sizes = np.bincount(rows[chosen], minlength=m.shape[0])
    return sp.csr_matrix((m.data[chosen], m.indices[chosen],
                          np.concatenate([[0], np.cumsum(sizes)])), shape=m.shape)


def head_tail_ease(counts: sp.csr_matrix, lam: float, head: int, keep: int | None = KEEP
                   ) -> sp.csr_matrix:
    """EASE weights with an exact dense solve on the ``head`` most bought items.

    Head x head entries: ``B = I - P / diag(P)``, ``P = (G_HH + lam I)^-1`` (Steck 2019).
    Every other pair: ``B_ij = G_ij / (G_ii + lam)``, the EASE column regression with the
    context item's correlations to the rest ignored. With ``head >= n`` this is exact EASE.
    Memory: one ``head x head`` float64 matrix plus the sparse result.
    """
    n = counts.shape[0]
    counts = counts.tocsr()
    counts.sort_indices()
    support = counts.diagonal()
    hidx = np.sort(np.argsort(-support, kind="stable")[:min(head, n)])
    is_head = np.zeros(n, dtype=bool)
    is_head[hidx] = True
    g = counts[hidx][:, hidx].toarray().astype(np.float64)
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    if keep is not None and keep < len(hidx):
        # a first cut with margin (ties are settled exactly by prune_rows below)
        cut = np.partition(b, -keep, axis=1)[:, -keep][:, None]
        b = np.where(b >= cut, b, 0.0)
    hb = sp.csr_matrix(b.astype(np.float32)).tocoo()  # zeros dropped, (row, column) order
    h_row, h_col, h_val = hidx[hb.row], hidx[hb.col], hb.data
    scale = (support.astype(np.float64) + lam).astype(np.float32)  # G_ii + lambda
    tie = tie_term(support)
    parts = []
    # a block of rows at a time, each entry touched once: the diagonal regression for every
    # pair outside head x head, the exact solve's entries merged in, then the per-row cut
    # (one sort over every entry needs several int64 copies of nnz: ~10^8 at 1M products)
    for lo, hi in zip(*_nnz_blocks(counts)):
        blk = counts[lo:hi]
        rows = np.repeat(np.arange(lo, hi), np.diff(blk.indptr))
        cols = blk.indices.astype(np.int64)
        val = blk.data.astype(np.float32) / scale[rows]
        off = (rows != cols) & ~(is_head[rows] & is_head[cols])
        rows, cols, val = rows[off], cols[off], val[off]
        mine = slice(*np.searchsorted(h_row, [lo, hi]))
        if mine.stop > mine.start:  # head rows: their exact entries, in (row, column) order
            rows = np.concatenate([rows, h_row[mine]])
            cols = np.concatenate([cols, h_col[mine]])
            val = np.concatenate([val, h_val[mine]])
            order = np.argsort(rows * n + cols, kind="stable")
            rows, cols, val = rows[order], cols[order], val[order]
        m = sp.csr_matrix((val, cols, np.concatenate([[0], np.cumsum(
            np.bincount(rows - lo, minlength=hi - lo))])), shape=(hi - lo, n))
        parts.append(m if keep is None else prune_rows(m, keep, tie))
    if not parts:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.vstack(parts, format="csr")


def context_matrix(contexts: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Contexts as a csr 0/1 matrix [len(contexts), n_items] (an item counted once)."""
    sizes = np.asarray([len(c) for c in contexts], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    cols = (np.concatenate([np.asarray(c, dtype=np.int64) for c in contexts])
            if len(contexts) and indptr[-1] else np.zeros(0, dtype=np.int64))
    m = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, indptr),
                      shape=(len(contexts), n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m
