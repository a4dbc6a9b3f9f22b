"""Cold start: the masked / truly new split, its queries, baselines, and content scoring."""

import dataclasses

import numpy as np
import pytest
import torch

from shop_recs.ml.baselines import EASE
from shop_recs.ml.coldstart import (BorrowedLists, CategoryBestsellers, ColdConfig, cold_queries,
                                    cold_split, name_similarity, tune_and_score)
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.train import TrainConfig
from shop_recs.ml.types import Baskets, ItemAttributes, ItemIndex


def _baskets(orders, n, times=None):
    return Baskets(np.cumsum([0] + [len(o) for o in orders]),
                   np.concatenate(orders).astype(np.int32),
                   np.arange(len(orders)) if times is None else times,
                   np.full(len(orders), -1), n)


def test_masked_products_lose_every_training_and_validation_order(data):
    baskets, index, attrs = data
    split = cold_split(*data, cfg=ColdConfig(seed=3, min_orders=5))
    masked, val_masked = split.cold["masked"], split.cold["val"]
    assert len(masked) == len(val_masked) > 0 and not set(masked) & set(val_masked)
    train_counts = split.train.item_counts()
    assert (train_counts[masked] == 0).all() and (train_counts[val_masked] == 0).all()
    assert (split.val.item_counts()[masked] == 0).all()  # test-masked: gone from validation
    assert split.val.item_counts()[val_masked].sum() > 0  # what tunes the baselines
    assert split.test.item_counts()[masked].sum() > 0  # and what is scored
    assert not split.known[masked].any() and split.known[np.flatnonzero(train_counts)].all()
    # the same orders on the input index, for the model that knows every product
    assert (split.train_full.item_counts()[split.items[masked]] == 0).all()
    original = baskets.select(np.argsort(baskets.timestamps, kind="stable")[:len(split.train)])
    assert (original.item_counts()[split.items[masked]] >= 5).all()
    # another seed masks other products
    other = cold_split(*data, cfg=ColdConfig(seed=4, min_orders=5))
    assert set(other.cold["masked"]) != set(masked)


def test_truly_new_products_are_those_first_sold_in_the_test_period():
    # item 3 is sold only in the last (test) order; item 4 only in validation
    orders = [[0, 1], [0, 2], [1, 2], [0, 1, 2]] * 5 + [[0, 1, 4], [1, 2, 3]]
    n = len(orders)
    baskets = _baskets(orders, 5)
    index = ItemIndex([f"P{i}" for i in range(5)])
    attrs = ItemAttributes(np.asarray(["A", "B", "C", "D", "E"], dtype=object),
                           np.asarray([""] * 5, dtype=object), np.ones(5))
    split = cold_split(baskets, index, attrs, val_frac=1 / n, test_frac=1 / n,
                       cfg=ColdConfig(min_orders=5, mask_frac=0.34))
    assert split.index.ids[split.cold["new"]].tolist() == ["P3"]
    assert "P4" not in split.index  # sold once, in validation: neither warm nor new


def test_cold_queries_pair_each_new_product_with_its_basket():
    baskets = _baskets([[0, 1, 2], [3, 4], [1, 4]], 5)
    q = cold_queries(baskets, np.array([1, 3]))
    assert [c.tolist() for c in q["anchor"].contexts] == [[1], [3], [1]]
    assert [t.tolist() for t in q["anchor"].targets] == [[0, 2], [4], [4]]
    assert [c.tolist() for c in q["target"].contexts] == [[0, 2], [4], [4]]
    assert [t.tolist() for t in q["target"].targets] == [[1], [3], [1]]
    sample = cold_queries(baskets, np.array([1, 3]), max_queries=2, seed=0)
    assert len(sample["anchor"].contexts) == len(sample["target"].contexts) == 2


ATTRS = ItemAttributes(
    np.asarray(["WHITE CERAMIC TEAPOT", "KNITTED TEA COSY", "OAK SERVING TRAY",
                "LINEN NAPKIN SET", "GREEN CERAMIC TEAPOT", "ZORBING BALL"], dtype=object),
    np.asarray([""] * 6, dtype=object), np.asarray([10.0, 4.0, 20.0, 6.0, 10.0, 30.0]))


def test_name_similarity_finds_the_product_with_shared_words():
    nbrs, sims = name_similarity(ATTRS, np.array([4, 5]), np.array([0, 1, 2, 3]), 2)
    assert nbrs[0, 0] == 0 and sims[0, 0] > 0.5  # GREEN CERAMIC TEAPOT ~ WHITE CERAMIC TEAPOT
    assert sims[1, 0] == pytest.approx(0.0, abs=1e-6)  # nothing is like a zorbing ball


