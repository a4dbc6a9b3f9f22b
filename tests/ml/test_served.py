"""served: published lists and the cart merge the benchmark scores (hand-checked)."""

import numpy as np
import pytest

from shop_recs.ml.blend import BlendScorer
from shop_recs.ml.evaluate import Queries, evaluate
from shop_recs.ml.served import PublishedLists, blend_lists


class Fixed:
    """A scorer with a fixed item x item score matrix (a context's rows are added)."""

    name = "fixed"

    def __init__(self, matrix):
        self.matrix = np.asarray(matrix, dtype=np.float32)

    def score(self, contexts, histories=None):
        return np.stack([self.matrix[np.asarray(c)].sum(axis=0) for c in contexts])


def test_lists_are_the_top_k_without_the_anchor_ties_by_index():
    m = [[9, 1, 1, 0, 5], [1, 9, 2, 3, 0], [0, 0, 0, 0, 0], [1, 2, np.nan, 9, -np.inf],
         [0, 0, 0, 0, 0]]
    served = PublishedLists(Fixed(m), 5, top_k=3)
    # a non-finite score is never published: row 3 has 1, 0, then NaN and -inf -> padded
    np.testing.assert_array_equal(served.lists, [[4, 1, 2], [3, 2, 0], [0, 1, 3], [1, 0, -1],
                                                 [0, 1, 2]])


def test_a_cart_merges_the_lists_by_reciprocal_rank_with_best_position_then_score():
    lists = np.array([[5, 6, 7], [7, 8, 5], [6, 9, 4]] + [[-1, -1, -1]] * 7)
    scores = np.array([[3.0, 2.0, 1.0], [9.0, 8.0, 7.0], [4.0, 0.5, 0.1]] + [[0.0] * 3] * 7)
    served = PublishedLists.from_lists(lists, scores, "hand")
    # one anchor: its list as published
    np.testing.assert_array_equal(served.merge(np.array([1])), [7, 8, 5])
    # 5: 1/1 + 1/3; 7: 1/3 + 1/1 (same fusion, same best position 1, 7's score 9 > 5's 3);
    # 6: 1/2 + 1/1 = 1.5 first; then 8 (1/2) and 9 (1/2): best position 2, 8's score 8 > 0.5;
    # 4: 1/3
    np.testing.assert_array_equal(served.merge(np.array([0, 1, 2])), [6, 7, 5, 8, 9, 4])
    scores_out = served.score([np.array([0, 1, 2])])
    assert np.isneginf(scores_out[0, [0, 1, 2, 3]]).all()  # on no list: not served
    order = np.argsort(-scores_out[0], kind="stable")[:6]
    np.testing.assert_array_equal(order, [6, 7, 5, 8, 9, 4])


def test_the_cart_figure_is_the_merged_lists_not_the_whole_cart_model():
    # the scorer ranks 3 first for the cart {0, 1} (4 + 4 beats 5 + 0), but 3 is
    # on no published top-1 list: served, the cart gets 2 (0's list) and 4 (1's list)
    m = np.zeros((5, 5), np.float32)
    m[0, 2], m[0, 3] = 5, 4
    m[1, 4], m[1, 3] = 5, 4
    served = PublishedLists(Fixed(m), 5, top_k=1)
    q = Queries([np.array([0, 1])], [np.array([3])])
    pop = np.ones(5)
    assert evaluate(Fixed(m), q, pop)["ndcg"] == 1.0
    res = evaluate(served, q, pop, k=2)
    assert res["ndcg"] == 0.0 and res["topk"][0].tolist() == [2, 4]
    q = Queries([np.array([0, 1])], [np.array([4])])
    assert evaluate(served, q, pop, k=2)["ndcg"] == pytest.approx(1 / np.log2(3))


def test_blend_lists_for_a_grid_equal_the_blend_scorer_published():
    rng = np.random.default_rng(0)
    a, b = Fixed(rng.normal(size=(30, 30))), Fixed(rng.normal(size=(30, 30)))
    grid = (0.0, 0.5, 2.0, float("inf"))
    by_weight = blend_lists(a, b, grid, 30, top_k=5, chunk=7)
    for w in grid:
        blend = BlendScorer([a, b], BlendScorer.pair_weights(w), "blend")
        np.testing.assert_array_equal(by_weight[w].lists, PublishedLists(blend, 30, 5).lists)


def test_top_k_must_be_positive():
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        PublishedLists(Fixed(np.zeros((2, 2))), 2, top_k=0)


def test_lists_for_some_anchors_are_the_same_rows_and_refuse_the_others():
    rng = np.random.default_rng(1)
    a, b = Fixed(rng.normal(size=(30, 30))), Fixed(rng.normal(size=(30, 30)))
    anchors = np.array([17, 3, 3, 25, 0, 9])
    every, some = PublishedLists(a, 30, 5, chunk=4), PublishedLists(a, 30, 5, chunk=4,
                                                                    anchors=anchors)
    built = np.unique(anchors)
    np.testing.assert_array_equal(some.lists[built], every.lists[built])
    np.testing.assert_array_equal(some.list_scores[built], every.list_scores[built])
    assert (np.delete(some.lists, built, axis=0) == -1).all()
    assert not some.same_as(every) and some.same_as(PublishedLists(a, 30, 5, anchors=built))
    # the cart and product-page figures of covered contexts are the full lists' figures
    q = Queries([np.array([3, 17]), np.array([25]), np.array([0, 9, 3])],
                [np.array([4]), np.array([1, 2]), np.array([11])])
    pop = np.ones(30)
    assert evaluate(some, q, pop, k=5)["ndcg"] == evaluate(every, q, pop, k=5)["ndcg"]
    np.testing.assert_array_equal(some.merge(np.array([0, 9])), every.merge(np.array([0, 9])))
    # a context without its list is an error, never an empty list that scores zero
    with pytest.raises(ValueError, match="some anchors only"):
        some.merge(np.array([3, 4]))
    with pytest.raises(ValueError, match="some anchors only"):
        evaluate(some, Queries([np.array([5])], [np.array([1])]), pop)
    blends = blend_lists(a, b, (0.0, 1.0), 30, top_k=5, chunk=4, anchors=anchors)
    full = blend_lists(a, b, (0.0, 1.0), 30, top_k=5, chunk=4)
    for w in (0.0, 1.0):
        np.testing.assert_array_equal(blends[w].lists[built], full[w].lists[built])
        with pytest.raises(ValueError, match="some anchors only"):
            blends[w].merge(np.array([1]))
