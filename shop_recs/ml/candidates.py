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
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from shop_recs.ml.topk import topk_candidates, topk_of_scores

__all__ = ["scales", "pad_rows", "union_candidates", "standardised_at", "blend_topk",
           "blend_weight_lists"]


def scales(components: Sequence) -> bool:
    """Whether every component can rank by candidates (``lists_from_topk``)."""
    return all(getattr(c, "lists_from_topk", False) for c in components)


def pad_rows(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Distinct items of each row, ascending, padded with -1: int64 [len, widest]."""
    rows = [np.unique(np.asarray(r, dtype=np.int64)) for r in rows]
    out = np.full((len(rows), max([len(r) for r in rows] + [1])), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def union_candidates(components: Sequence, contexts: Sequence[np.ndarray],
                     allowed: np.ndarray | None = None) -> list[np.ndarray]:
    """The union of the components' candidates per context (distinct, ascending; context
    items removed, only ``allowed`` items when given)."""
    parts = [c.candidates(contexts) for c in components]
    rows = []
    for q, ctx in enumerate(contexts):
        row = np.unique(np.concatenate([p[q] for p in parts]).astype(np.int64))
        row = row[~np.isin(row, np.asarray(ctx, dtype=np.int64))]
        if allowed is not None:
            row = row[allowed[row]]
        rows.append(row)
    return rows


def standardised_at(component, contexts: Sequence[np.ndarray], cols: np.ndarray
                    ) -> np.ndarray:
    """``blend.standardise`` of the component's rows, at ``cols`` only (float32 [b, C])."""
    own = getattr(component, "standardised_at", None)  # the model: one forward pass
    if own is not None:
        return own(contexts, cols)
    raw = np.asarray(component.score_candidates(contexts, np.maximum(cols, 0)), np.float64)
    mean, std = component.row_moments(contexts)
    return ((raw - mean[:, None]) / (std[:, None] + 1e-8)).astype(np.float32)


def _top(scores: np.ndarray, cols: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of candidate scores (ties by item id: ``cols`` ascending), -1 / -inf pads."""
    s = np.where(cols >= 0, scores.astype(np.float64), -np.inf)
    best = topk_of_scores(s, k)
    val = np.take_along_axis(s, best, 1)
    ok = np.isfinite(val)
    idx = np.full((len(s), k), -1, dtype=np.int64)
    out = np.full((len(s), k), -np.inf, dtype=np.float32)
    idx[:, :best.shape[1]] = np.where(ok, np.take_along_axis(cols, best, 1), -1)
    out[:, :best.shape[1]] = np.where(ok, val, -np.inf)
    return idx, out


def blend_topk(components: Sequence, weights: Sequence[float], contexts: Sequence[np.ndarray],
               k: int, allowed: np.ndarray | None = None, chunk: int = 1024
               ) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of the blend per context, over the union of the candidates: int64 [q, k]
    (-1 past the candidates), float32 [q, k] (``topk.topk_candidates``)."""
    used = [(c, w) for c, w in zip(components, weights) if w]
    cands = union_candidates([c for c, _ in used], contexts, allowed)
    return topk_candidates(
        lambda a, b, cols: sum(np.float32(w) * standardised_at(c, contexts[a:b], cols)
                               for c, w in used), cands, k, chunk)


def blend_weight_lists(first, second, weights: Sequence[float], n_items: int, top_k: int,
                       chunk: int = 1024) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """``{w: (lists, scores)}`` of every single-anchor list of ``first + w * second`` (inf:
    ``second`` alone) over the candidates of both, each component scored once per chunk;
    like ``served.blend_lists`` (-1 / 0 pads)."""
    out = {w: (np.full((n_items, top_k), -1, np.int64), np.zeros((n_items, top_k)))
           for w in weights}
    for start in range(0, n_items, chunk):
        anchors = np.arange(start, min(start + chunk, n_items))
        ctx = [np.asarray([a]) for a in anchors]
        cols = pad_rows(union_candidates([first, second], ctx))
        za, zb = standardised_at(first, ctx, cols), standardised_at(second, ctx, cols)
        for w, (lists, scores) in out.items():
            mixed = zb if np.isinf(w) else (za + np.float32(w) * zb if w else za)
            idx, val = _top(mixed, cols, top_k)
            lists[anchors] = idx
            scores[anchors] = np.where(idx >= 0, val, 0.0)
    return out