def _teapot_orders(rng, n_orders=400):
    """Teapot 0 always with cosy 1; tray 2 with napkins 3; products 4, 5 are never sold."""
    orders = []
    for _ in range(n_orders):
        orders.append([0, 1] if rng.random() < 0.5 else [2, 3])
        if rng.random() < 0.3:
            orders[-1] = sorted(set(orders[-1]) | {int(rng.integers(0, 4))})
    return _baskets(orders, 6)


def test_borrowed_lists_and_category_bestsellers_on_planted_data():
    baskets = _teapot_orders(np.random.default_rng(0))
    known = baskets.item_counts() > 0
    borrowed = BorrowedLists(EASE(10.0).fit(baskets), known, ATTRS, k=1)
    scores = borrowed.score([np.array([4])])  # the new teapot borrows the teapot's list
    assert int(np.argmax(np.where(np.arange(6) == 4, -np.inf, scores[0]))) == 1
    # as a target, it takes the teapot's column: the cosy's cart ranks it right after it
    cart = borrowed.score([np.array([1])])[0]
    cart[1] = -np.inf
    assert list(np.argsort(-cart, kind="stable")[:2]) in ([0, 4], [4, 0])
    cat = CategoryBestsellers(boost=8.0).fit(baskets, ATTRS)
    # "~teapot" (the last word) is the category: the known teapot first for the new one
    assert int(np.argmax(cat.score([np.array([4])])[0])) == 0


def test_a_new_product_named_like_a_known_one_gets_its_complement_first():
    """The content path: a new product whose name shares words with the teapot (which is
    always bought with the cosy) gets the cosy ranked first; an unrelated name does not."""
    baskets = _teapot_orders(np.random.default_rng(1), 300)
    cfg = BundleModelConfig(n_items=0, d_model=32, n_heads=2, n_layers=1, use_history=False,
                            use_prior=False, id_dropout=0.5)
    net = BundleScorer(cfg, TrainConfig(epochs=12, time_budget_s=None, threads=1, device="cpu",
                                        batch_size=64, lr=5e-3, seed=0)).fit(baskets, ATTRS)
    content = net.for_new_products(np.array([4, 5]))
    scores = content.score([np.array([4]), np.array([5])])
    scores[:, [4, 5]] = -np.inf
    assert int(np.argmax(scores[0])) == 1  # the green teapot -> the cosy
    # the zorbing ball shares nothing with the teapot: the cosy leads by far less, if at all
    lead = scores[:, 1] - np.sort(scores, axis=1)[:, -2]
    assert lead[1] < lead[0]


def test_tune_and_score_reports_every_baseline_on_both_kinds(data):
    split = cold_split(*data, cfg=ColdConfig(seed=0, min_orders=5))
    rows = tune_and_score(split, dataclasses.replace(ColdConfig(), ease_lambdas=(10.0,),
                                                     neighbours=(1,), ceiling=False))
    assert set(rows) == {"popularity", "category_bestsellers", "borrowed_lists"}
    masked = rows["borrowed_lists"]["masked"]
    assert masked["queries"] > 0 and 0 < masked["cold_anchor_ndcg10"] <= 1
    # popularity never recommends a product nobody bought: cold targets score nothing
    assert rows["popularity"]["masked"]["cold_target_ndcg10"] == 0.0
    assert rows["borrowed_lists"]["params"] == "k=1, ease lambda=10"


def test_for_new_products_is_a_copy_with_content_only_rows():
    baskets = _teapot_orders(np.random.default_rng(2), 100)
    cfg = BundleModelConfig(n_items=0, d_model=16, n_heads=2, n_layers=1, use_history=False,
                            use_prior=False)
    net = BundleScorer(cfg, TrainConfig(epochs=2, time_budget_s=None, threads=1, device="cpu",
                                        batch_size=64, seed=0)).fit(baskets, ATTRS)
    before = net.model.item_emb.weight.detach().clone()
    content = net.for_new_products(np.array([4, 5]), bias_quantile=1.0)
    assert (content.model.item_emb.weight[[5, 6]] == 0).all()  # rows are item + 1
    bias = net.model.out_bias.detach()
    assert content.model.out_bias[5].item() == pytest.approx(bias[1:5].max().item())
    assert (net.model.item_emb.weight == before).all() and net.model is not content.model
    assert (content.model.item_emb.weight[1:5] == before[1:5]).all()


