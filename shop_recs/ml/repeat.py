"""The history-aware baseline: an item-item scorer plus a bonus for the customer's earlier items.

Wholesale customers re-order what they bought before, which no item-item model sees. A
learned model that reads customer histories must beat *this*, not only the item-item
baselines, before its gain can be credited to learning rather than to the extra input::

    rb = RepeatBoost(ease, weight=2.0, half_life=8).fit(train)
    rb.score(contexts, histories)  # standardise(ease) + sum of 2.0 * 0.5 ** (position / 8)

A history lists the items of the customer's earlier orders, most recent order first, an item once
per order that contained it (``shop_recs.ml.evaluate.customer_histories``), so the bonus sums
over re-orders: frequency and recency together, in the spirit of TIFU-KNN (Hu et al. 2020).
``weight`` and ``half_life`` are tuned on validation (:func:`tune_repeat`), like every other
hyper-parameter. Without histories it scores exactly as its base.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from shop_recs.ml.blend import standardise
from shop_recs.ml.evaluate import Queries, Scorer, query_chunks, query_rows, score_chunk

__all__ = ["RepeatBoost", "tune_repeat", "WEIGHTS", "HALF_LIVES"]

WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
HALF_LIVES = (4.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)  # in history positions


class RepeatBoost:
    """``standardise(base) + weight * sum 0.5 ** (position / half_life)`` over each item's
    occurrences in the customer's history (``position`` 0 = the latest order's items).
    """

    def __init__(self, base: Scorer, weight: float, half_life: float, max_history: int = 256,
                 name: str = "repeat_boost") -> None:
        self.base, self.weight, self.half_life = base, weight, half_life
        self.max_history, self.name = max_history, name

    def fit(self, train=None, attrs=None) -> "RepeatBoost":
        return self  # the base is fitted on its own; the two numbers come from validation

    def score(self, contexts: Sequence[np.ndarray],
              histories: Sequence[np.ndarray] | None = None) -> np.ndarray:
        return boost(standardise(self.base.score(contexts)), histories, self.weight,
                     self.half_life, self.max_history)


def boost(z: np.ndarray, histories, weight: float, half_life: float, max_history: int = 256
          ) -> np.ndarray:
    """Add the recency-weighted history bonus to standardised scores ``z`` (in place); an item
    met several times gets the sum of its bonuses."""
    if histories is None or weight == 0:
        return z
    decay = (weight * 0.5 ** (np.arange(max_history) / half_life)).astype(z.dtype)
    items = [np.asarray(h, dtype=np.int64)[:max_history] for h in histories]
    lengths = np.array([len(h) for h in items])
    if lengths.sum() == 0:
        return z
    rows = np.repeat(np.arange(len(items)), lengths)
    positions = np.concatenate([np.arange(n) for n in lengths])
    np.add.at(z, (rows, np.concatenate(items)), decay[positions])
    return z


def tune_repeat(base, queries: Queries, popularity: np.ndarray, metric: str, k: int = 10,
                chunk: int = 256) -> tuple[tuple[float, float], float]:
    """Best (weight, half_life) on validation for a base scorer (scored without histories,
    as :class:`RepeatBoost` does) or its precomputed scores; returns it and the metric value.

    Every setting is judged chunk by chunk: only ``chunk x n`` scores exist at once."""
    grid = [(w, hl) for w in WEIGHTS for hl in HALF_LIVES]
    rows: dict = {None: [], **{s: [] for s in grid}}
    for start, ctx, hist, tgt in query_chunks(queries, chunk):
        z = standardise(score_chunk(base, start, ctx))
        rows[None].append(query_rows(z, ctx, tgt, k)[metric])
        for w, hl in grid:
            rows[(w, hl)].append(query_rows(boost(z.copy(), hist, w, hl), ctx, tgt, k)[metric])
    value = {s: float(np.mean(np.concatenate(r))) if r else float("nan")
             for s, r in rows.items()}
    best, best_value = (0.0, HALF_LIVES[0]), value[None]
    for s in grid:
        if value[s] > best_value:
            best, best_value = s, value[s]
    return best, best_value
