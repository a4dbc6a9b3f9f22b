"""BundleScorer: the prior's catalogue limit (dense or sparse), batching, warm start across catalogues."""

import numpy as np
import torch

from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.scorer import BundleScorer, warm_start
from shop_recs.ml.train import TrainConfig
from shop_recs.ml.types import ItemAttributes

TINY = BundleModelConfig(n_items=0, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
ONE = TrainConfig(epochs=1, batch_size=64, threads=1, time_budget_s=None, device="cpu")


def test_a_catalogue_above_the_limit_keeps_a_sparse_prior(data):
    baskets, _, attrs = data
    small = BundleScorer(TINY, ONE, max_prior_items=10).fit(baskets, attrs)  # limit < catalogue
    assert small.model_config.use_prior and small.model_config.sparse_prior
    assert small.model.prior.numel() == 0 and small.model_config.prior_nnz > 0
    big = BundleScorer(TINY, ONE, max_prior_items=1000).fit(baskets, attrs)
    assert big.model_config.use_prior and big.model.prior.shape == (len(attrs) + 1,) * 2


def test_scores_do_not_depend_on_the_batch_size(data):
    baskets, _, attrs = data
    s = BundleScorer(TINY, ONE).fit(baskets, attrs)
    ctx = [np.array([i]) for i in range(20)] + [np.array([1, 2, 3])]
    np.testing.assert_allclose(s.score(ctx, batch_size=7), s.score(ctx, batch_size=256),
                               rtol=1e-5, atol=1e-5)
    out = s.score(ctx)
    assert all(np.isneginf(out[i, i]) for i in range(20))  # the context is never recommended


def test_warm_start_moves_rows_to_their_new_places(data):
    baskets, _, attrs = data
    old = BundleScorer(TINY, ONE).fit(baskets, attrs)
    n = len(attrs)
    # the new catalogue: the old products in reverse order, then one new product
    new_attrs = ItemAttributes(np.append(attrs.names[::-1], "NEW THING"),
                               np.append(attrs.categories[::-1], ""),
                               np.append(attrs.prices[::-1], 1.0))
    new = BundleScorer(TINY, ONE)
    new.build(new_attrs, old.vocab)
    fresh = new.model.item_emb.weight.detach().clone()
    old_to_new = np.arange(n)[::-1].copy()
    old_to_new[0] = -1  # the first old product left the catalogue
    warm_start(new.model, old.model, old_to_new)
    w_old, w_new = old.model.item_emb.weight.detach(), new.model.item_emb.weight.detach()
    for i in range(1, n):
        torch.testing.assert_close(w_new[old_to_new[i] + 1], w_old[i + 1])
    torch.testing.assert_close(w_new[n], fresh[n])  # old product 0's slot: fresh
    torch.testing.assert_close(w_new[n + 1], fresh[n + 1])  # the new product: fresh