def test_for_new_products_can_borrow_the_prior_of_similar_bought_products():
    baskets = _teapot_orders(np.random.default_rng(3), 100)
    cfg = BundleModelConfig(n_items=0, d_model=16, n_heads=2, n_layers=1, use_history=False)
    net = BundleScorer(cfg, TrainConfig(epochs=1, time_budget_s=None, threads=1, device="cpu",
                                        batch_size=64, seed=0)).fit(baskets, ATTRS)
    prior = net.model.prior
    assert (prior[5] == 0).all() and (prior[:, 5] == 0).all()  # the new teapot (item 4)
    content = net.for_new_products(np.array([4]), borrow=(np.array([[0, 2]]),
                                                          np.array([[0.75, 0.25]])))
    got = content.model.prior
    expected_row = 0.75 * prior[1] + 0.25 * prior[3]
    assert torch.allclose(got[5, 1:5], expected_row[1:5])
    assert torch.allclose(got[1:5, 5], 0.75 * prior[1:5, 1] + 0.25 * prior[1:5, 3])
    assert got[2, 5] > 0  # the cosy's row now leads to the new teapot
    assert (net.model.prior[:, 5] == 0).all()  # the original is untouched


def test_distillation_gives_a_new_product_the_id_row_its_content_predicts():
    """The new teapot's content (CERAMIC TEAPOT, ~teapot, price 10) is the known teapot's:
    the ridge fitted on bought products puts its id row next to the teapot's, and its
    complement, the cosy, first."""
    baskets = _teapot_orders(np.random.default_rng(1), 300)
    cfg = BundleModelConfig(n_items=0, d_model=32, n_heads=2, n_layers=1, use_history=False,
                            use_prior=False, id_dropout=0.0)
    net = BundleScorer(cfg, TrainConfig(epochs=12, time_budget_s=None, threads=1, device="cpu",
                                        batch_size=64, lr=5e-3, seed=0)).fit(baskets, ATTRS)
    before = net.model.item_emb.weight.detach().clone()
    plain = net.for_new_products(np.array([4, 5]))
    content = net.for_new_products(np.array([4, 5]), distil=0.01)
    emb = content.model.item_emb.weight.detach()
    dist = (emb[1:5] - emb[5]).norm(dim=1)
    assert int(torch.argmin(dist)) == 0 and dist[0] < 0.5 * dist[1:].min()
    assert (net.model.item_emb.weight == before).all()  # the original is untouched
    assert (plain.model.item_emb.weight[5] == 0).all()  # without it: an empty id row
    scores = content.score([np.array([4])])[0]
    scores[[4, 5]] = -np.inf
    assert int(np.argmax(scores)) == 1  # the new teapot -> the cosy
    with pytest.raises(ValueError, match="penalty must be positive"):
        net.for_new_products(np.array([4]), distil=0.0)


def test_the_ceiling_row_knows_the_masked_products_orders(data):
    split = cold_split(*data, cfg=ColdConfig(seed=0, min_orders=5))
    masked = split.cold["masked"]
    assert (split.train_oracle.item_counts()[masked] >= 5).all()
    assert (split.train.item_counts()[masked] == 0).all()
    rows = tune_and_score(split, dataclasses.replace(ColdConfig(), ease_lambdas=(10.0,),
                                                     neighbours=(1,)))
    ceiling = rows["ceiling: EASE knowing the new products' orders"]["masked"]
    assert ceiling["cold_target_ndcg10"] > rows["borrowed_lists"]["masked"]["cold_target_ndcg10"]
    off = tune_and_score(split, dataclasses.replace(ColdConfig(), ease_lambdas=(10.0,),
                                                    neighbours=(1,), ceiling=False))
    assert not any(name.startswith("ceiling") for name in off)


def test_variants_offset_known_lists_only_and_borrow_by_vector_similarity():
    from shop_recs.ml.blend import standardise
    from shop_recs.ml.coldvariants import NewOffset

    baskets = _teapot_orders(np.random.default_rng(0))
    known = baskets.item_counts() > 0
    base = BorrowedLists(EASE(10.0).fit(baskets), known, ATTRS, k=1)
    offset = NewOffset(base, ~known, 2.0)
    ctx = [np.array([1]), np.array([4])]  # a known cosy's list, the new teapot's own list
    raw, s = base.score(ctx), offset.score(ctx)
    z = standardise(raw)
    assert np.allclose(s[0, 4:], z[0, 4:] + 2.0, atol=1e-5)
    assert np.allclose(s[0, :4], z[0, :4], atol=1e-5)
    assert np.array_equal(s[1], raw[1])  # a new product's own list is left as it was
    # by vectors: the zorbing ball (no word in common with a known name) reads like the tray
    vecs = np.eye(6, dtype=np.float32)
    vecs[5] = vecs[2] + 0.1
    by_vec = BorrowedLists(EASE(10.0).fit(baskets), known, ATTRS, k=1, vectors=vecs)
    assert by_vec.nbrs[list(by_vec.cold).index(5), 0] == 2
    top = by_vec.score([np.array([5])])[0]
    top[[2, 4, 5]] = -np.inf
    assert int(np.argmax(top)) == 3  # the tray's napkins
