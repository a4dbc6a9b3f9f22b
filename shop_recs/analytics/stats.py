"""Statistics of A/B experiments (numpy + SciPy, no Django): usable from benchmarks too.

Usage::

    from shop_recs.analytics import stats

    # per-visitor arrays (benchmarks), or stats.ArmSums with stats.Moments (what SQL sums)
    arms = [stats.ArmData("no widget", 1, revenue=..., orders=..., clicks=..., impressions=...),
            stats.ArmData("run 7", 1, ...)]             # one value per exposed visitor
    report = stats.analyse(arms, planned=stats.sample_size(0.05, 0.10))
    report.verdict.text, report.srm.p_value, report.comparisons[0].metrics["rpv"].low

Method (fixed horizon, the peeking protection): staff set the smallest effect worth
detecting before the start, :func:`sample_size` gives the visitors each arm needs, and
:func:`analyse` gives no verdict before every arm has them; the differences it shows
before are labelled as not conclusive. At the horizon each treatment arm is compared with
the first arm (the control) by a two-sided test at ``alpha`` / (arms - 1) (Bonferroni).

- per-visitor metrics (conversion, revenue per visitor): difference of means, normal
  interval with each arm's own variance (Welch; exposed visitors number in the thousands);
- ratio metrics (average order value = revenue / orders, widget CTR = clicks /
  impressions): the delta method, treating the visitor as the unit (Deng et al., 2018);
- sample ratio mismatch: Pearson's chi-square of the exposed visitors against the
  weights (``scipy.stats.chisquare``), flagged below p = 0.001 as is customary (a check
  run every day must not cry wolf);
- sequential option (``analyse(..., sequential=True)``): always-valid intervals, the
  normal-mixture confidence sequence of Howard et al. (2021, "Time-uniform, nonparametric,
  nonasymptotic confidence sequences", eq. 14) as GrowthBook's engine computes it: with N
  visitors in the two arms, s² = N · Var(difference) and ρ² = (−2 ln α + ln(1 − 2 ln α)) / M
  (M: the sample size the boundary is tuned for: the planned visitors of both arms),
  half-width = s · sqrt(2 (Nρ² + 1) / (N² ρ²) · ln(sqrt(Nρ² + 1) / α)). It holds at every
  N at once, so the results may be read (and acted on) after every visitor; the always-valid
  p-value is the α at which the interval touches 0:
  min(1, sqrt(Nρ² + 1) · exp(−d² N² ρ² / (2 s² (Nρ² + 1)))). The price: wider intervals
  than the fixed horizon's at the horizon;
- sample size: revenue per visitor with conversion ``p`` and an order value coefficient
  of variation ``cv`` (1 by default) has a squared coefficient of variation of
  (1 + cv²) / p - 1; n = 2 (z₁₋α/2 + z₁₋β)² · CV² / effect² per arm.

SciPy is already a dependency (``requirements.txt``); it has the distributions and the
chi-square test, and the rest is a few lines of numpy that are checked against planted
data in ``tests/test_stats.py``.
"""

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
POWER = 0.8
SRM_THRESHOLD = 0.001
METRICS = {  # key: (label, kind)
    "conversion": ("conversion", "mean"),
    "rpv": ("revenue per visitor", "mean"),
    "widget_rpv": ("widget-attributed revenue per visitor", "mean"),
    "aov": ("average order value", "ratio"),
    "ctr": ("widget click-through rate", "ratio"),
}
PRIMARY = "rpv"


