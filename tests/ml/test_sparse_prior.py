"""The model's sparse (CSR) item-item prior equals the dense one, and survives a checkpoint."""

import numpy as np
import scipy.sparse as sp
import torch

from shop_recs.ml.checkpoint import load_checkpoint, save_checkpoint
from shop_recs.ml.model import BundleModel, BundleModelConfig
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.train import TrainConfig

CFG = BundleModelConfig(n_items=11, d_model=16, n_heads=2, n_layers=1, dropout=0.0,
                        id_dropout=0.0, use_prior=True)
ONE = TrainConfig(epochs=1, batch_size=64, threads=1, time_budget_s=None, device="cpu")


def csr_parts(m: np.ndarray):
    c = sp.csr_matrix(m)
    return (torch.from_numpy(c.indptr.astype(np.int64)), torch.from_numpy(c.indices.astype(
        np.int64)), torch.from_numpy(c.data.astype(np.float32)))


def test_sparse_prior_logits_equal_dense_ones_with_weights_and_gradients():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(11, 11)).astype(np.float32) * (rng.random((11, 11)) < 0.3)
    folds = [rng.normal(size=(11, 11)).astype(np.float32) * (rng.random((11, 11)) < 0.3)
             for _ in range(2)]
    torch.manual_seed(0)
    dense = BundleModel(CFG)
    sparse_model = BundleModel(BundleModelConfig(**{**CFG.to_dict(), "sparse_prior": True}))
    sparse_model.load_state_dict({k: v for k, v in dense.state_dict().items() if k != "prior"},
                                 strict=False)
    dense.set_prior(torch.from_numpy(full), torch.from_numpy(np.stack(folds)))
    sparse_model.set_sparse_prior(csr_parts(full), [csr_parts(f) for f in folds])
    assert sparse_model.prior.numel() == 0 and sparse_model.config.prior_nnz == (full != 0).sum()
    ctx = torch.tensor([[1, 3, 0], [5, 0, 0]])
    hist = torch.tensor([[2, 2, 7, 0], [0, 0, 0, 0]])
    for fold in (None, 0, 1):
        extra = {} if fold is None else {"fold": fold}
        a, b = dense(ctx, hist, **extra), sparse_model(ctx, hist, **extra)
        torch.testing.assert_close(b, a)
    # the history weights of the prior rows learn through the sparse path too
    torch.nn.init.normal_(dense.history_prior)
    with torch.no_grad():
        sparse_model.history_prior.copy_(dense.history_prior)
    for m in (dense, sparse_model):
        out = m(ctx, hist, fold=0)
        out[torch.isfinite(out)].sum().backward()
    torch.testing.assert_close(sparse_model.history_prior.grad, dense.history_prior.grad)
    torch.testing.assert_close(sparse_model.prior_scale.grad, dense.prior_scale.grad)
    sparse_model.clear_prior_folds()
    assert not hasattr(sparse_model, "prior_fold0_val")


def test_scorer_with_a_sparse_prior_scores_like_the_dense_one_and_round_trips(data, tmp_path):
    baskets, index, attrs = data
    tiny = BundleModelConfig(n_items=0, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
    dense = BundleScorer(tiny, ONE, max_prior_items=10_000).fit(baskets, attrs)
    sparse_scorer = BundleScorer(tiny, ONE, max_prior_items=10).fit(baskets, attrs)
    assert not dense.model_config.sparse_prior and sparse_scorer.model_config.sparse_prior
    ctx = [np.array([i]) for i in range(len(attrs))]
    # same seed, same data: the only difference is how the prior is stored (and pruned to
    # 200 entries per row: this catalogue is smaller, so nothing is pruned)
    np.testing.assert_allclose(sparse_scorer.score(ctx), dense.score(ctx), rtol=1e-4, atol=1e-4)
    save_checkpoint(tmp_path / "ck", sparse_scorer, index)
    loaded, _, _ = load_checkpoint(tmp_path / "ck")
    np.testing.assert_allclose(loaded.score(ctx), sparse_scorer.score(ctx), rtol=1e-6)
