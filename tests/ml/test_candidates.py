"""Lists above the sampled-softmax size (issue 15): each anchor is scored against its candidates
only, the lists are the dense ones wherever the candidates hold them, and nothing n-wide is
built per anchor; dense scoring keeps its model calls bounded."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import shop_recs.ml.scorer as scorer_module
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.synthetic import synthetic_orders
from shop_recs.ml.topk import masked, topk_of_scores
from shop_recs.ml.train import TrainConfig
from shop_recs.ml.types import ItemAttributes

TINY = BundleModelConfig(n_items=0, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
ONE = TrainConfig(epochs=1, batch_size=64, threads=1, time_budget_s=None, device="cpu",
                  negatives=64)


@pytest.fixture(scope="module")
def forced(data):
    baskets, _, attrs = data
    cfg = TrainConfig(epochs=6, batch_size=64, lr=5e-3, threads=1, time_budget_s=None,
                      device="cpu", negatives=32)
    # no prior: the candidates are then the head, the history and the rows passed in
    return BundleScorer(dataclasses.replace(TINY, use_prior=False), cfg,
                        max_full_items=0).fit(baskets, attrs)


def test_candidate_lists_are_the_dense_lists_restricted_to_the_candidates(forced, monkeypatch):
    monkeypatch.setattr(scorer_module, "CANDIDATE_HEAD", 3)  # so some sets miss the dense list
    n = forced.model_config.n_items
    anchors = [np.array([i]) for i in range(n)] + [np.array([0, 7])]
    hist = [np.array([(i * 5) % n, (i * 11) % n]) for i in range(len(anchors))]
    dense = topk_of_scores(masked(forced.score(anchors, hist), anchors), n)  # full order
    rng = np.random.default_rng(0)  # e.g. a sparse baseline's pruned rows: 4 per item
    rows = np.repeat(np.arange(n), 4)
    extra = sp.csr_matrix((np.ones(4 * n), (rows, rng.integers(0, n, 4 * n))), shape=(n, n))
    idx, val = forced.topk(anchors, 5, hist, candidates=extra)
    cands = forced.candidates(anchors, hist, extra)
    covered = 0
    for q, cand in enumerate(cands):
        assert not set(anchors[q]) & set(cand)  # the context is never a candidate
        expected = [j for j in dense[q] if j in set(cand)][:5]  # dense order, candidates only
        got = idx[q][idx[q] >= 0]
        assert got.tolist() == expected
        assert np.isfinite(val[q][:len(got)]).all() and np.isneginf(val[q][len(got):]).all()
        if set(dense[q, :5]) <= set(cand):
            covered += 1
            assert got.tolist() == dense[q, :5].tolist()  # the dense list itself
    assert 0 < covered < len(anchors)  # both cases were exercised
    allowed = np.ones(n, dtype=bool)
    allowed[::2] = False  # publishing lists only the allowed items, on both paths
    for limit in (0, 10**6):
        forced.max_full_items = limit
        idx, _ = forced.topk(anchors, 5, hist, candidates=extra, allowed=allowed)
        assert forced.sampled == (limit == 0) and (idx % 2 == 1)[idx >= 0].all()
    forced.max_full_items = 0


class ShapeSpy(TorchDispatchMode):
    """Records the shape of every tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def test_no_catalogue_wide_row_is_built_per_anchor_above_the_size():
    shop = synthetic_orders(3001, 12_000, seed=1)
    n = shop.baskets.n_items
    attrs = ItemAttributes.empty(n)
    s = BundleScorer(TINY, ONE, max_full_items=1000, max_prior_items=1000).fit(shop.baskets,
                                                                              attrs)
    assert s.sampled and s.model_config.sparse_prior
    anchors = [np.array([a]) for a in range(0, n, 47)]
    assert max(len(c) for c in s.candidates(anchors)) < n / 5  # prior rows + best sellers
    with ShapeSpy() as spy:
        idx, _ = s.topk(anchors, 10)
    wide = [sh for sh in spy.shapes if len(sh) >= 2 and max(sh) >= n]
    assert spy.shapes and not wide
    assert (idx[:, 0] >= 0).all()
    with ShapeSpy() as dense:  # the spy sees a dense row when there is one
        s.score(anchors[:4])
    assert any(len(sh) >= 2 and max(sh) >= n for sh in dense.shapes)


def test_dense_scores_do_not_depend_on_how_many_queries_a_model_call_holds(forced, data,
                                                                            monkeypatch):
    n = forced.model_config.n_items
    anchors = [np.array([i]) for i in range(n)]
    whole = forced.score(anchors)
    monkeypatch.setattr(scorer_module, "SCORE_ELEMENTS", 4 * (n + 1))  # 4 queries a call
    calls = []
    model = forced.model
    original = model.full_sort_predict
    monkeypatch.setattr(model, "full_sort_predict",
                        lambda c, h=None: calls.append(len(c)) or original(c, h))
    np.testing.assert_allclose(forced.score(anchors), whole, rtol=1e-5, atol=1e-5)
    assert max(calls) == 4


def test_early_stopping_validates_on_a_sample_above_the_size(data, monkeypatch):
    baskets, _, attrs = data
    monkeypatch.setattr(scorer_module, "MAX_VAL_BASKETS", 10)
    seen = []
    real = scorer_module.evaluate
    monkeypatch.setattr(scorer_module, "evaluate",
                        lambda s, q, pop: seen.append(len(q.contexts)) or real(s, q, pop))
    cfg = TrainConfig(epochs=1, batch_size=64, threads=1, time_budget_s=None, device="cpu")
    BundleScorer(TINY, cfg).fit(baskets, attrs, val=baskets)  # below: every order
    below = max(seen)
    seen.clear()
    BundleScorer(TINY, cfg, max_full_items=0).fit(baskets, attrs, val=baskets)
    assert below > 40 and 0 < max(seen) <= 10  # one query per order and view at most
