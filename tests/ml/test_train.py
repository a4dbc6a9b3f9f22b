"""The learned model: planted signal, one-epoch smoke, determinism, time budget, warm start."""

import dataclasses

import numpy as np
import pytest
import torch

from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.train import TrainConfig, resolve_device
from shop_recs.ml.types import ItemAttributes

TINY = BundleModelConfig(n_items=0, d_model=32, n_heads=2, n_layers=1, dropout=0.0)


def tiny_train(**kw) -> TrainConfig:
    base = dict(epochs=12, batch_size=64, lr=5e-3, threads=1, time_budget_s=None, patience=50,
                device="cpu", log_every=2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def fitted(data):
    baskets, index, attrs = data
    return BundleScorer(TINY, tiny_train()).fit(baskets, attrs)


def test_planted_pair_ranks_first(fitted, data):
    _, index, _ = data
    a, b = index.index_of("P00"), index.index_of("P01")
    scores = fitted.score([np.array([a])])[0]
    assert np.isneginf(scores[a])  # the context item is never recommended
    assert int(np.argmax(scores)) == b


def test_the_network_alone_learns_the_planted_pair(data):
    # without the EASE prior, so the pair cannot come from the linear model
    baskets, index, attrs = data
    s = BundleScorer(dataclasses.replace(TINY, use_prior=False), tiny_train()).fit(baskets, attrs)
    assert not s.model_config.use_prior
    a, b = index.index_of("P00"), index.index_of("P01")
    assert int(np.argmax(s.score([np.array([a])])[0])) == b
    # and the group structure: a MUG's top 5 are mostly other MUGs (P00-P05)
    mugs = index.lookup([f"P{i:02d}" for i in range(6)])
    top = np.argsort(-s.score([np.array([index.index_of("P03")])])[0])[:5]
    assert np.isin(top, mugs).sum() >= 4


def test_one_epoch_smoke_reports_progress(data):
    baskets, _, attrs = data
    reports = []
    s = BundleScorer(TINY, tiny_train(epochs=1)).fit(baskets, attrs, val=baskets.select(
        np.arange(len(baskets) - 40, len(baskets))), callback=reports.append)
    kinds = {r.kind for r in reports}
    assert kinds == {"batch", "epoch"}
    epoch = [r for r in reports if r.kind == "epoch"][0]
    assert np.isfinite(epoch.loss) and epoch.examples_per_s > 0 and epoch.val_metric is not None
    assert epoch.fraction == pytest.approx(1.0)
    assert s.result.history == [epoch]
    out = s.score([np.array([0, 1]), np.array([2])], histories=[np.array([3]), np.array([])])
    assert out.shape == (2, len(attrs)) and out.dtype == np.float32


def test_seeded_training_is_deterministic(data):
    baskets, _, attrs = data
    ctx = [np.array([0]), np.array([5, 6])]
    runs = [BundleScorer(TINY, tiny_train(epochs=2, seed=7)).fit(baskets, attrs).score(ctx)
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    other = BundleScorer(TINY, tiny_train(epochs=2, seed=8)).fit(baskets, attrs).score(ctx)
    assert not np.array_equal(runs[0], other)


def test_time_budget_stops_training(data):
    baskets, _, attrs = data
    s = BundleScorer(TINY, tiny_train(epochs=1000, time_budget_s=0.5)).fit(baskets, attrs)
    assert s.result.stopped == "time_budget"
    assert len(s.result.history) < 1000


# A product with no orders: tests/ml/test_protocol.py
# (test_a_product_with_no_orders_gets_a_finite_attribute_driven_score).


def test_warm_start_keeps_shared_rows(fitted, data):
    baskets, index, attrs = data
    n = len(attrs)
    grown = ItemAttributes(np.append(attrs.names, "RED MUG STYLE NEW"),
                           np.append(attrs.categories, ""), np.append(attrs.prices, 2.0))
    new = BundleScorer(TINY, tiny_train(epochs=0))
    new.build(grown, fitted.vocab)
    from shop_recs.ml.scorer import warm_start
    warm_start(new.model, fitted.model, np.arange(n))
    old_w = fitted.model.item_emb.weight.detach()
    new_w = new.model.item_emb.weight.detach()
    torch.testing.assert_close(new_w[:n + 1], old_w)
    assert new_w.shape[0] == n + 2


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            resolve_device("cuda")


def test_model_with_item_item_prior(data, tmp_path):
    from shop_recs.ml.checkpoint import load_checkpoint, save_checkpoint
    baskets, index, attrs = data
    cfg = BundleModelConfig(n_items=0, d_model=16, n_heads=2, n_layers=1, use_prior=True)
    s = BundleScorer(cfg, tiny_train(epochs=2), prior_lambda=5.0).fit(baskets, attrs)
    a, b = index.index_of("P00"), index.index_of("P01")
    assert int(np.argmax(s.score([np.array([a])])[0])) == b
    assert s.model.prior_folds.numel() == 0  # out-of-fold priors are dropped after training
    save_checkpoint(tmp_path / "ck", s, index)
    loaded, _, _ = load_checkpoint(tmp_path / "ck")
    ctx, hist = [np.array([a, 3])], [np.array([5, 6])]
    np.testing.assert_array_equal(s.score(ctx, hist), loaded.score(ctx, hist))
