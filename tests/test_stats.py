"""The experiment statistics on planted data: intervals, SRM, A/A calibration, sample size."""

import numpy as np
import pytest

from shop_recs.analytics import stats


def shoppers(rng, n, conversion=0.05, order_value=40.0, lift=0.0):
    """Per-visitor revenue and orders: a share converts, order values are lognormal."""
    orders = (rng.random(n) < conversion).astype(int)
    values = rng.lognormal(np.log(order_value), 0.8, n) * (1 + lift)
    return stats.ArmData("arm", 1, revenue=orders * values, orders=orders)


def test_interval_of_a_planted_effect_covers_it_and_excludes_zero():
    rng = np.random.default_rng(1)
    control = shoppers(rng, 40_000)
    treatment = shoppers(rng, 40_000, conversion=0.06)  # +20 % orders, same order value
    d = stats.difference(stats.estimate(control.revenue), stats.estimate(treatment.revenue))
    true = 0.01 * 40.0 * np.exp(0.8**2 / 2)  # extra conversion x mean order value
    assert d.low < true < d.high
    assert d.low > 0 and d.significant


def test_delta_method_interval_of_a_ratio_has_its_nominal_coverage():
    """Average order value = revenue / orders: 95 % intervals cover the truth ~95 % of the
    time (here: the same order value distribution in both arms, true difference 0)."""
    covered = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        a, b = shoppers(rng, 3000, conversion=0.3), shoppers(rng, 3000, conversion=0.3)
        d = stats.difference(stats.estimate(a.revenue, a.orders),
                             stats.estimate(b.revenue, b.orders))
        covered += d.low <= 0 <= d.high
    assert 0.92 <= covered / 300 <= 0.98


def test_a_planted_45_55_split_is_flagged_and_a_fair_one_is_not():
    assert stats.srm_check([4500, 5500], [1, 1]).flagged
    assert not stats.srm_check([4980, 5020], [1, 1]).flagged
    assert not stats.srm_check([2500, 7500], [1, 3]).flagged  # weights 1:3 expect this


def test_a_a_false_positive_rate_is_calibrated():
    """Two arms with the same behaviour: "significant" at 5 % in about 5 % of the seeds.
    (The benchmark runs 200 seeds through the real views; here the statistics alone.)"""
    seeds, hits = 400, 0
    for seed in range(seeds):
        rng = np.random.default_rng(10_000 + seed)
        report = stats.analyse([shoppers(rng, 4000), shoppers(rng, 4000)], planned=4000)
        hits += report.comparisons[0].metrics["rpv"].significant
    assert 0.03 <= hits / seeds <= 0.07, hits / seeds


def test_sample_size_matches_the_formula_and_grows_with_arms():
    # CV² of revenue per visitor = (1 + 1) / 0.05 - 1 = 39; (1.95996 + 0.84162)² = 7.849.
    assert stats.sample_size(0.05, 0.10) == pytest.approx(2 * 7.849 * 39 / 0.01, rel=1e-3)
    assert stats.sample_size(0.05, 0.10, arms=3) > stats.sample_size(0.05, 0.10)
    assert stats.sample_size(0.05, 0.20) < stats.sample_size(0.05, 0.10)
    with pytest.raises(ValueError, match="between 0 and 1"):
        stats.sample_size(5, 0.1)
    with pytest.raises(ValueError, match="positive"):
        stats.sample_size(0.05, 0)


def test_no_verdict_before_the_planned_sample_and_a_winner_after():
    rng = np.random.default_rng(3)
    arms = [shoppers(rng, 30_000), shoppers(rng, 30_000, conversion=0.065)]
    arms[0].name, arms[1].name = "no widget", "model"
    early = stats.analyse(arms, planned=50_000)
    assert early.verdict.level == "early" and "Keep it running" in early.verdict.text
    done = stats.analyse(arms, planned=30_000)
    assert done.verdict.level == "win" and "Ship 'model'" in done.verdict.text
    assert done.reached and not done.srm.flagged


def test_srm_overrides_the_verdict_and_arrays_must_match():
    rng = np.random.default_rng(4)
    report = stats.analyse([shoppers(rng, 4500), shoppers(rng, 5500)], planned=10)
    assert report.verdict.level == "srm" and "sample ratio mismatch" in report.verdict.text
    with pytest.raises(ValueError, match="differ in length"):
        stats.ArmData("x", 1, revenue=[1.0, 2.0], orders=[1])
    with pytest.raises(ValueError, match="two arms"):
        stats.analyse([shoppers(rng, 10)])
