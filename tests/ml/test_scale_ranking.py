"""Ranking and listing at scale without an n-wide row (issue 15).

The fast paths are checked against the dense code they stand in for: published lists and
sparse item-item scorers rank exactly as their dense scores would (ties included), the
best-seller list skips each context, bundle lists learned from top lists are the ones a full
row gives, and a blend scored by candidates uses the same z-scores as the dense blend.
"""

import copy
import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import shop_recs.ml.topk as topk_module
from shop_recs.ml.baselines import EASE, Popularity, cooccurrence_counts
from shop_recs.ml.blend import BlendScorer, standardise
from shop_recs.ml.bundle_search import BundleSearch
from shop_recs.ml.bundles import BundleRules
from shop_recs.ml.candidates import blend_weight_lists, standardised_at
from shop_recs.ml.evaluate import anchor_queries, complete_queries, evaluate
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.policy import scorer_lists
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.served import PublishedLists, served_ranks
from shop_recs.ml.sparse import context_matrix
from shop_recs.ml.topk import masked, rank_and_topk, rank_sparse, topk_of_scores, topk_sparse
from shop_recs.ml.train import TrainConfig


def random_lists(rng, n, width):
    lists = np.full((n, width), -1, np.int64)
    scores = np.zeros((n, width))
    for i in range(n):
        m = int(rng.integers(0, min(width, n - 1) + 1))
        lists[i, :m] = rng.choice(np.delete(np.arange(n), i), m, replace=False)
        scores[i, :m] = np.sort(rng.integers(0, 3, m))[::-1] * 0.5  # ties on purpose
    return lists, scores


def random_queries(rng, n, q):
    contexts, targets = [], []
    for _ in range(q):
        c = rng.choice(n, int(rng.integers(1, min(n - 1, 5) + 1)), replace=True)
        rest = np.setdiff1d(np.arange(n), c)
        contexts.append(c)
        targets.append(rng.choice(rest, int(rng.integers(1, min(len(rest), 4) + 1)),
                                  replace=False))
    return contexts, targets


def test_published_lists_rank_as_their_dense_scores():
    """served_ranks gives the ranks and top k of ranking PublishedLists.score densely: the
    reciprocal-rank fusion, its tie rules, short lists filled by item id (context included)."""
    rng = np.random.default_rng(0)
    for trial in range(150):
        n, width, k = int(rng.integers(3, 50)), int(rng.integers(1, 12)), int(rng.integers(1, 14))
        lists, scores = random_lists(rng, n, width)
        served = PublishedLists.from_lists(lists, scores, "x")
        contexts, targets = random_queries(rng, n, int(rng.integers(1, 30)))
        want = rank_and_topk(served.score(contexts), contexts, targets, k)
        got = served_ranks(lists, scores, contexts, targets, k, chunk=int(rng.integers(1, 9)))
        assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1]), trial


def test_evaluating_published_lists_never_scores_a_row(data, monkeypatch):
    baskets, _, _ = data
    ease = EASE(30.0).fit(baskets)
    served = PublishedLists(ease, baskets.n_items, 10)
    queries = complete_queries(baskets.select(np.flatnonzero(baskets.sizes >= 2)), 0)
    dense = {key: evaluate(served.score(queries.contexts), queries, baskets.item_counts())[key]
             for key in ("hr", "ndcg", "mrr", "recall", "multi_ndcg")}

    def refuse(*a, **kw):
        raise AssertionError("an n-wide row was scored")

    monkeypatch.setattr(PublishedLists, "score", refuse)
    fast = evaluate(served, queries, baskets.item_counts())
    assert {key: fast[key] for key in dense} == dense


def sparse_case(rng, trial):
    n = int(rng.integers(2, 70))
    m = sp.random(n, n, density=rng.random() * 0.5, random_state=trial, format="csr",
                  dtype=np.float32)
    # ties and negatives; every other case with entries the size of the tie-break itself, so
    # rows are listed from entries and best sellers mixed
    step = 0.5 if trial % 2 else 5e-7
    m.data = (rng.integers(-2, 3, len(m.data)) * step).astype(np.float32)
    tie = (1e-6 * rng.integers(0, 4, n) / 3).astype(np.float32)
    return n, m, tie