@dataclass
class ArmData:
    """Per exposed visitor (same length arrays): revenue, orders, widget revenue, widget
    clicks and impressions after the first exposure."""

    name: str
    weight: float
    revenue: np.ndarray
    orders: np.ndarray
    widget_revenue: np.ndarray | None = None
    clicks: np.ndarray | None = None
    impressions: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.revenue)
        self.revenue = np.asarray(self.revenue, dtype=float)
        self.orders = np.asarray(self.orders, dtype=float)
        for name in ("widget_revenue", "clicks", "impressions"):
            value = getattr(self, name)
            setattr(self, name, np.zeros(n) if value is None else np.asarray(value, dtype=float))
        if any(len(getattr(self, f)) != n for f in ("orders", "widget_revenue", "clicks",
                                                       "impressions")):
            raise ValueError(f"arm {self.name!r}: the per-visitor arrays differ in length")

    @property
    def visitors(self):
        return len(self.revenue)

    def values(self, metric):
        """``(numerator, denominator)`` per visitor of ``metric``; None for means."""
        if metric == "conversion":
            return (self.orders > 0).astype(float), None
        if metric == "rpv":
            return self.revenue, None
        if metric == "widget_rpv":
            return self.widget_revenue, None
        if metric == "aov":
            return self.revenue, self.orders
        if metric == "ctr":
            return self.clicks, self.impressions
        raise KeyError(metric)

    def estimate(self, metric):
        return estimate(*self.values(metric))

    @property
    def orders_total(self):
        return int(self.orders.sum())

    @property
    def revenue_total(self):
        return float(self.revenue.sum())


@dataclass
class Moments:
    """Sums over the visitors of an arm, enough for a mean or a ratio and its variance:
    n, Σx, Σx² and, for a ratio x / y, Σy, Σy², Σxy (what SQL can add up)."""

    n: int
    sx: float
    sxx: float
    sy: float | None = None
    syy: float | None = None
    sxy: float | None = None

    def estimate(self):
        n = self.n
        if n < 2:
            return Estimate(self.sx / n if n else None, None)
        mx = self.sx / n
        vx = max((self.sxx - n * mx * mx) / (n - 1), 0.0)
        if self.sy is None:
            return Estimate(mx, vx / n)
        my = self.sy / n
        if my == 0:
            return Estimate(None, None)
        vy = max((self.syy - n * my * my) / (n - 1), 0.0)
        cov = (self.sxy - n * mx * my) / (n - 1)
        ratio = mx / my
        variance = (vx - 2 * ratio * cov + ratio**2 * vy) / (n * my**2)
        return Estimate(ratio, max(variance, 0.0))


@dataclass
class ArmSums:
    """An arm given by its :class:`Moments` per metric (keys of ``METRICS``) rather than
    per-visitor arrays: what the results page reads from the roll-ups."""

    name: str
    weight: float
    visitors: int
    moments: dict
    orders_total: int = 0
    revenue_total: float = 0.0

    def estimate(self, metric):
        return self.moments[metric].estimate()


@dataclass
class Estimate:
    value: float | None
    variance: float | None  # of the estimate


@dataclass
class Difference:
    """Treatment minus control, with its two-sided interval and p-value."""

    control: float | None
    treatment: float | None
    diff: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    level: float = 1 - ALPHA

    @property
    def significant(self):
        return self.p_value is not None and self.p_value < 1 - self.level

    @property
    def relative(self):
        if self.diff is None or not self.control:
            return None
        return self.diff / self.control


@dataclass
class Comparison:
    arm: str
    metrics: dict = field(default_factory=dict)  # metric key -> Difference


@dataclass
class SRM:
    observed: list
    expected: list
    p_value: float | None

    @property
    def flagged(self):
        return self.p_value is not None and self.p_value < SRM_THRESHOLD


@dataclass
class Verdict:
    level: str  # "early", "srm", "win", "loss", "flat", "empty"
    text: str


@dataclass
class Report:
    arms: list  # dicts: name, visitors, metric values
    comparisons: list
    srm: SRM
    verdict: Verdict
    planned: int | None
    alpha: float
    reached: bool
    sequential: bool = False

    @property
    def mode(self):
        """The method, in words, for the results page."""
        if self.sequential:
            return ("sequential: always-valid intervals (a normal-mixture confidence "
                    "sequence, Howard et al. 2021); looking early is safe")
        return ("fixed horizon: no verdict before the planned visitors; looking early and "
                "stopping on a good day is not safe")


