"""BundleModel unit behaviour: shapes, masking, padding, the prior, order invariance."""

import numpy as np
import pytest
import torch

from shop_recs.ml.model import BundleModel, BundleModelConfig
from shop_recs.ml.train import pad_batch, set_seed

CFG = BundleModelConfig(n_items=12, n_words=5, n_categories=3, n_price_bands=4, d_model=16,
                        n_heads=2, n_layers=1, dropout=0.0, use_prior=False)


@pytest.fixture
def model():
    set_seed(0)
    m = BundleModel(CFG)
    g = torch.Generator().manual_seed(0)
    m.set_features(torch.randint(0, 6, (12, CFG.max_words), generator=g),
                   torch.randint(0, 4, (12,), generator=g), torch.randint(0, 4, (12,), generator=g))
    return m.eval()


def test_logits_cover_every_row_and_mask_padding_and_context(model):
    ctx = pad_batch([np.array([0, 3]), np.array([5])])  # rows 1, 4 and 6; padding 0
    logits = model(ctx)
    assert logits.shape == (2, 13)
    assert torch.isneginf(logits[:, 0]).all()  # padding row
    assert torch.isneginf(logits[0, [1, 4]]).all() and torch.isneginf(logits[1, 6])
    assert torch.isfinite(logits[0, 2]) and torch.isfinite(logits[1, 1])
    probs = model.full_sort_predict(ctx).exp()
    assert probs.shape == (2, 12)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))


def test_a_basket_is_a_set_and_padding_changes_nothing(model):
    a = model.full_sort_predict(pad_batch([np.array([2, 7, 9])]))
    b = model.full_sort_predict(pad_batch([np.array([9, 2, 7])]))
    c = model.full_sort_predict(pad_batch([np.array([2, 7, 9])], width=6))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_attributes_change_an_items_score(model):
    ctx = pad_batch([np.array([0])])
    before = model(ctx)[0, 5].item()
    words = model.item_words.clone()
    words[5] = 0  # item 4 (row 5) loses its name words
    model.item_words.copy_(words)
    assert model(ctx)[0, 5].item() != pytest.approx(before)


def test_the_prior_adds_its_rows_for_the_context():
    set_seed(0)
    cfg = BundleModelConfig(**{**CFG.to_dict(), "use_prior": True})
    m = BundleModel(cfg).eval()
    ctx = pad_batch([np.array([0])])
    without = m(ctx)
    prior = torch.zeros(12, 12)
    prior[0, 7] = 1.0  # item 0 -> item 7
    m.set_prior(prior)
    with_prior = m(ctx)
    diff = (with_prior - without)[0, 1:]
    torch.testing.assert_close(diff[7], m.prior_scale.detach())  # row 8 = item 7
    assert torch.count_nonzero(diff[torch.isfinite(diff)]) == 1


def test_output_id_dropout_scores_items_by_content_alone_while_training():
    import torch

    from shop_recs.ml.model import BundleModel, BundleModelConfig

    cfg = BundleModelConfig(n_items=4, n_words=3, max_words=2, d_model=8, n_heads=2,
                            n_layers=1, dropout=0.0, id_dropout=0.0, out_id_dropout=1.0,
                            use_history=False, use_prior=False)
    torch.manual_seed(0)
    model = BundleModel(cfg)
    model.set_features(torch.tensor([[1, 2], [2, 0], [3, 0], [1, 3]]), torch.zeros(4).long(),
                       torch.zeros(4).long())
    with torch.no_grad():
        model.item_emb.weight.normal_()  # ids that would dominate the scores
    model.train()
    context = torch.tensor([[1]])
    logits = model(context)
    table = model.item_table()
    h = model.encode(context, None, table)
    content = table - model.item_emb.weight  # every id hidden on the output side
    expected = h @ content.T + model.out_bias
    torch.testing.assert_close(logits[0, 2:], expected[0, 2:])
    model.eval()  # scoring keeps the ids
    torch.testing.assert_close(model(context)[0, 2:], (h @ table.T + model.out_bias)[0, 2:])


def test_a_large_catalogue_is_embedded_a_block_of_rows_at_a_time(model, monkeypatch):
    """Above TABLE_ROWS rows the item table is built in blocks (the word lookup is rows x
    words x d: gigabytes at 10^6 products); the rows and the logits are the same floats."""
    from shop_recs.ml import model as model_module

    model.eval()
    ctx = pad_batch([np.array([1, 2]), np.array([3])])
    whole, logits = model.item_table(), model(ctx)
    monkeypatch.setattr(model_module, "TABLE_ROWS", 3)
    assert torch.equal(model.item_table(), whole)
    assert torch.equal(model(ctx, table=model.item_table()), logits)