@pytest.mark.parametrize("spare", [0, 64])
@pytest.mark.parametrize("max_entries", [0, 512])
def test_sparse_rows_rank_and_list_as_their_dense_scores(spare, max_entries, monkeypatch):
    """rank_sparse / topk_sparse: the dense scores' ranks and lists (float32, ties by id,
    entry-less items at their tie-break), with few best sellers to hand (spare 0) or many."""
    monkeypatch.setattr(topk_module._SparseRanker, "SPARE", spare)
    monkeypatch.setattr(topk_module._SparseRanker, "MAX_ENTRIES", max_entries)
    rng = np.random.default_rng(1)
    for trial in range(150):
        n, m, tie = sparse_case(rng, trial)
        if n < 3:
            continue
        k = int(rng.integers(1, 14))
        contexts, targets = random_queries(rng, n, int(rng.integers(1, 25)))
        dense = (context_matrix(contexts, n) @ m).toarray().astype(np.float32) + tie[None, :]
        ranks, top = rank_and_topk(dense, contexts, targets, k)
        chunk = int(rng.integers(1, 8))
        assert np.array_equal(rank_sparse(m, contexts, targets, k, tie, chunk)[0], ranks)
        s = masked(dense, contexts, np.float32)
        allowed = rng.random(n) < 0.7
        s[:, ~allowed] = -np.inf
        want = topk_of_scores(s, k)
        want = np.where(np.isfinite(np.take_along_axis(s, want, 1)), want, -1)
        idx, val = topk_sparse(m, contexts, k, tie, chunk, allowed=allowed)
        assert np.array_equal(np.where(np.isfinite(val), idx, -1), want), trial


def test_best_sellers_skip_the_context_and_the_disallowed():
    rng = np.random.default_rng(2)
    for n in (3, 9, 300):
        pop = Popularity()
        pop.popularity = rng.integers(0, 4, n).astype(np.float32)
        contexts = [rng.choice(n, int(rng.integers(1, min(n, 4) + 1)), replace=False)
                    for _ in range(40)]
        allowed = rng.random(n) < 0.8
        s = masked(pop.score(contexts), contexts)
        s[:, ~allowed] = -np.inf
        want = topk_of_scores(s, 10)
        want = np.where(np.isfinite(np.take_along_axis(s, want, 1)), want, -1)
        idx, val = pop.topk(contexts, 10, allowed=allowed)
        assert np.array_equal(np.where(np.isfinite(val), idx, -1), want), n


def test_bundle_lists_from_top_lists_are_those_of_full_rows(data):
    baskets, index, attrs = data
    ease = EASE(30.0, cooccurrence_counts(baskets, dense_max_items=0)).fit(baskets)
    n = baskets.n_items
    allowed = baskets.item_counts() >= 2
    rules = BundleRules(sizes=(3,), allowed=allowed, candidates=8)
    rows, lists = BundleSearch(index, attrs, rules), BundleSearch(index, attrs, rules)
    anchors = np.flatnonzero(allowed)
    ctx = [np.asarray([a]) for a in anchors]
    rows.learn(anchors, ease.score(ctx))
    idx, val = ease.topk(ctx, 8 + 16, allowed=rows.static_ok)
    lists.learn_lists(anchors, idx, val)
    assert n > 8 and (lists.lists[anchors] >= 0).sum() > 4 * len(anchors)
    assert np.array_equal(lists.lists[anchors], rows.lists[anchors])
    assert np.allclose(lists.list_scores[anchors], rows.list_scores[anchors])