def estimate(numerator, denominator=None):
    """The mean (or ratio of sums) and the variance of that estimate (delta method)."""
    x = np.asarray(numerator, dtype=float)
    n = len(x)
    if n < 2:
        return Estimate(float(x.mean()) if n else None, None)
    if denominator is None:
        return Estimate(float(x.mean()), float(x.var(ddof=1) / n))
    y = np.asarray(denominator, dtype=float)
    mean_y = y.mean()
    if mean_y == 0:
        return Estimate(None, None)
    ratio = x.mean() / mean_y
    cov = np.cov(x, y, ddof=1)
    variance = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (n * mean_y**2)
    return Estimate(float(ratio), float(max(variance, 0.0)))


def difference(control, treatment, alpha=ALPHA):
    """:class:`Difference` of two :class:`Estimate` s (independent arms), normal interval."""
    result = Difference(control.value, treatment.value, level=1 - alpha)
    if None in (control.value, treatment.value, control.variance, treatment.variance):
        return result
    result.diff = treatment.value - control.value
    se = math.sqrt(control.variance + treatment.variance)
    z = sps.norm.ppf(1 - alpha / 2)
    result.low, result.high = result.diff - z * se, result.diff + z * se
    result.p_value = (float(2 * sps.norm.sf(abs(result.diff) / se)) if se > 0
                      else (1.0 if result.diff == 0 else 0.0))
    return result


def sequential_difference(control, treatment, visitors, alpha=ALPHA, tuned_for=None):
    """:class:`Difference` with an always-valid interval and p-value (see the module's
    docstring); ``visitors``: N, both arms together; ``tuned_for``: M (default N)."""
    result = Difference(control.value, treatment.value, level=1 - alpha)
    if None in (control.value, treatment.value, control.variance, treatment.variance):
        return result
    result.diff = treatment.value - control.value
    n = float(max(visitors, 1))
    s2 = n * (control.variance + treatment.variance)
    log_alpha = math.log(alpha)
    rho2 = (-2 * log_alpha + math.log(1 - 2 * log_alpha)) / float(max(tuned_for or n, 1))
    grown = n * rho2 + 1
    half = math.sqrt(s2 * 2 * grown / (n * n * rho2) * math.log(math.sqrt(grown) / alpha))
    result.low, result.high = result.diff - half, result.diff + half
    if s2 <= 0:
        result.p_value = 1.0 if result.diff == 0 else 0.0
    else:
        exponent = result.diff**2 * n * n * rho2 / (2 * s2 * grown)
        result.p_value = float(min(1.0, math.sqrt(grown) * math.exp(-min(exponent, 700.0))))
    return result


def srm_check(visitors, weights):
    """Chi-square test of the visitors per arm against the traffic weights."""
    observed = [int(v) for v in visitors]
    total, weight_sum = sum(observed), float(sum(weights))
    expected = [total * w / weight_sum for w in weights]
    if total == 0 or len(observed) < 2:
        return SRM(observed, expected, None)
    return SRM(observed, expected, float(sps.chisquare(observed, f_exp=expected).pvalue))


def sample_size(baseline_conversion, minimum_effect, *, alpha=ALPHA, power=POWER, arms=2,
                order_value_cv=1.0):
    """Exposed visitors each arm needs to detect a relative change ``minimum_effect`` of
    revenue per visitor (two-sided, Bonferroni over the arms' comparisons)."""
    if not 0 < baseline_conversion < 1:
        raise ValueError("the expected conversion must be between 0 and 1 (e.g. 0.05)")
    if minimum_effect <= 0:
        raise ValueError("the smallest effect must be positive (e.g. 0.10 for +10 %)")
    a = alpha / max(1, arms - 1)
    cv2 = (1 + order_value_cv**2) / baseline_conversion - 1
    z = sps.norm.ppf(1 - a / 2) + sps.norm.ppf(power)
    return int(math.ceil(2 * z**2 * cv2 / minimum_effect**2))


