"""Blending scorers (numpy only).

A blend adds the per-row standardised scores of its components with fixed weights; the
weights are chosen on the *validation* split only (:func:`tune_weight`), never on test::

    w, val, _ = tune_weight(val_scores_ease, val_scores_model, queries, pop, "multi_ndcg")
    blend = BlendScorer([ease, model], BlendScorer.pair_weights(w), name="bundle_model+ease")

A weight tuned on the validation queries makes the blend look at least as good as its partner
there by construction. :func:`crossfit_weight` gives the figures the gate may compare: the
weight is tuned on one half of the queries and scored on the other, and the other way round.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from shop_recs.ml.candidates import blend_topk, scales, standardised_at, union_candidates
from shop_recs.ml.evaluate import Queries, Scorer, query_chunks, query_rows, score_chunk

logger = logging.getLogger("shop_recs.ml.blend")

__all__ = ["standardise", "BlendScorer", "weight_rows", "tune_weight", "crossfit_weight",
           "crossfit_rows", "best_weight", "WEIGHT_GRID"]

# Weight of the second component relative to the first; inf = the second alone.
WEIGHT_GRID = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, float("inf"))


def standardise(scores: np.ndarray) -> np.ndarray:
    """Row-wise z-scores; non-finite entries (masked items) get the row minimum first."""
    s = np.array(scores, dtype=np.float32, copy=True)
    bad = ~np.isfinite(s)
    if bad.any():
        finite_min = np.where(bad, np.inf, s).min(axis=1, keepdims=True)
        s = np.where(bad, np.where(np.isfinite(finite_min), finite_min, 0.0), s)
    return (s - s.mean(axis=1, keepdims=True)) / (s.std(axis=1, keepdims=True) + 1e-8)


def _mix(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    if np.isinf(w):
        return b
    return a + w * b if w else a


class BlendScorer:
    """``standardise(s_0) + w_1 * standardise(s_1) + ...`` of fitted component scorers."""

    def __init__(self, components: Sequence[Scorer], weights: Sequence[float], name: str,
                 personal: Sequence[bool] | None = None) -> None:
        self.components, self.weights, self.name = list(components), list(weights), name
        # which components may see customer histories (False = item-to-item only)
        self.personal = list(personal) if personal is not None else [True] * len(self.components)

    def fit(self, train, attrs=None) -> "BlendScorer":
        return self  # components are fitted on their own (the weights come from validation)

    def score(self, contexts, histories=None) -> np.ndarray:
        out = None
        for comp, w, pers in zip(self.components, self.weights, self.personal):
            if w == 0:
                continue
            z = w * standardise(comp.score(contexts, histories if pers else None))
            out = z if out is None else out + z
        return out

    @property
    def lists_from_topk(self) -> bool:
        """Above the dense size every used component ranks by candidates (issue 15)."""
        return scales([c for c, w in zip(self.components, self.weights) if w])

    def candidates(self, contexts) -> list[np.ndarray]:
        return union_candidates([c for c, w in zip(self.components, self.weights) if w],
                                contexts)

    def score_candidates(self, contexts, candidates) -> np.ndarray:
        """The blend at each row's ``candidates`` (int [len, m]), each component standardised
        by its row moments, without an n-wide row (``candidates.standardised_at``)."""
        cols = np.asarray(candidates, dtype=np.int64)
        if not self.lists_from_topk:  # dense rows: exactly what score() standardises
            return np.take_along_axis(self.score(contexts), np.maximum(cols, 0), 1)
        return sum(np.float32(w) * standardised_at(c, contexts, cols)
                   for c, w in zip(self.components, self.weights) if w)

    def topk(self, contexts, k: int, allowed: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` per context over the components' candidates (``lists_from_topk``)."""
        return blend_topk(self.components, self.weights, contexts, k, allowed)

    @staticmethod
    def pair_weights(w: float) -> list[float]:
        """The [first, second] weights for a ``tune_weight`` result (inf = second alone)."""
        return [0.0, 1.0] if np.isinf(w) else [1.0, float(w)]


