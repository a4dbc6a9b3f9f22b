"""Lists of a blend by candidates, for catalogues where a dense score row is too big (issue 15).

A blend ranks ``sum_c w_c * (s_c - mean_c) / (std_c + 1e-8)`` over the whole catalogue
(``blend.standardise``). Above the dense size every component can say three things without
an n-wide row: its ``candidates(contexts)`` (items that can score well: a sparse row's
entries, the model's retrieval set, the best sellers), its ``score_candidates(contexts,
cols)`` and its ``row_moments(contexts)`` (the row's mean and standard deviation: exact for
the sparse baselines, estimated on a fixed sample for the model). The blend is then scored on
the union of its components' candidates only::

    idx, val = blend_topk([ease, model], [1.0, 0.5], contexts, k=10)
    lists = blend_weight_lists(ease, model, (0.0, 0.5, inf), anchors, top_k=10)

A component qualifies when it has ``lists_from_topk`` set (``baselines`` above the dense
size and popularity; ``BundleScorer`` above the full-softmax size).

Every anchor of a 100k-product catalogue is listed this way, so nothing here loops over
queries in Python: ragged candidate rows are handled as one sorted array of ``row * n +
item`` keys (:func:`row_keys`; sorted keys are each row's items ascending, so padding,
splitting and the union are array operations), and :func:`topk_positions` ranks every row
of a chunk at once with the stable sort's ties.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from shop_recs.ml.topk import distinct, member


__all__ = ["scales", "flat_rows", "gather_rows", "row_keys", "split_counts", "split_keys",
           "row_sets", "pad_rows", "union_candidates", "standardised_at", "topk_positions",
           "top_columns", "topk_keys", "blend_topk", "blend_weight_lists"]


def scales(components: Sequence) -> bool:
    """Whether every component can rank by candidates (``lists_from_topk``)."""
    return all(getattr(c, "lists_from_topk", False) for c in components)


def flat_rows(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(owner row, item) of ragged item arrays, in row order: int64 [total] each."""
    sizes = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    items = (np.concatenate([np.asarray(r, dtype=np.int64).ravel() for r in rows])
             if sizes.sum() else np.zeros(0, dtype=np.int64))
    return np.repeat(np.arange(len(rows), dtype=np.int64), sizes), items


def gather_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray,
                owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, entry) of the CSR rows ``rows`` (one per ``owner``), in order: the ragged
    ``indices[indptr[r]:indptr[r + 1]]`` of every row at once. int64."""
    rows = np.asarray(rows, dtype=np.int64)
    start = np.asarray(indptr, dtype=np.int64)[rows]
    sizes = np.asarray(indptr, dtype=np.int64)[rows + 1] - start
    at = np.repeat(start - (np.cumsum(sizes) - sizes), sizes) + np.arange(sizes.sum())
    return np.repeat(np.asarray(owner, dtype=np.int64), sizes), np.asarray(
        indices)[at].astype(np.int64)


def row_keys(owner: np.ndarray, items: np.ndarray, exclude=None, allowed=None,
             n: int | None = None) -> tuple[np.ndarray, int]:
    """Sorted distinct ``owner * n + item`` keys (items >= 0), less the (owner, item) pairs
    of ``exclude`` and, with ``allowed`` (bool [n_items]), the items it forbids; and n (by
    default one past the largest item)."""
    owner, items = np.asarray(owner, dtype=np.int64), np.asarray(items, dtype=np.int64)
    if n is None:
        n = int(max(items.max(initial=-1), -1 if exclude is None else
                    np.asarray(exclude[1]).max(initial=-1))) + 1
    keys = distinct(owner * n + items)
    if exclude is not None and len(keys):
        e_own, e_item = np.asarray(exclude[0], np.int64), np.asarray(exclude[1], np.int64)
        inside = e_item < n  # an item past n is no candidate (and its key another row's)
        drop = distinct(e_own[inside] * n + e_item[inside])
        keys = keys[~member(drop, keys)]
    if allowed is not None:
        keys = keys[np.asarray(allowed, dtype=bool)[keys % max(n, 1)]]
    return keys, max(n, 1)


def split_counts(values: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """``values`` cut into consecutive arrays of ``counts`` items (one per count)."""
    if len(counts) == 0:
        return []
    return np.split(values, np.cumsum(counts)[:-1])


def split_keys(keys: np.ndarray, n: int, q: int) -> list[np.ndarray]:
    """Sorted ``row * n + item`` keys as ``q`` item arrays (one per row, ascending)."""
    return split_counts(keys % n, np.bincount(keys // n, minlength=q)[:q] if len(keys)
                        else np.zeros(q, dtype=np.int64))


def row_sets(owner: np.ndarray, items: np.ndarray, q: int, exclude=None,
             allowed: np.ndarray | None = None) -> list[np.ndarray]:
    """The distinct ``items`` of each of ``q`` rows (owner = row), ascending, less the
    (owner, item) pairs of ``exclude`` and, with ``allowed``, the items it forbids."""
    return split_keys(*row_keys(owner, items, exclude, allowed), q)


def _pad_keys(keys: np.ndarray, n: int, q: int, base: int = 0) -> np.ndarray:
    """Sorted ``row * n + item`` keys as rows of items (ascending, plus ``base``) padded
    with -1: int64 [q, widest] (at least one column)."""
    row = keys // n
    first = np.searchsorted(row, np.arange(q))
    count = np.bincount(row, minlength=q) if len(keys) else np.zeros(q, dtype=np.int64)
    out = np.full((q, max(int(count.max(initial=0)), 1)), -1, dtype=np.int64)
    out[row, np.arange(len(keys)) - first[row]] = keys % n + base
    return out


def pad_rows(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Distinct items of each row, ascending, padded with -1: int64 [len, widest]."""
    owner, items = flat_rows(rows)
    low = int(items.min(initial=0))  # any ints: keys need offsets >= 0
    keys, n = row_keys(owner, items - low)
    return _pad_keys(keys, n, len(rows), low)


