"""Blending scorers and the validation gate (numpy only).

A blend adds the per-row standardised scores of its components with fixed weights; the
weights are chosen on the *validation* split only (:func:`tune_weight`), never on test::

    w, val = tune_weight(val_scores_model, val_scores_ease, queries, pop, "ndcg")
    blend = BlendScorer([model, ease], [1.0, w], name="bundle_model+ease")

:func:`gate` picks what to ship from validation figures and says why; since every baseline is
itself a candidate, the shipped scorer is never below the best baseline on validation.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from shop_recs.ml.evaluate import Queries, Scorer, evaluate

logger = logging.getLogger("shop_recs.ml.blend")

__all__ = ["standardise", "BlendScorer", "tune_weight", "gate", "WEIGHT_GRID"]

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

    @staticmethod
    def pair_weights(w: float) -> list[float]:
        """The [first, second] weights for a ``tune_weight`` result (inf = second alone)."""
        return [0.0, 1.0] if np.isinf(w) else [1.0, float(w)]


def tune_weight(first: np.ndarray, second: np.ndarray, queries: Queries, popularity: np.ndarray,
                metric: str, grid: Sequence[float] = WEIGHT_GRID) -> tuple[float, float, dict]:
    """Best weight of ``second`` against ``first`` on precomputed validation scores.

    Returns (weight, metric value, {weight: value}); ties go to the smaller weight.
    """
    za, zb = standardise(first), standardise(second)
    values = {}
    for w in grid:
        values[w] = evaluate(_mix(za, zb, w), queries, popularity)[metric]
    best = max(values, key=lambda w: (values[w], -w))
    logger.info("blend weights %s -> %s", {k: round(v, 4) for k, v in values.items()}, best)
    return best, values[best], values


def gate(val_metrics: dict[str, float], baselines: Sequence[str], metric_name: str
         ) -> tuple[str, str]:
    """Pick the candidate with the best validation figure; returns (name, reason)."""
    if not val_metrics:
        raise ValueError("the gate needs at least one candidate")
    choice = max(val_metrics, key=lambda k: val_metrics[k])
    best_base = max((b for b in baselines if b in val_metrics), key=lambda k: val_metrics[k],
                    default=None)
    if best_base is None:
        return choice, f"{choice}: best validation {metric_name} {val_metrics[choice]:.4f}"
    base = val_metrics[best_base]
    gain = (val_metrics[choice] / base - 1) * 100 if base > 0 else float("inf")
    verdict = ("the best baseline itself" if choice == best_base
               else f"{gain:+.1f}% over the best baseline {best_base} ({base:.4f})")
    return choice, (f"{choice}: validation {metric_name} {val_metrics[choice]:.4f}, {verdict}; "
                    f"candidates: " + ", ".join(f"{k}={v:.4f}" for k, v in
                                                sorted(val_metrics.items(), key=lambda kv: -kv[1])))