def weight_rows(first, second, queries: Queries, metric: str,
                grid: Sequence[float] = WEIGHT_GRID, k: int = 10, chunk: int = 256
                ) -> dict[float, np.ndarray]:
    """Per-query ``metric`` of the blend at every weight of ``grid``: ``{w: float [q]}``.

    ``first`` and ``second`` are scorers (given the queries' histories) or precomputed
    scores [q, n]. Each is scored once per chunk of ``chunk`` queries and every weight is
    judged on that chunk, so only ``chunk x n`` scores exist at once (issue 15); the rows
    are the ones :func:`evaluate` gives on the whole matrix.
    """
    out: dict[float, list] = {w: [] for w in grid}
    for start, ctx, hist, tgt in query_chunks(queries, chunk):
        za = standardise(score_chunk(first, start, ctx, hist))
        zb = standardise(score_chunk(second, start, ctx, hist))
        for w in grid:
            out[w].append(query_rows(_mix(za, zb, w), ctx, tgt, k)[metric])
    return {w: np.concatenate(v) if v else np.zeros(0) for w, v in out.items()}


def tune_weight(first, second, queries: Queries, popularity: np.ndarray, metric: str,
                grid: Sequence[float] = WEIGHT_GRID) -> tuple[float, float, dict]:
    """Best weight of ``second`` against ``first`` (scorers or precomputed validation
    scores) on ``queries``, judged chunk by chunk (:func:`weight_rows`).

    Returns (weight, metric value, {weight: value}); ties go to the smaller weight.
    """
    values = {w: float(np.mean(r)) for w, r in weight_rows(first, second, queries, metric,
                                                            grid).items()}
    best = max(values, key=lambda w: (values[w], -w))
    logger.info("blend weights %s -> %s", {k: round(v, 4) for k, v in values.items()}, best)
    return best, values[best], values


def crossfit_weight(first, second, queries: Queries, popularity: np.ndarray, metric: str,
                    grid: Sequence[float] = WEIGHT_GRID, folds: int = 2, seed: int = 0
                    ) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold per-query ``metric`` of the blend, and the weight each fold chose.

    The queries are split into ``folds`` seeded parts; each part is scored with the weight tuned
    on the others, so no query's figure comes from a weight that saw it. Every query's
    figure at every weight is computed once, chunk by chunk (:func:`crossfit_rows`).
    """
    return crossfit_rows(weight_rows(first, second, queries, metric, grid), folds, seed)


def best_weight(rows_by_weight: dict[float, np.ndarray], part: np.ndarray | None = None) -> float:
    """The weight with the highest mean of its per-query rows (on ``part``); ties: smaller."""
    mean = {w: float(np.mean(r if part is None else r[part])) for w, r in rows_by_weight.items()}
    return max(mean, key=lambda w: (mean[w], -w))


def crossfit_rows(rows_by_weight: dict[float, np.ndarray], folds: int = 2,
                  seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """:func:`crossfit_weight` on precomputed per-query figures ``{weight: rows}``.

    For objectives that are not one metric of one score matrix (the published lists of a
    blend, judged on two tasks): each fold is scored with the weight whose rows are best on the
    other folds. The same seeded parts as :func:`crossfit_weight`.
    """
    n = len(next(iter(rows_by_weight.values())))
    part = np.random.default_rng(seed).permutation(n) % folds
    rows, chosen = np.zeros(n), []
    for f in range(folds):
        fit, held = np.flatnonzero(part != f), np.flatnonzero(part == f)
        if len(fit) == 0 or len(held) == 0:
            continue
        w = best_weight(rows_by_weight, fit)
        rows[held] = rows_by_weight[w][held]
        chosen.append(float(w))
    return rows, chosen