def _union_keys(components: Sequence, contexts: Sequence[np.ndarray],
                allowed: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """:func:`union_candidates` as sorted ``row * n + item`` keys, and n."""
    parts = [flat_rows(c.candidates(contexts)) for c in components]
    owner = np.concatenate([o for o, _ in parts] + [np.zeros(0, np.int64)])
    items = np.concatenate([i for _, i in parts] + [np.zeros(0, np.int64)])
    return row_keys(owner, items, flat_rows(contexts), allowed)


def union_candidates(components: Sequence, contexts: Sequence[np.ndarray],
                     allowed: np.ndarray | None = None) -> list[np.ndarray]:
    """The union of the components' candidates per context (distinct, ascending; context
    items removed, only ``allowed`` items when given)."""
    return split_keys(*_union_keys(components, contexts, allowed), len(contexts))


def standardised_at(component, contexts: Sequence[np.ndarray], cols: np.ndarray
                    ) -> np.ndarray:
    """``blend.standardise`` of the component's rows, at ``cols`` only (float32 [b, C])."""
    own = getattr(component, "standardised_at", None)  # the model: one forward pass
    if own is not None:
        return own(contexts, cols)
    raw = np.asarray(component.score_candidates(contexts, np.maximum(cols, 0)), np.float64)
    mean, std = component.row_moments(contexts)
    return ((raw - mean[:, None]) / (std[:, None] + 1e-8)).astype(np.float32)


def topk_positions(s: np.ndarray, k: int) -> np.ndarray:
    """``topk.topk_of_scores`` without its loop over rows: each row's ``k`` best positions
    of (masked, float, no NaN) ``s``, score descending, ties by position. int64
    [b, min(k, C)]."""
    b, width = s.shape
    kk = min(k, width)
    if kk == 0:
        return np.zeros((b, 0), dtype=np.int64)
    part = (np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < width
            else np.tile(np.arange(width), (b, 1)))
    # argpartition cuts arbitrarily among ties: every entry tied with the k-th value
    # competes, ordered by (row, score descending, position) as the loop's lexsort does
    kth = np.take_along_axis(s, part, 1).min(axis=1)
    row, pos = np.nonzero(s >= kth[:, None])
    order = np.lexsort((pos, -s[row, pos], row))
    row, pos = row[order], pos[order]
    nth = np.arange(len(row)) - np.searchsorted(row, row)
    out = np.empty((b, kk), dtype=np.int64)
    keep = nth < kk
    out[row[keep], nth[keep]] = pos[keep]
    return out


def top_columns(scores: np.ndarray, cols: np.ndarray, k: int, finite_only: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of candidate scores at ``cols`` (int64 [b, C], ascending, -1 pads; ties by
    item id), -1 / -inf pads: int64 [b, k], float32 [b, k]. With ``finite_only`` a
    non-finite score is never ranked (``topk.topk_candidates``' rule); without, only the
    pads and NaN are (a +inf ranks first and leaves a -1 in its place)."""
    s = np.asarray(scores)  # float32 ranks as its float64 copy would, at half the cost
    s = s if s.dtype == np.float32 else s.astype(np.float64)
    s = np.where((cols >= 0) & (np.isfinite(s) if finite_only else ~np.isnan(s)), s, -np.inf)
    best = topk_positions(s, k)
    val = np.take_along_axis(s, best, 1)
    ok = np.isfinite(val)
    idx = np.full((len(s), k), -1, dtype=np.int64)
    out = np.full((len(s), k), -np.inf, dtype=np.float32)
    idx[:, :best.shape[1]] = np.where(ok, np.take_along_axis(cols, best, 1), -1)
    out[:, :best.shape[1]] = np.where(ok, val, -np.inf)
    return idx, out


def topk_keys(score_columns: Callable[[int, int, np.ndarray], np.ndarray], keys: np.ndarray,
              n: int, q: int, k: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``topk.topk_candidates`` of candidates given as sorted ``row * n + item`` keys (the
    same chunks, columns and lists), without a loop over rows."""
    idx_out = np.full((q, k), -1, dtype=np.int64)
    val_out = np.full((q, k), -np.inf, dtype=np.float32)
    bounds = np.searchsorted(keys, np.arange(0, q + chunk, chunk) * n)
    for c, start in enumerate(range(0, q, chunk)):
        stop = min(start + chunk, q)
        cols = _pad_keys(keys[bounds[c]:bounds[c + 1]] - start * n, n, stop - start)
        idx_out[start:stop], val_out[start:stop] = top_columns(
            score_columns(start, stop, cols), cols, k)
    return idx_out, val_out


def blend_topk(components: Sequence, weights: Sequence[float], contexts: Sequence[np.ndarray],
               k: int, allowed: np.ndarray | None = None, chunk: int = 1024
               ) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of the blend per context, over the union of the candidates: int64 [q, k]
    (-1 past the candidates), float32 [q, k] (``topk.topk_candidates``)."""
    used = [(c, w) for c, w in zip(components, weights) if w]
    keys, n = _union_keys([c for c, _ in used], contexts, allowed)
    return topk_keys(
        lambda a, b, cols: sum(np.float32(w) * standardised_at(c, contexts[a:b], cols)
                               for c, w in used), keys, n, len(contexts), k, chunk)


def blend_weight_lists(first, second, weights: Sequence[float], n_items: int, top_k: int,
                       chunk: int = 1024, anchors: np.ndarray | None = None
                       ) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """``{w: (lists, scores)}`` of every single-anchor list of ``first + w * second`` (inf:
    ``second`` alone) over the candidates of both, each component scored once per chunk;
    like ``served.blend_lists`` (-1 / 0 pads). ``anchors``: only their lists (sorted)."""
    out = {w: (np.full((n_items, top_k), -1, np.int64), np.zeros((n_items, top_k)))
           for w in weights}
    rows = np.arange(n_items, dtype=np.int64) if anchors is None else np.asarray(anchors)
    for start in range(0, len(rows), chunk):
        anchors = rows[start:start + chunk]
        ctx = [np.asarray([a]) for a in anchors]
        cols = _pad_keys(*_union_keys([first, second], ctx), len(ctx))
        za, zb = standardised_at(first, ctx, cols), standardised_at(second, ctx, cols)
        for w, (lists, scores) in out.items():
            mixed = zb if np.isinf(w) else (za + np.float32(w) * zb if w else za)
            idx, val = top_columns(mixed, cols, top_k, finite_only=False)
            lists[anchors] = idx
            scores[anchors] = np.where(idx >= 0, val, 0.0)
    return out
