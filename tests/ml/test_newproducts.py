"""Lists for new products from content (shop_recs.ml.newproducts), on planted data."""

import numpy as np
import pytest
import torch

from shop_recs.ml.baselines import EASE
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.newproducts import (BORROWED, CATEGORY, MODEL, borrowed_lists, extend,
                                      model_lists, similar_known)
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.train import TrainConfig
from shop_recs.ml.types import Baskets, ItemAttributes

NAMES = ["WHITE CERAMIC TEAPOT", "KNITTED TEA COSY", "OAK SERVING TRAY", "LINEN NAPKIN SET",
         "GREEN CERAMIC TEAPOT", "ZORBING BALL"]
ATTRS = ItemAttributes(np.asarray(NAMES, dtype=object), np.asarray([""] * 6, dtype=object),
                       np.asarray([10.0, 4.0, 20.0, 6.0, 10.0, 30.0]))
KNOWN = np.array([True, True, True, True, False, False])


def _orders(seed=0, n=300):
    """Teapot 0 always with cosy 1; tray 2 with napkins 3; 4 and 5 are never sold."""
    rng = np.random.default_rng(seed)
    orders = [[0, 1] if rng.random() < 0.5 else [2, 3] for _ in range(n)]
    return Baskets(np.arange(0, 2 * n + 1, 2), np.concatenate(orders).astype(np.int32),
                   np.arange(n), np.full(n, -1), 6)


def _net(baskets, attrs=ATTRS, **model):
    cfg = BundleModelConfig(n_items=0, d_model=16, n_heads=2, n_layers=1, use_history=False,
                            **model)
    return BundleScorer(cfg, TrainConfig(epochs=3, time_budget_s=None, threads=1, device="cpu",
                                         batch_size=64, lr=5e-3, seed=0)).fit(baskets, attrs)


def test_similar_known_finds_the_named_alike_product_and_never_itself():
    nbrs, sims = similar_known(ATTRS, np.array([4, 5, 0]), KNOWN, 2)
    assert nbrs[0, 0] == 0 and sims[0, 0] > 0.5  # green teapot ~ white teapot
    assert sims[1, 0] == 0  # nothing is like a zorbing ball
    assert 0 not in nbrs[2]  # a known product is not its own neighbour


def test_model_lists_give_a_new_product_the_complement_of_its_named_alike_product():
    net = _net(_orders())
    allowed = KNOWN.copy()
    lists = model_lists(net, ATTRS, np.array([4]), KNOWN, allowed, k=3)
    assert lists.items[0, 0] == 1  # the green teapot -> the white teapot's cosy
    assert set(lists.items[0][lists.items[0] >= 0]) <= {0, 1, 2, 3}  # only allowed products
    assert lists.neighbour[0] == 0 and lists.how[0, 0] == MODEL
    assert (net.model.prior[5] == 0).all()  # the shipped model is untouched


def test_model_lists_above_the_full_softmax_size_rank_candidates_not_the_catalogue(
        monkeypatch):
    """Above the size the product ranks its neighbours' candidates and the best sellers:
    with every product a candidate the lists are the full ranking's; with one best seller
    they hold only it, the neighbour and its prior row, and no [chunk, n] score is made."""
    import shop_recs.ml.scorer as scorer_module

    net = _net(_orders())
    dense = model_lists(net, ATTRS, np.array([4, 5]), KNOWN, KNOWN.copy(), k=3)
    net.max_full_items = 0  # the same model, ranked as a large catalogue is
    assert net.sampled
    lists = model_lists(net, ATTRS, np.array([4, 5]), KNOWN, KNOWN.copy(), k=3)
    assert np.array_equal(lists.items, dense.items)  # 200 best sellers: all 6 products
    assert lists.items[0, 0] == 1 and np.isfinite(lists.scores).all()

    # a sparse prior, one best seller: the neighbour, its prior row and that best seller
    cfg = BundleModelConfig(n_items=0, d_model=16, n_heads=2, n_layers=1, use_history=False)
    net = BundleScorer(cfg, TrainConfig(epochs=3, time_budget_s=None, threads=1, device="cpu",
                                        batch_size=64, lr=5e-3, seed=0),
                       max_prior_items=0, max_full_items=0).fit(_orders(), ATTRS)
    assert net.sampled and net.model_config.sparse_prior
    monkeypatch.setattr(scorer_module, "CANDIDATE_HEAD", 1)
    monkeypatch.setattr(BundleScorer, "score", lambda *a, **kw: pytest.fail("dense scores"))
    lists = model_lists(net, ATTRS, np.array([4]), KNOWN, KNOWN.copy(), k=4, neighbours=1)
    crow, col = net.model.prior_crow.numpy(), net.model.prior_col.numpy()
    row = set((col[crow[1]:crow[2]] - 1).tolist())  # the white teapot's prior row
    bias = net.model.out_bias[1:].detach().numpy().copy()
    bias[4] = -np.inf  # the new product's own bias is reset below every best seller's max
    want = ({0, int(np.argmax(bias))} | row) & {0, 1, 2, 3}
    got = lists.items[0][lists.items[0] >= 0]
    assert 1 in row and set(got.tolist()) == want and len(got) == len(want) < 4
    assert lists.items[0, 0] == 1 and np.isneginf(lists.scores[0][len(want):]).all()


