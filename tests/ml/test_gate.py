"""The gate on planted data where the answer is known: noise keeps the baseline, signal ships."""

import numpy as np
import pytest

from shop_recs.ml.blend import crossfit_weight, tune_weight
from shop_recs.ml.evaluate import Queries
from shop_recs.ml.gate import GateConfig, decide, paired_bootstrap

N = 2000  # validation queries


def per_query(seed, n=N):
    """Per-query NDCG-like figures of an incumbent: mostly 0, sometimes up to 1."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.35, rng.random(n), 0.0)


def test_paired_bootstrap_interval_by_construction():
    base = per_query(0)
    gain, low, high = paired_bootstrap(base + 0.01, base, n_boot=200)
    assert gain == pytest.approx(0.01) and low == pytest.approx(0.01) and high == pytest.approx(
        0.01)  # a constant difference has no spread
    rng = np.random.default_rng(1)
    gain, low, high = paired_bootstrap(base + rng.normal(0, 0.2, N), base, n_boot=500)
    assert low < gain < high and high - low == pytest.approx(2 * 1.96 * 0.2 / np.sqrt(N), rel=0.2)


def test_planted_noise_keeps_the_baseline():
    shipped = 0
    for seed in range(40):
        base = per_query(seed)
        noise = np.random.default_rng(100 + seed).normal(0, 0.15, N)  # zero-mean gain
        model = np.clip(base + noise, 0, 1)
        model += base.mean() - model.mean()  # exactly as good on average, or a hair off
        d = decide({"ease": base, "bundle_model": model + 1e-4 * (seed % 2)}, ["ease"],
                   ["bundle_model"])
        shipped += d["choice"] == "bundle_model"
    # a gate by point estimate would ship about half of these; this one almost never does
    assert shipped <= 2


def test_planted_signal_ships_the_model():
    shipped = 0
    for seed in range(40):
        base = per_query(seed)
        noise = np.random.default_rng(100 + seed).normal(0, 0.15, N)
        model = base + noise - noise.mean() + 0.02  # +2 points of NDCG on every query, on average
        d = decide({"ease": base, "bundle_model": model}, ["ease"], ["bundle_model"])
        shipped += d["choice"] == "bundle_model"
        if seed == 0:
            (c,) = d["comparisons"]
            assert c["ships"] and c["interval"][0] > 0 and c["interval_pct"][0] > 0
            assert "bundle_model" in d["reason"] and "paired bootstrap over 2,000" in d["reason"]
    assert shipped >= 39


def test_ties_go_to_the_simplest_and_the_ladder_climbs_one_step_at_a_time():
    base = per_query(3)
    d = decide({"pop": base * 0.5, "cooc": base, "ease": base.copy(), "model": base.copy()},
               ["pop", "cooc", "ease"], ["model"])
    assert d["choice"] == "cooc"  # cooc and ease tie: the simpler one; the model ties too
    better = base + 0.05
    jitter = np.random.default_rng(4).normal(0, 0.1, N)
    d = decide({"ease": base, "model": better, "blend": better + jitter - jitter.mean() + 1e-4},
               ["ease"], ["model", "blend"], GateConfig(n_boot=300))
    assert d["choice"] == "model"  # the blend is compared with the model, not with ease
    assert [c["against"] for c in d["comparisons"]] == ["ease", "model"]
    d = decide({"ease": base, "model": base + 0.01}, ["ease"], ["model"],
               GateConfig(min_gain=0.5))  # needs +50 % of the incumbent
    assert d["choice"] == "ease"


def test_a_weight_tuned_on_validation_wins_there_but_not_when_cross_fitted():
    # the partner ranks the target first for a third of the queries; the "model" is noise
    rng = np.random.default_rng(0)
    n, n_items = 1200, 30
    targets = [np.array([int(t)]) for t in rng.integers(1, n_items, n)]
    contexts = [np.array([0]) for _ in range(n)]
    partner = rng.normal(0, 1, (n, n_items)).astype(np.float32)
    for r, t in enumerate(targets):
        if r % 3 == 0:
            partner[r, t] = 10
    noise = rng.normal(0, 1, (n, n_items)).astype(np.float32)
    q, pop = Queries(contexts, targets), np.ones(n_items)
    w, tuned, values = tune_weight(partner, noise, q, pop, "multi_ndcg")
    assert tuned >= values[0.0]  # in-sample, the blend never loses to its partner
    oof, weights = crossfit_weight(partner, noise, q, pop, "multi_ndcg")
    assert len(oof) == n and len(weights) == 2
    assert oof.mean() <= tuned
    from shop_recs.ml.evaluate import evaluate
    alone = evaluate(partner, q, pop)["rows"]["multi_ndcg"]
    assert decide({"partner": alone, "blend": oof}, ["partner"], ["blend"])["choice"] == "partner"
