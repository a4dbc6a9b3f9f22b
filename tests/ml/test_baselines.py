"""Every baseline finds the planted pair (P00 is always bought with P01)."""

import numpy as np
import pytest

from shop_recs.ml.baselines import EASE, CoOccurrence, ItemKNN, Popularity, cooccurrence_counts
from shop_recs.ml.types import Baskets


@pytest.mark.parametrize("make", [
    lambda: CoOccurrence("count"), lambda: CoOccurrence("confidence"), lambda: CoOccurrence("lift"),
    lambda: ItemKNN(k=10), lambda: EASE(lam=10.0),
], ids=["count", "confidence", "lift", "knn", "ease"])
def test_planted_pair_ranks_first(data, make):
    baskets, index, attrs = data
    a, b = index.index_of("P00"), index.index_of("P01")
    scorer = make().fit(baskets, attrs)
    scores = scorer.score([np.array([a])])[0]
    scores[a] = -np.inf
    assert int(np.argmax(scores)) == b


def test_cooccurrence_counts_by_hand():
    b = Baskets([0, 2, 5], [0, 1, 0, 1, 2], [1, 2], [-1, -1], 3)
    c = cooccurrence_counts(b, chunk_pairs=1)  # force several chunks
    assert c.tolist() == [[2, 2, 1], [2, 2, 1], [1, 1, 1]]


def test_ease_matches_closed_form():
    b = Baskets([0, 2, 5, 7], [0, 1, 0, 1, 2, 1, 2], [1, 2, 3], [-1] * 3, 3)
    ease = EASE(lam=1.0).fit(b)
    x = np.zeros((3, 3))
    for r, items in enumerate(b.as_list()):
        x[r, items] = 1
    p = np.linalg.inv(x.T @ x + np.eye(3))
    expected = np.eye(3) - p / np.diag(p)
    np.testing.assert_allclose(ease.matrix, expected, atol=1e-5)


def test_popularity_orders_by_count(data):
    baskets, _, _ = data
    s = Popularity().fit(baskets).score([np.array([0])])[0]
    counts = baskets.item_counts()
    assert int(np.argmax(s)) == int(np.argmax(counts))