def test_borrowed_lists_copy_the_neighbours_list_then_category_bestsellers():
    baskets = _orders()
    ease = EASE(10.0).fit(baskets)
    attrs = ItemAttributes(ATTRS.names, np.asarray(["tea", "tea", "table", "table", "tea",
                                                    "tea"], dtype=object), ATTRS.prices)
    pop = baskets.item_counts()
    allowed = np.array([True, True, False, False, False, False])
    lists = borrowed_lists(ease, attrs, np.array([4]), KNOWN, allowed, pop, k=3)
    # the white teapot's list (itself left out: a substitute), then the tea bestsellers left
    assert lists.neighbour[0] == 0
    assert lists.items[0].tolist() == [1, 0, -1]
    assert lists.how[0, :2].tolist() == [BORROWED, CATEGORY]
    # a product that shares no word nor category with a known one gets nothing
    alone = ItemAttributes(ATTRS.names, np.asarray(["tea"] * 5 + ["sport"], dtype=object),
                           ATTRS.prices)
    lists = borrowed_lists(ease, alone, np.array([5]), KNOWN, KNOWN.copy(), pop, k=3)
    assert lists.neighbour[0] == -1 and (lists.items[0] == -1).all()


def test_extend_appends_content_only_rows_and_keeps_every_known_score():
    baskets = _orders()
    known_attrs = ItemAttributes(ATTRS.names[:4], ATTRS.categories[:4], ATTRS.prices[:4])
    net = _net(Baskets(baskets.indptr, baskets.items, baskets.timestamps, baskets.customers, 4),
               known_attrs)
    new_attrs = ItemAttributes(ATTRS.names[4:], ATTRS.categories[4:], ATTRS.prices[4:])
    bigger, new = extend(net, new_attrs)
    assert new.tolist() == [4, 5] and bigger.model_config.n_items == 6
    before = net.score([np.array([0])])[0]
    after = bigger.score([np.array([0])])[0]
    # the known products keep their logits (the softmax now has two more, content-only rows)
    assert np.allclose(before - before.max(), after[:4] - after[:4].max(), atol=1e-4)
    assert (bigger.model.item_emb.weight[5:] == 0).all()
    # encoded with the model's vocabulary (its words are each in one known name: unknown)
    assert bigger.model.item_price[5] > 0 and (bigger.model.item_words[5] == 0).all()
    assert net.model_config.n_items == 4 and torch.equal(
        bigger.model.prior[1:5, 1:5], net.model.prior[1:5, 1:5])
    all_attrs = ItemAttributes(ATTRS.names, ATTRS.categories, ATTRS.prices)
    lists = model_lists(bigger, all_attrs, new, KNOWN, KNOWN.copy(), k=2)
    assert lists.items[0, 0] == 1  # the new green teapot -> the cosy


def test_extend_keeps_a_sparse_prior_csr_valid():
    baskets = _orders()
    known_attrs = ItemAttributes(ATTRS.names[:4], ATTRS.categories[:4], ATTRS.prices[:4])
    cfg = BundleModelConfig(n_items=0, d_model=16, n_heads=2, n_layers=1, use_history=False)
    net = BundleScorer(cfg, TrainConfig(epochs=1, time_budget_s=None, threads=1, device="cpu",
                                        batch_size=64, seed=0), max_prior_items=2).fit(
        Baskets(baskets.indptr, baskets.items, baskets.timestamps, baskets.customers, 4),
        known_attrs)
    assert net.model_config.sparse_prior
    bigger, new = extend(net, ItemAttributes(ATTRS.names[4:], ATTRS.categories[4:],
                                             ATTRS.prices[4:]))
    crow = bigger.model.prior_crow
    assert len(crow) == 6 + 2 and crow[-1] == crow[-3] == net.model.prior_crow[-1]
    assert np.isfinite(bigger.score([np.array([4])])).any()


