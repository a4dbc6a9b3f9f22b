"""The gate: a more complex candidate ships only when its validation gain is larger than noise.

Candidates are compared on the same validation queries, so the comparison is *paired*: the
per-query differences are resampled (a paired bootstrap, Efron & Tibshirani 1993, ch. 16) and a
candidate replaces the incumbent only when the lower end of the interval of its mean gain is
above ``min_gain`` (relative to the incumbent). A tie, or a gain inside the noise, keeps the
simpler model::

    decision = decide({"ease": rows_e, "pop": rows_p, "bundle_model": rows_m},
                      baselines=["pop", "ease"], ladder=["bundle_model"], cfg=GateConfig())
    decision["choice"], decision["reason"], decision["comparisons"][0]["interval_pct"]

``baselines`` and ``ladder`` are in order of complexity (simplest first). The incumbent starts as
the best baseline (ties to the simplest); each ladder candidate is then tested against the
current incumbent. The rows must be out-of-sample for every candidate: a blend weight tuned on
the same queries would win by construction (see ``blend.crossfit_weight``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

__all__ = ["GateConfig", "paired_bootstrap", "decide"]


@dataclass
class GateConfig:
    confidence: float = 0.95  # two-sided coverage of the bootstrap interval
    n_boot: int = 1000  # bootstrap resamples
    min_gain: float = 0.0  # relative gain the interval's lower end must exceed (0.01 = 1 %)
    seed: int = 0  # resampling seed (the decision is reproducible)

    def to_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap(candidate: np.ndarray, incumbent: np.ndarray, n_boot: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``candidate - incumbent`` per query and its percentile interval.

    Returns (mean, low, high). Memory is bounded: resamples are drawn in chunks.
    """
    d = np.asarray(candidate, dtype=np.float64) - np.asarray(incumbent, dtype=np.float64)
    n = len(d)
    if n == 0:
        raise ValueError("the gate needs at least one validation query")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 4_000_000 // n)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        means[start:start + size] = d[rng.integers(0, n, size=(size, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(d.mean()), float(low), float(high)


def _pct(value: float, base: float) -> float | None:
    """Percent of ``base``; None when the incumbent scores 0 (kept JSON-safe: no infinity)."""
    return 100.0 * value / base if base > 0 else None


def _show(c: dict) -> str:
    if c["gain_pct"] is None:
        return f"{c['gain']:+.4f} [{c['interval'][0]:+.4f}, {c['interval'][1]:+.4f}]"
    return (f"{c['gain_pct']:+.1f}% [{c['interval_pct'][0]:+.1f}%, "
            f"{c['interval_pct'][1]:+.1f}%]")


def decide(rows: dict[str, np.ndarray], baselines: Sequence[str], ladder: Sequence[str],
           cfg: GateConfig | None = None, metric_name: str = "anchor-NDCG@10") -> dict:
    """Pick what ships from per-query validation figures; returns a JSON-ready decision."""
    cfg = cfg or GateConfig()
    bases = [b for b in baselines if b in rows]
    if not bases:
        raise ValueError("the gate needs at least one baseline")
    means = {k: float(np.mean(v)) for k, v in rows.items()}
    # max() keeps the first of equal values: ties go to the simplest baseline
    incumbent = max(bases, key=lambda b: means[b])
    comparisons = []
    for cand in (c for c in ladder if c in rows):
        gain, low, high = paired_bootstrap(rows[cand], rows[incumbent], cfg.n_boot,
                                           cfg.confidence, cfg.seed)
        base = means[incumbent]
        ships = low > cfg.min_gain * base
        comparisons.append({
            "candidate": cand, "against": incumbent, "gain": gain, "interval": [low, high],
            "gain_pct": _pct(gain, base), "interval_pct": [_pct(low, base), _pct(high, base)],
            "ships": bool(ships)})
        if ships:
            incumbent = cand
    n = len(next(iter(rows.values())))
    conf = f"{100 * cfg.confidence:g}% paired bootstrap over {n:,} validation queries"
    parts = [f"{c['candidate']} {_show(c)} vs {c['against']}: "
             + ("ships" if c["ships"] else "not above noise, the simpler model stays")
             for c in comparisons]
    reason = (f"{incumbent}: validation {metric_name} {means[incumbent]:.4f}"
              + ("" if incumbent not in bases else ", the best baseline")
              + (f"; {'; '.join(parts)} ({conf})" if parts else ""))
    return {"choice": incumbent, "reason": reason, "metric": metric_name,
            "validation": means, "comparisons": comparisons, "n_queries": n,
            "config": cfg.to_dict()}