@pytest.fixture(scope="module")
def sampled_model(data):
    baskets, _, attrs = data
    cfg = BundleModelConfig(n_items=0, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
    train = TrainConfig(epochs=2, batch_size=64, threads=1, time_budget_s=None, device="cpu",
                        negatives=32)
    return BundleScorer(dataclasses.replace(cfg, use_prior=False), train,
                        max_full_items=0).fit(baskets, attrs)


def test_candidate_z_scores_are_the_dense_blend_s(data, sampled_model):
    """Below MOMENT_SAMPLE items the sample is the catalogue: the model's z-scores at any
    columns are the dense standardise's; a sparse baseline's row moments are exact."""
    baskets, _, _ = data
    n = baskets.n_items
    ease = EASE(30.0, cooccurrence_counts(baskets, dense_max_items=0)).fit(baskets)
    contexts = [np.array([i]) for i in range(0, n, 3)] + [np.array([1, 4, 9])]
    cols = np.tile(np.arange(n), (len(contexts), 1))
    for component in (sampled_model, ease):
        dense = standardise(masked(component.score(contexts), contexts, np.float32))
        got = standardised_at(component, contexts, cols)
        ok = np.isfinite(got)
        ctx_mask = np.zeros_like(ok)
        for r, c in enumerate(contexts):
            ctx_mask[r, c] = True
        if component is ease:  # ease's row includes the context (tie-break only): unmasked
            dense = standardise(component.score(contexts))
            assert np.allclose(got, dense, atol=1e-4)
        else:
            assert (ok == ~ctx_mask).all()
            # the dense row fills the masked context with its minimum; z-scores of the rest
            # move by that one entry's share of the moments only
            assert np.corrcoef(got[ok], dense[ok])[0, 1] > 0.999


def test_a_blend_by_candidates_lists_what_the_dense_blend_lists(data, sampled_model):
    baskets, _, _ = data
    n = baskets.n_items
    ease = EASE(30.0, cooccurrence_counts(baskets, dense_max_items=0)).fit(baskets)
    weights = (0.0, 0.5, 2.0, float("inf"))
    fast = blend_weight_lists(ease, sampled_model, weights, n, 5)
    for w in weights:
        blend = BlendScorer([ease, sampled_model], BlendScorer.pair_weights(w), "b")
        want = topk_of_scores(masked(blend.score([np.array([a]) for a in range(n)]),
                                     [np.array([a]) for a in range(n)]), 5)
        got = fast[w][0]
        overlap = np.mean([len(set(got[a]) & set(want[a])) / 5 for a in range(n)])
        assert overlap > 0.9, (w, overlap)  # the candidates hold (nearly) every dense list
    # some anchors only (what judging reads): the same lists for those, nothing for the rest
    some = np.arange(1, n, 3)
    part = blend_weight_lists(ease, sampled_model, weights, n, 5, chunk=64, anchors=some)
    for w in weights:
        np.testing.assert_array_equal(part[w][0][some], fast[w][0][some])
        assert (np.delete(part[w][0], some, axis=0) == -1).all()


def test_the_policy_reads_published_lists_for_anchors(data, monkeypatch):
    baskets, _, _ = data
    served = PublishedLists(EASE(30.0).fit(baskets), baskets.n_items, 10)
    queries = anchor_queries(baskets.select(np.flatnonzero(baskets.sizes >= 2)), 0)
    want = scorer_lists(served.scorer, queries.contexts, 10)
    monkeypatch.setattr(PublishedLists, "score", lambda *a, **k: pytest.fail("scored"))
    got = scorer_lists(served, queries.contexts, 10)
    assert np.array_equal(got, want)


def test_scoring_by_columns_reads_one_table_until_a_weight_changes(data, sampled_model):
    """Eval-mode scoring by columns reads the item table embedded once (scoring_table):
    the same logits as embedding each call's rows, and a new table after any weight
    changes (a warm start's training, a loaded checkpoint)."""
    baskets, _, _ = data
    n = baskets.n_items
    model = sampled_model.model
    contexts = [np.array([a]) for a in range(0, n, 2)] + [np.array([2, 5, 7])]

    def lists():
        return sampled_model.topk(contexts, 10, chunk=16)

    cached_idx, cached_val = lists()
    table = model.scoring_table()
    assert model.scoring_table() is table  # kept between calls
    # every row embedded afresh at each call (item_rows, as training embeds a batch's rows)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(model), "scoring_table", lambda self: self.item_rows(torch.arange(n + 1)))
        old_idx, old_val = lists()
    np.testing.assert_array_equal(cached_idx, old_idx)
    np.testing.assert_array_equal(cached_val, old_val)
    saved = model.item_emb.weight.detach().clone()
    with torch.no_grad():
        model.item_emb.weight[1:] += 0.5  # an in-place update, as an optimiser step makes
        assert model.scoring_table() is not table
        assert not torch.equal(model.scoring_table(), table)
        model.item_emb.weight.copy_(saved)
    assert copy.deepcopy(model)._table_cache is None  # copies never carry it