# names that share no word: only the text vectors say the kettle is like the teapot
TEXT_NAMES = ["TEAPOT", "COSY", "TRAY", "NAPKINS", "KETTLE", "BALL"]


def _text_vectors():
    """Product 4 (the kettle, new) reads like the teapot 0; 5 (new) like nothing bought."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(6, 8)).astype(np.float32)
    v[4] = v[0] + 0.05 * rng.normal(size=8)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_extend_gives_new_products_their_text_vectors():
    """The per-product task's path: a checkpoint that reads text vectors, extended with new
    products and their vectors, ranks the kettle's teapot-like text to the teapot's cosy."""
    vecs = _text_vectors()
    names = np.asarray(TEXT_NAMES, dtype=object)
    known_attrs = ItemAttributes(names[:4], np.asarray([""] * 4, dtype=object),
                                 np.full(4, np.nan), vecs[:4])
    baskets = _orders()
    net = BundleScorer(
        BundleModelConfig(n_items=0, d_model=32, n_heads=2, n_layers=1, use_history=False,
                          use_prior=False, id_dropout=0.5, out_id_dropout=0.5),
        TrainConfig(epochs=12, time_budget_s=None, threads=1, device="cpu", batch_size=64,
                    lr=5e-3, seed=0)).fit(
        Baskets(baskets.indptr, baskets.items, baskets.timestamps, baskets.customers, 4),
        known_attrs)
    assert net.model_config.text_dim == 8

    def new_attrs(v):
        return ItemAttributes(names[4:], np.asarray(["", ""], dtype=object), np.full(2, np.nan),
                              v)

    bigger, new = extend(net, new_attrs(vecs[4:]))
    assert torch.allclose(bigger.model.item_text[5:], torch.from_numpy(vecs[4:]))
    scores = bigger.for_new_products(new).score([np.array([4])])[0]
    # the kettle -> the teapot's pair (teapot and cosy) far above the tray's
    lead = lambda s: min(s[0], s[1]) - max(s[2], s[3])  # noqa: E731
    assert lead(scores) > 3.0
    # without vectors its text row stays zero: nothing says which pair it belongs to
    plain, _ = extend(net, new_attrs(None))
    assert (plain.model.item_text[5:] == 0).all()
    s0 = plain.for_new_products(new).score([np.array([4])])[0]
    assert lead(scores) > lead(s0) + 3.0
    with pytest.raises(ValueError, match=r"must be \[2, 8\]"):
        extend(net, new_attrs(vecs[4:, :5]))


def test_similar_known_lists_what_a_full_sort_of_the_dense_similarities_lists():
    """The similarities stay sparse; the neighbours and cosines are a stable full sort's
    (ties by item, cosine-0 products by item, the item itself last) on random names."""
    from shop_recs.ml.namesim import tfidf as _tfidf
    from shop_recs.ml.topk import topk_of_scores

    rng = np.random.default_rng(4)
    words = ["MUG", "TEA", "RED", "LAMP", "SET", "BOX", "ZORB"]
    for trial in range(30):
        n = int(rng.integers(3, 40))
        names = [" ".join(rng.choice(words, int(rng.integers(0, 3)))) for _ in range(n)]
        cats = rng.choice(["", "kitchen", "garden"], n)
        attrs = ItemAttributes(np.asarray(names, dtype=object), np.asarray(cats, dtype=object),
                               np.ones(n))
        known = rng.random(n) < 0.6
        known[:2] = True
        items = rng.choice(n, int(rng.integers(1, n)), replace=False)
        k = int(rng.integers(1, 6))
        nbrs, sims = similar_known(attrs, items, known, k)
        cand = np.flatnonzero(known)
        vec = _tfidf(attrs)
        dense = np.asarray((vec[items] @ vec[cand].T).todense(), dtype=np.float64)
        dense[cand[None, :] == items[:, None]] = -np.inf
        top = topk_of_scores(dense, min(k, len(cand)))
        assert np.array_equal(nbrs, cand[top]), trial
        want = np.maximum(np.take_along_axis(dense, top, 1), 0.0).astype(np.float32)
        assert np.array_equal(sims, want), trial
