"""The sparse item-item core agrees with the dense baselines where both apply."""

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.synthetic_shop import ShopParams, synthetic_baskets
from shop_recs.ml import sparse
from shop_recs.ml.baselines import EASE, CoOccurrence, ItemKNN, cooccurrence_counts
from shop_recs.ml.types import Baskets


@pytest.fixture(scope="module")
def shop():
    """A small synthetic shop with planted groups: 300 products, most of them bought."""
    baskets, _ = synthetic_baskets(ShopParams(products=300, lines=8000, seed=1, chunk_orders=500))
    return baskets


def anchors(baskets):
    return [np.array([a]) for a in np.flatnonzero(baskets.item_counts() > 0)]


def test_one_rule_decides_dense_or_sparse(shop):
    n = shop.n_items
    assert sparse.use_dense(sparse.DENSE_MAX_ITEMS) and not sparse.use_dense(
        sparse.DENSE_MAX_ITEMS + 1)
    assert isinstance(cooccurrence_counts(shop), np.ndarray)  # 300 products: dense
    assert isinstance(cooccurrence_counts(shop, dense_max_items=n), np.ndarray)
    assert sp.issparse(cooccurrence_counts(shop, dense_max_items=n - 1))


@pytest.mark.parametrize("block", [None, 7])
def test_sparse_counts_equal_dense(shop, block):
    dense = cooccurrence_counts(shop)
    got = sparse.sparse_cooccurrence(shop, block_items=block)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.toarray(), dense)


@pytest.mark.parametrize("make", [
    lambda c: CoOccurrence("count", c, keep=20), lambda c: CoOccurrence("confidence", c, keep=20),
    lambda c: CoOccurrence("lift", c, keep=20), lambda c: ItemKNN(15, 10.0, c),
    lambda c: EASE(30.0, c, head_items=10_000, keep=20),
], ids=["count", "confidence", "lift", "knn", "ease"])
def test_sparse_and_dense_give_the_same_top_lists(shop, make):
    dense = make(cooccurrence_counts(shop)).fit(shop)
    sparse_scorer = make(cooccurrence_counts(shop, dense_max_items=0)).fit(shop)
    assert sp.issparse(sparse_scorer.matrix) and isinstance(dense.matrix, np.ndarray)
    assert sparse_scorer.matrix.nnz <= 20 * shop.n_items  # pruned
    q = anchors(shop)
    d_idx, d_val = dense.topk(q, 10)
    s_idx, s_val = sparse_scorer.topk(q, 10)
    # EASE's dense matrix has small negative weights where the pruned one has none: compare
    # the lists where the dense list is made of positive weights (what gets published)
    rows = np.all(d_val > 1e-5, axis=1) if "ease" in dense.name else slice(None)
    assert np.all(d_val > 1e-5, axis=1).mean() > 0.5
    np.testing.assert_array_equal(s_idx[rows], d_idx[rows])
    np.testing.assert_allclose(s_val[rows], d_val[rows], rtol=1e-4, atol=1e-6)


def test_dense_topk_equals_a_full_stable_sort(shop):
    scorer = CoOccurrence("count").fit(shop)
    q = anchors(shop)[:50] + [np.array([0, 1, 2])]
    idx, _ = scorer.topk(q, 10, chunk=8)
    full = scorer.score(q)
    for r, ctx in enumerate(q):
        full[r, ctx] = -np.inf
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1, kind="stable")[:, :10])


def test_sparse_topk_ranks_multi_item_contexts_and_fills_from_popularity():
    # 0-1 bought together twice, 1-2 once; item 3 alone but popular; 4 never co-bought
    b = Baskets([0, 2, 4, 6, 7, 8, 9], [0, 1, 0, 1, 1, 2, 3, 3, 3], np.arange(6), [-1] * 6, 5)
    dense = CoOccurrence("count").fit(b)
    sparse_scorer = CoOccurrence("count", cooccurrence_counts(b, dense_max_items=0)).fit(b)
    q = [np.array([0]), np.array([0, 2]), np.array([4])]
    d_idx, _ = dense.topk(q, 4)
    s_idx, _ = sparse_scorer.topk(q, 4)
    np.testing.assert_array_equal(s_idx, d_idx)
    assert s_idx[0].tolist() == [1, 3, 2, 4]  # partner, then by popularity (3 > 2 > 4)
    assert s_idx[1].tolist()[:2] == [1, 3]


