"""The returning-visitor policy: what serving shows under each mode, and the choice per shop."""

import numpy as np

from shop_recs.ml.evaluate import Queries
from shop_recs.ml.policy import PolicyConfig, choose_policy, served_topk


class FixedScorer:
    """Item-item scores that know nothing of customers (a seeded random matrix)."""

    name = "fixed"

    def __init__(self, n, seed=0):
        self.table = np.random.default_rng(seed).random((n, n)).astype(np.float32)

    def score(self, contexts, histories=None):
        return np.stack([self.table[ctx].sum(axis=0) for ctx in contexts])


def test_served_lists_by_mode_hand_checked():
    cands = np.array([[5, 6, 7, 8]])  # the anchor's published list, best first
    history = [np.array([9, 7, 9])]  # most recent first: 9, then 7, then 9 again
    anchor = [np.array([1])]
    assert served_topk(cands, history, anchor, "off", k=5).tolist() == [[5, 6, 7, 8, -1]]
    assert served_topk(cands, history, anchor, "demote", k=5).tolist() == [[5, 6, 8, 7, -1]]
    # base 1, .75, .5, .25; 9 gets 1.0 * (1 + .5 ** (2 / 2)) = 1.5, 7 gets .5 + .5 ** .5
    boosted = served_topk(cands, history, anchor, "boost", weight=1.0, half_life=2.0, k=5)
    assert boosted.tolist() == [[9, 7, 5, 6, 8]]
    # the anchor itself is never shown, even when bought before
    assert 1 not in served_topk(cands, [np.array([1])], anchor, "boost", 5.0, 2.0, k=5)
    # no history: the anonymous list
    assert served_topk(cands, [np.array([], dtype=np.int64)], anchor, "boost", 5.0).tolist()[0][:4] \
        == [5, 6, 7, 8]


def shop_queries(rebuy, n_items=300, customers=120, orders_each=6, seed=0):
    """Anchor queries of one order per customer, with the customer's earlier orders as
    history. With ``rebuy`` each customer re-orders three staples; without, never an item
    twice."""
    rng = np.random.default_rng(seed)
    contexts, targets, histories = [], [], []
    for _ in range(customers):
        staples = rng.choice(n_items, 3, replace=False)
        used = set(staples.tolist())
        orders = []
        for _ in range(orders_each):
            if rebuy:
                fresh = rng.choice(n_items, 3, replace=False)
                orders.append(np.unique(np.concatenate([staples[:rng.integers(2, 4)], fresh])))
            else:
                fresh = [i for i in rng.permutation(n_items) if i not in used][:5]
                used.update(fresh)
                orders.append(np.array(fresh))
        *earlier, last = orders
        contexts.append(last[:1])
        targets.append(last[1:])
        histories.append(np.concatenate(earlier[::-1]))
    return Queries(contexts, targets, histories)


def test_a_shop_whose_customers_rebuy_gets_the_boost():
    scorer = FixedScorer(300)
    policy = choose_policy(scorer, shop_queries(rebuy=True), PolicyConfig(n_boot=300),
                           test=shop_queries(rebuy=True, seed=1))
    assert policy["mode"] == "boost" and policy["weight"] > 0
    figures = policy["validation"]
    assert figures["boost_ndcg10"] > 1.5 * figures["off_ndcg10"]
    assert figures["interval_pct"]["boost"][0] > 0
    assert policy["test"]["boost_ndcg10"] > policy["test"]["off_ndcg10"]


def test_a_shop_whose_customers_never_rebuy_never_gets_the_boost():
    scorer = FixedScorer(300)
    policy = choose_policy(scorer, shop_queries(rebuy=False), PolicyConfig(n_boot=300))
    assert policy["mode"] != "boost" and policy["weight"] == 0
    intervals = policy["validation"]["interval_pct"]
    assert intervals["boost"][0] <= 0
    # Products bought before are never bought again here: moving them back may help, and
    # is chosen only when the gain is beyond noise; otherwise the anonymous list stays.
    assert (policy["mode"] == "demote") == (intervals["demote"][0] > 0)


def test_without_histories_the_policy_is_off_with_a_reason():
    queries = shop_queries(rebuy=True)
    queries.histories = [np.zeros(0, dtype=np.int64) for _ in queries.contexts]
    policy = choose_policy(FixedScorer(300), queries)
    assert policy["mode"] == "off" and "history" in policy["reason"]
