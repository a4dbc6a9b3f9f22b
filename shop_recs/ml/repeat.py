"""The history-aware baseline: an item-item scorer plus a bonus for the customer's earlier items.

Wholesale customers re-order what they bought before, which no item-item model sees. A
learned model that reads customer histories must beat *this*, not only the item-item
baselines, before its gain can be credited to learning rather than to the extra input::

    rb = RepeatBoost(ease, weight=2.0, half_life=8).fit(train)
    rb.score(contexts, histories)  # standardise(ease) + 2.0 * 0.5 ** (position / 8)

``weight`` and ``half_life`` are tuned on validation (:func:`tune_repeat`), like every other
hyper-parameter. Without histories it scores exactly as its base.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from shop_recs.ml.blend import standardise
from shop_recs.ml.evaluate import Queries, Scorer, evaluate

__all__ = ["RepeatBoost", "tune_repeat", "WEIGHTS", "HALF_LIVES"]

WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
HALF_LIVES = (2.0, 8.0, 32.0, 128.0, 512.0)


class RepeatBoost:
    """``standardise(base) + weight * 0.5 ** (position / half_life)`` for history items.

    ``position`` is the item's rank in the customer's history, most recent first.
    """

    def __init__(self, base: Scorer, weight: float, half_life: float, max_history: int = 200,
                 name: str = "repeat_boost") -> None:
        self.base, self.weight, self.half_life = base, weight, half_life
        self.max_history, self.name = max_history, name

    def fit(self, train=None, attrs=None) -> "RepeatBoost":
        return self  # the base is fitted on its own; the two numbers come from validation

    def score(self, contexts: Sequence[np.ndarray],
              histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        return boost(standardise(self.base.score(contexts)), histories, self.weight,
                     self.half_life, self.max_history)


def boost(z: np.ndarray, histories, weight: float, half_life: float, max_history: int = 200
          ) -> np.ndarray:
    """Add the recency-weighted history bonus to standardised scores ``z`` (in place)."""
    if histories is None or weight == 0:
        return z
    decay = weight * 0.5 ** (np.arange(max_history) / half_life)
    for row, items in enumerate(histories):
        items = np.asarray(items)[:max_history]
        z[row, items] += decay[:len(items)].astype(z.dtype)
    return z


def tune_repeat(base_scores: np.ndarray, queries: Queries, popularity: np.ndarray, metric: str
                ) -> tuple[tuple[float, float], float]:
    """Best (weight, half_life) on validation for precomputed base scores; returns it and
    the metric value."""
    z = standardise(base_scores)
    best, best_value = (0.0, HALF_LIVES[0]), evaluate(z, queries, popularity)[metric]
    for w in WEIGHTS:
        for hl in HALF_LIVES:
            value = evaluate(boost(z.copy(), queries.histories, w, hl), queries, popularity)[metric]
            if value > best_value:
                best, best_value = (w, hl), value
    return best, best_value