def test_prune_keeps_the_best_with_the_dense_tie_break():
    m = sp.csr_matrix(np.array([[5, 1, 3, 3, 3], [1, 0, 0, 0, 2]], dtype=np.float32))
    assert sparse.prune_rows(m, 2).toarray().tolist() == [[5, 0, 3, 0, 0], [1, 0, 0, 0, 2]]
    tie = sparse.tie_term(np.array([1, 1, 1, 1, 9]))  # item 4 more popular: wins the tie
    assert sparse.prune_rows(m, 2, tie).toarray().tolist() == [[5, 0, 0, 0, 3],
                                                               [1, 0, 0, 0, 2]]


def test_head_tail_ease_is_exact_on_the_head_and_diagonal_elsewhere(shop):
    c = cooccurrence_counts(shop, dense_max_items=0)
    lam, head = 20.0, 40
    b = sparse.head_tail_ease(c, lam, head, keep=None).toarray()
    support = c.diagonal()
    h = np.sort(np.argsort(-support, kind="stable")[:head])
    g = c[h][:, h].toarray().astype(np.float64) + lam * np.eye(head)
    p = np.linalg.inv(g)
    exact = -p / np.diag(p)[None, :]
    np.fill_diagonal(exact, 0.0)
    np.testing.assert_allclose(b[np.ix_(h, h)], exact, atol=1e-5)
    dense_c = c.toarray()
    tail = np.setdiff1d(np.arange(shop.n_items), h)
    i, j = tail[0], int(np.argmax(dense_c[tail[0]] * (np.arange(shop.n_items) != tail[0])))
    assert b[i, j] == pytest.approx(dense_c[i, j] / (support[i] + lam), rel=1e-5)
    # with the whole catalogue as head it is EASE
    full = sparse.head_tail_ease(c, lam, 10_000, keep=None).toarray()
    np.testing.assert_allclose(full, EASE(lam).fit(shop).matrix, atol=1e-5)


def test_unknown_kind_is_refused(shop):
    with pytest.raises(ValueError, match="unknown kind"):
        sparse.transform_rows(sparse.sparse_cooccurrence(shop), "jaccard", len(shop))


@pytest.mark.parametrize("make", [
    lambda c: CoOccurrence("lift", c, keep=20), lambda c: ItemKNN(15, 10.0, c),
    lambda c: EASE(30.0, c, head_items=50, keep=20),
], ids=["lift", "knn", "ease"])
def test_published_lists_of_a_sparse_scorer_never_score_densely(shop, make, monkeypatch):
    """Issue 15: the lists every candidate is judged by come from the sparse top-k (never a
    chunk x n array); they are the lists of the dense scores of the same sparse matrix."""
    from shop_recs.ml.served import PublishedLists, top_lists

    scorer = make(cooccurrence_counts(shop, dense_max_items=0)).fit(shop)
    n = shop.n_items
    want = top_lists(lambda a: scorer.score([np.array([x]) for x in a]), n, 10)
    monkeypatch.setattr(type(scorer), "score", lambda *a, **k: pytest.fail("dense scores"))
    served = PublishedLists(scorer, n, 10)
    np.testing.assert_array_equal(served.lists, want[0])
    np.testing.assert_allclose(served.list_scores, want[1], rtol=1e-6)


@pytest.mark.parametrize("dense_max", [None, 0], ids=["dense", "sparse"])
def test_score_candidates_equals_score_at_those_items(shop, dense_max):
    """Bundle search scores a beam at its anchor's candidates only (issue 15): the values are
    exactly those of the full rows."""
    from shop_recs.ml.baselines import Popularity
    from shop_recs.ml.protocol import OnCatalogue

    counts = cooccurrence_counts(shop, dense_max_items=dense_max)
    rng = np.random.default_rng(0)
    contexts = [rng.choice(shop.n_items, size=s, replace=False) for s in (1, 2, 3, 1)]
    cand = rng.integers(0, shop.n_items, size=(4, 25))
    for scorer in (CoOccurrence("lift", counts).fit(shop), EASE(30.0, counts).fit(shop),
                   Popularity().fit(shop)):
        got = scorer.score_candidates(contexts, cand)
        assert got.dtype == np.float32 and got.shape == cand.shape
        np.testing.assert_array_equal(got, np.take_along_axis(scorer.score(contexts), cand, 1))
    items = np.arange(shop.n_items)[::-1].copy()  # a catalogue seen through a permutation
    seen = OnCatalogue(CoOccurrence("count", counts).fit(shop), items)
    np.testing.assert_array_equal(seen.score_candidates(contexts, cand),
                                  np.take_along_axis(seen.score(contexts), cand, 1))
