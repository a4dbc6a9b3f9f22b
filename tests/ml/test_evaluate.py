"""Metrics against hand-computed values, and the split protocol's guarantees."""

import numpy as np
import pytest

from shop_recs.ml.evaluate import (anchor_queries, complete_queries, customer_histories,
                                   evaluate, hit_rate_at_k, mrr, multi_ndcg_at_k, ndcg_at_k,
                                   rank_items, recall_at_k, temporal_split)
from shop_recs.ml.types import Baskets, ItemAttributes, ItemIndex


def test_single_target_metrics_by_hand():
    ranks = np.array([0, 2, 9, 10])  # 0-based ranks of the one relevant item of 4 queries
    assert hit_rate_at_k(ranks, 10) == pytest.approx(3 / 4)
    assert hit_rate_at_k(ranks, 1) == pytest.approx(1 / 4)
    # 1/log2(2) + 1/log2(4) + 1/log2(11) + 0, over 4
    assert ndcg_at_k(ranks, 10) == pytest.approx((1 + 0.5 + 1 / np.log2(11)) / 4)
    assert mrr(ranks) == pytest.approx((1 + 1 / 3 + 1 / 10 + 1 / 11) / 4)


def test_multi_target_metrics_by_hand():
    topk = np.array([[5, 1, 7], [2, 3, 4]])
    targets = [np.array([1, 7, 9, 8]), np.array([9])]
    # row 0: hits at ranks 1 and 2 of a 3-list; min(k, |T|) = 3 -> recall 2/3
    # row 1: no hit
    assert recall_at_k(topk, targets, 3) == pytest.approx((2 / 3 + 0) / 2)
    dcg = 1 / np.log2(3) + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert multi_ndcg_at_k(topk, targets, 3) == pytest.approx((dcg / idcg + 0) / 2)


def test_rank_items_masks_context_and_breaks_ties_by_index():
    scores = np.array([[0.5, 0.9, 0.5, 0.1]])
    order = rank_items(scores, [np.array([1])])
    assert order.tolist() == [[0, 2, 3, 1]]


def test_evaluate_perfect_and_constant_scorer():
    class Oracle:
        name = "oracle"

        def __init__(self, targets):
            self.targets, self.pos = targets, 0

        def score(self, contexts, histories=None):
            out = np.zeros((len(contexts), 5), dtype=np.float32)
            for r in range(len(contexts)):
                out[r, self.targets[self.pos + r]] = 1.0
            self.pos += len(contexts)
            return out

    b = Baskets([0, 3, 5], [0, 1, 2, 3, 4], [1, 2], [-1, -1], 5)
    q = complete_queries(b, seed=0)
    res = evaluate(Oracle(q.targets), q, popularity=np.ones(5))
    assert res["hr"] == 1.0 and res["ndcg"] == 1.0 and res["mrr"] == 1.0
    # a constant scorer gets index order, context items left out: the first order hides
    # item 2 behind context {0, 1} (rank 0), the second hides 4 behind {3} (0, 1, 2, 4: rank 3)
    assert [c.tolist() for c in q.contexts] == [[0, 1], [3]]
    const = evaluate(np.zeros((2, 5), dtype=np.float32), q, popularity=np.ones(5))
    assert const["ndcg"] == pytest.approx((1 + 1 / np.log2(5)) / 2)
    assert const["mrr"] == pytest.approx((1 + 1 / 4) / 2) and const["hr"] == 1.0
    assert const["topk"][1].tolist() == [0, 1, 2, 4, 3]


def _toy(n=50, n_items=6):
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4, size=n)
    items = np.concatenate([rng.choice(n_items, s, replace=False) for s in sizes])
    return Baskets(np.concatenate([[0], np.cumsum(sizes)]), items, np.arange(n) * 10,
                   rng.integers(-1, 5, size=n), n_items)


def test_temporal_split_has_no_leak_and_catalogue_rules():
    b = _toy()
    split = temporal_split(b, ItemIndex([f"p{i}" for i in range(6)]), ItemAttributes.empty(6))
    assert split.train.timestamps.max() < split.val.timestamps.min()
    assert split.val.timestamps.max() < split.test.timestamps.min()
    assert (split.val.sizes >= 2).all() and (split.test.sizes >= 2).all()
    assert (split.train.item_counts() >= 2).all()  # every catalogue item seen twice in training


def test_histories_only_look_back():
    pool = Baskets([0, 1, 2, 3], [0, 1, 2], [10, 20, 30], [7, 7, 7], 3)
    hist = customer_histories(pool, pool)
    assert [h.tolist() for h in hist] == [[], [0], [1, 0]]  # most recent first, nothing later


def test_histories_keep_one_entry_per_earlier_order():
    # customer 7 orders {0, 1}, then {1}, then {1, 2}; customer 8 orders once, anonymous -1 too
    pool = Baskets([0, 2, 3, 5, 6, 7], [0, 1, 1, 1, 2, 0, 0], [10, 20, 30, 40, 50],
                   [7, 7, 7, 8, -1], 3)
    hist = customer_histories(pool, pool)
    assert hist[2].tolist() == [1, 0, 1]  # the latest order first, item 1 once per order
    assert hist[3].tolist() == [] and hist[4].tolist() == []
    assert customer_histories(pool, pool, max_items=2)[2].tolist() == [1, 0]
    assert customer_histories(pool, pool, max_orders=1)[2].tolist() == [1]


def test_queries_are_seeded():
    b = _toy()
    a1, a2 = anchor_queries(b, seed=3), anchor_queries(b, seed=3)
    assert all((x == y).all() for x, y in zip(a1.contexts, a2.contexts))
    c = complete_queries(b, seed=3)
    assert all(len(t) == 1 for t in c.targets)
