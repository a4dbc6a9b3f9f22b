"""Sampled softmax (issue 15): the one size rule, the loss's exactness, the model's column
logits, and that the sampled path learns what the full one learns."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from shop_recs.ml.model import BundleModel, BundleModelConfig
from shop_recs.ml.sampled import (FULL_SOFTMAX_MAX_ITEMS, NEGATIVES, NegativeSampler,
                                  sampled_set_loss, use_sampled_softmax)
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.topk import masked, topk_of_scores
from shop_recs.ml.train import TrainConfig, set_loss

TINY = BundleModelConfig(n_items=0, d_model=32, n_heads=2, n_layers=1, dropout=0.0)


def tiny_train(**kw) -> TrainConfig:
    base = dict(epochs=12, batch_size=64, lr=5e-3, threads=1, time_budget_s=None, patience=50,
                device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_one_rule_decides_the_softmax():
    assert not use_sampled_softmax(FULL_SOFTMAX_MAX_ITEMS)
    assert use_sampled_softmax(FULL_SOFTMAX_MAX_ITEMS + 1)
    assert not use_sampled_softmax(4893)  # Online Retail keeps the full softmax
    assert use_sampled_softmax(11, limit=10) and not use_sampled_softmax(10, limit=10)


def random_model(n: int, sparse: bool, seed: int = 0) -> BundleModel:
    torch.manual_seed(seed)
    m = BundleModel(BundleModelConfig(n_items=n, n_words=10, n_categories=3, n_price_bands=2,
                                      d_model=16, n_heads=2, n_layers=1, sparse_prior=sparse))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    prior = sp.random(n, n, density=0.2, format="csr", random_state=seed).astype(np.float32)
    if sparse:
        m.set_sparse_prior((torch.from_numpy(prior.indptr.astype(np.int64)),
                            torch.from_numpy(prior.indices.astype(np.int64)),
                            torch.from_numpy(prior.data)))
    else:
        m.set_prior(torch.from_numpy(prior.toarray()))
    m.set_features(torch.randint(0, 11, (n, 8)), torch.randint(0, 4, (n,)),
                   torch.randint(0, 2, (n,)))
    return m.eval()


CTX = torch.tensor([[1, 2, 0], [5, 0, 0], [7, 8, 9]])
HIST = torch.tensor([[3, 4, 5, 0], [0, 0, 0, 0], [10, 3, 3, 2]])
TGT = torch.tensor([[3, 4, 0], [6, 0, 0], [11, 12, 2]])


@pytest.mark.parametrize("sparse", [False, True])
def test_column_logits_are_the_full_logits_at_those_columns(sparse):
    m = random_model(50, sparse)
    full = m(CTX, HIST)  # [B, N+1]
    cols = torch.tensor([[1, 3, 4, 0], [6, 7, 8, 5], [11, 12, 2, 10]])  # context and padding too
    shared = torch.tensor([5, 6, 3, 40, 3])  # repeats allowed
    part = m(CTX, HIST, columns=cols, shared=shared)
    ref = full.gather(1, torch.cat([cols, shared.expand(3, -1)], 1))
    assert torch.equal(torch.isneginf(part), torch.isneginf(ref))  # context + padding masked
    ok = torch.isfinite(ref)
    torch.testing.assert_close(part[ok], ref[ok], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sparse", [False, True])
def test_every_row_sampled_once_without_correction_is_the_full_softmax_loss(sparse):
    m = random_model(50, sparse)
    full = set_loss(m(CTX, HIST), TGT)
    every = torch.arange(1, 51)  # each item once, targets among them (accidental hits)
    logits = m(CTX, HIST, columns=TGT, shared=every)
    sampled = sampled_set_loss(logits, TGT, every, torch.zeros(TGT.shape), torch.zeros(50))
    torch.testing.assert_close(sampled, full, rtol=1e-6, atol=1e-6)
    # a constant correction cancels in the softmax
    shifted = sampled_set_loss(logits, TGT, every, torch.full(TGT.shape, 2.0),
                               torch.full((50,), 2.0))
    torch.testing.assert_close(shifted, full, rtol=1e-6, atol=1e-6)


def test_the_sampler_draws_rows_with_their_log_expected_counts():
    counts = np.array([100.0, 0.0, 10.0, 1.0])
    s = NegativeSampler(counts, n_samples=4000, alpha=1.0)
    torch.manual_seed(0)
    rows, log_q = s.draw()
    assert rows.min() >= 1 and rows.max() <= 4  # never the padding row
    q = (counts + 1) / (counts + 1).sum()
    torch.testing.assert_close(s.log_expected(torch.arange(1, 5)),
                               torch.log(torch.tensor(4000 * q, dtype=torch.float32)))
    torch.testing.assert_close(log_q, s.log_expected(rows))
    seen = np.bincount(rows.numpy(), minlength=5)[1:] / 4000
    np.testing.assert_allclose(seen, q, atol=0.03)
    with pytest.raises(ValueError):
        NegativeSampler(np.array([-1.0, 2.0]))


def test_the_scorer_samples_only_above_the_size(data):
    baskets, _, attrs = data
    small = BundleScorer(TINY, tiny_train(epochs=1)).fit(baskets, attrs)
    assert not small.sampled and small.train_config.negatives == 0
    forced = BundleScorer(TINY, tiny_train(epochs=1), max_full_items=10).fit(baskets, attrs)
    assert forced.sampled and forced.train_config.negatives == NEGATIVES


def top5(scorer, n):
    anchors = [np.array([i]) for i in range(n)]
    return topk_of_scores(masked(scorer.score(anchors), anchors), 5)


@pytest.mark.parametrize("use_prior", [True, False])
def test_the_sampled_path_learns_the_planted_pairs(data, use_prior):
    baskets, index, attrs = data
    cfg = dataclasses.replace(TINY, use_prior=use_prior)
    full = BundleScorer(cfg, tiny_train()).fit(baskets, attrs)
    sampled = BundleScorer(cfg, tiny_train(negatives=32), max_full_items=0).fit(baskets, attrs)
    assert sampled.sampled and not full.sampled
    a, b = index.index_of("P00"), index.index_of("P01")
    top_full, top_sampled = top5(full, len(attrs)), top5(sampled, len(attrs))
    assert top_full[a, 0] == top_sampled[a, 0] == b  # the planted pair, first in both
    for g in range(1, 6):  # each other group's first product: the same five group-mates
        anchor = index.index_of(f"P{6 * g:02d}")
        assert set(top_sampled[anchor]) == set(top_full[anchor])