def analyse(arms, *, planned=None, alpha=ALPHA, sequential=False):
    """The :class:`Report` of ``arms`` (the first is the control); ``sequential``:
    always-valid intervals, a verdict as soon as one is conclusive."""
    if len(arms) < 2:
        raise ValueError("an experiment needs at least two arms")
    per_test = alpha / (len(arms) - 1)
    summaries = []
    for arm in arms:
        row = {"name": arm.name, "visitors": arm.visitors, "orders": arm.orders_total,
               "revenue": arm.revenue_total}
        for key in METRICS:
            row[key] = arm.estimate(key).value
        summaries.append(row)
    comparisons = []
    for arm in arms[1:]:
        comparison = Comparison(arm.name)
        pair = arms[0].visitors + arm.visitors
        for key in METRICS:
            control, treatment = arms[0].estimate(key), arm.estimate(key)
            comparison.metrics[key] = (
                sequential_difference(control, treatment, pair, per_test,
                                      tuned_for=2 * planned if planned else None)
                if sequential else difference(control, treatment, per_test))
        comparisons.append(comparison)
    srm = srm_check([a.visitors for a in arms], [a.weight for a in arms])
    reached = planned is not None and min(a.visitors for a in arms) >= planned
    verdict = _verdict(arms, comparisons, srm, planned, reached, sequential)
    return Report(summaries, comparisons, srm, verdict, planned, alpha, reached, sequential)


def _money(value):
    return f"{value:,.2f}"


def _verdict(arms, comparisons, srm, planned, reached, sequential=False):
    if min(a.visitors for a in arms) == 0:
        return Verdict("empty", "No visitors have seen every arm yet.")
    if srm.flagged:
        return Verdict("srm", (
            f"Do not trust these results: the arms got {', '.join(map(str, srm.observed))} "
            f"visitors where the weights expect about "
            f"{', '.join(f'{e:.0f}' for e in srm.expected)} (sample ratio mismatch, "
            f"p = {srm.p_value:.2g}). Something sends visitors to arms unevenly or loses "
            f"exposures; fix it and start a new experiment."))
    conclusive = any(c.metrics[PRIMARY].significant for c in comparisons)
    if sequential and not reached and not conclusive:
        least = min(a.visitors for a in arms)
        return Verdict("early", (
            f"Keep it running: no arm differs in revenue per visitor yet ({least:,} "
            f"visitors in the smallest arm, {planned or 0:,} planned). The intervals are "
            f"sequential: they stay valid however often you look, so a verdict shows here "
            f"as soon as one is conclusive."))
    if not reached and not sequential:
        least = min(a.visitors for a in arms)
        return Verdict("early", (
            f"Keep it running: {least:,} of the {planned or 0:,} visitors per arm planned. "
            f"Differences before then are not conclusive; looking early and stopping on a "
            f"good day would find winners that are not."))
    control = arms[0].name
    winners = [(c, c.metrics[PRIMARY]) for c in comparisons
               if c.metrics[PRIMARY].significant and c.metrics[PRIMARY].diff > 0]
    losers = [(c, c.metrics[PRIMARY]) for c in comparisons
              if c.metrics[PRIMARY].significant and c.metrics[PRIMARY].diff < 0]
    if winners:
        best, d = max(winners, key=lambda pair: pair[1].diff)
        return Verdict("win", (
            f"Ship {best.arm!r}: it earns {_money(d.diff)} more per visitor than "
            f"{control!r} ({_money(d.treatment)} vs {_money(d.control)}; 95 % interval "
            f"{_money(d.low)} to {_money(d.high)})."))
    if losers and len(losers) == len(comparisons):
        return Verdict("loss", (
            f"Keep {control!r}: every other arm earns less per visitor "
            f"(e.g. {losers[0][0].arm!r}: {_money(losers[0][1].diff)}, interval "
            f"{_money(losers[0][1].low)} to {_money(losers[0][1].high)})."))
    d = comparisons[0].metrics[PRIMARY]
    return Verdict("flat", (
        f"No difference in revenue per visitor could be shown at this sample size "
        f"({comparisons[0].arm!r} vs {control!r}: {_money(d.diff or 0)}, interval "
        f"{_money(d.low or 0)} to {_money(d.high or 0)}). Either arm is fine; keep the "
        f"simpler one."))
