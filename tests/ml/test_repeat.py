"""The history-aware baseline: base ranking without histories, repeats lifted with them."""

import numpy as np

from shop_recs.ml.evaluate import Queries
from shop_recs.ml.repeat import RepeatBoost, tune_repeat


class Fixed:
    """A base scorer with one fixed score row (item j scores n - j)."""

    def __init__(self, n):
        self.row = np.arange(n, 0, -1, dtype=np.float32)

    def score(self, contexts, histories=None):
        return np.tile(self.row, (len(contexts), 1))


def test_without_history_it_ranks_as_its_base():
    rb = RepeatBoost(Fixed(6), weight=4.0, half_life=2.0)
    scores = rb.score([np.array([0])])
    assert list(np.argsort(-scores[0])) == [0, 1, 2, 3, 4, 5]


def test_recent_history_items_are_lifted_most():
    rb = RepeatBoost(Fixed(6), weight=8.0, half_life=1.0)
    scores = rb.score([np.array([0])], [np.array([5, 4])])  # 5 most recent, then 4
    assert list(np.argsort(-scores[0]))[:3] == [5, 4, 0]
    assert scores[0, 5] - scores[0, 4] > 0


def test_an_item_reordered_often_outranks_one_bought_once_more_recently():
    rb = RepeatBoost(Fixed(6), weight=8.0, half_life=4.0)
    # three earlier orders, most recent first: [3], [2, 4], [2, 5]; item 2 was re-ordered
    scores = rb.score([np.array([0])], [np.array([3, 2, 4, 2, 5])])
    ranked = list(np.argsort(-scores[0]))
    assert ranked[0] == 2  # two orders beat one more recent one
    assert ranked.index(3) < ranked.index(5)  # once each: the more recent wins


def test_tuning_on_validation_finds_the_repeat_signal():
    n = 20
    rng = np.random.default_rng(0)
    contexts = [np.array([0]) for _ in range(50)]
    histories = [rng.choice(np.arange(10, 20), size=3, replace=False) for _ in range(50)]
    targets = [h[:1] for h in histories]  # every customer re-orders its most recent item
    base = Fixed(n).score(contexts)
    (weight, _), value = tune_repeat(base, Queries(contexts, targets, histories),
                                     np.ones(n), "ndcg")
    assert weight > 0 and value > 0.9
    (weight, _), _ = tune_repeat(base, Queries(contexts, [np.array([1])] * 50, histories),
                                 np.ones(n), "ndcg")
    assert weight == 0  # no repeats: the bonus only hurts, so it is left out
