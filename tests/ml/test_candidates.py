"""Lists above the sampled-softmax size (issue 15): each anchor is scored against its candidates
only, the lists are the dense ones wherever the candidates hold them, and nothing n-wide is
built per anchor; dense scoring keeps its model calls bounded."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import shop_recs.ml.scorer as scorer_module
from shop_recs.ml.baselines import EASE, Popularity, cooccurrence_counts
from shop_recs.ml.candidates import pad_rows, top_columns, topk_positions, union_candidates
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.sparse import context_matrix
from shop_recs.ml.synthetic import synthetic_orders
from shop_recs.ml.topk import masked, topk_of_scores
from shop_recs.ml.train import TrainConfig
from shop_recs.ml.types import ItemAttributes

TINY = BundleModelConfig(n_items=0, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
ONE = TrainConfig(epochs=1, batch_size=64, threads=1, time_budget_s=None, device="cpu",
                  negatives=64)


@pytest.fixture(scope="module")
def forced(data):
    baskets, _, attrs = data
    cfg = TrainConfig(epochs=6, batch_size=64, lr=5e-3, threads=1, time_budget_s=None,
                      device="cpu", negatives=32)
    # no prior: the candidates are then the head, the history and the rows passed in
    return BundleScorer(dataclasses.replace(TINY, use_prior=False), cfg,
                        max_full_items=0).fit(baskets, attrs)


def test_candidate_lists_are_the_dense_lists_restricted_to_the_candidates(forced, monkeypatch):
    monkeypatch.setattr(scorer_module, "CANDIDATE_HEAD", 3)  # so some sets miss the dense list
    n = forced.model_config.n_items
    anchors = [np.array([i]) for i in range(n)] + [np.array([0, 7])]
    hist = [np.array([(i * 5) % n, (i * 11) % n]) for i in range(len(anchors))]
    dense = topk_of_scores(masked(forced.score(anchors, hist), anchors), n)  # full order
    rng = np.random.default_rng(0)  # e.g. a sparse baseline's pruned rows: 4 per item
    rows = np.repeat(np.arange(n), 4)
    extra = sp.csr_matrix((np.ones(4 * n), (rows, rng.integers(0, n, 4 * n))), shape=(n, n))
    idx, val = forced.topk(anchors, 5, hist, candidates=extra)
    cands = forced.candidates(anchors, hist, extra)
    covered = 0
    for q, cand in enumerate(cands):
        assert not set(anchors[q]) & set(cand)  # the context is never a candidate
        expected = [j for j in dense[q] if j in set(cand)][:5]  # dense order, candidates only
        got = idx[q][idx[q] >= 0]
        assert got.tolist() == expected
        assert np.isfinite(val[q][:len(got)]).all() and np.isneginf(val[q][len(got):]).all()
        if set(dense[q, :5]) <= set(cand):
            covered += 1
            assert got.tolist() == dense[q, :5].tolist()  # the dense list itself
    assert 0 < covered < len(anchors)  # both cases were exercised
    allowed = np.ones(n, dtype=bool)
    allowed[::2] = False  # publishing lists only the allowed items, on both paths
    for limit in (0, 10**6):
        forced.max_full_items = limit
        idx, _ = forced.topk(anchors, 5, hist, candidates=extra, allowed=allowed)
        assert forced.sampled == (limit == 0) and (idx % 2 == 1)[idx >= 0].all()
    forced.max_full_items = 0


class ShapeSpy(TorchDispatchMode):
    """Records the shape of every tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def test_no_catalogue_wide_row_is_built_per_anchor_above_the_size():
    shop = synthetic_orders(3001, 12_000, seed=1)
    n = shop.baskets.n_items
    attrs = ItemAttributes.empty(n)
    s = BundleScorer(TINY, ONE, max_full_items=1000, max_prior_items=1000).fit(shop.baskets,
                                                                              attrs)
    assert s.sampled and s.model_config.sparse_prior
    anchors = [np.array([a]) for a in range(0, n, 47)]
    assert max(len(c) for c in s.candidates(anchors)) < n / 5  # prior rows + best sellers
    # the item table is n x d once per model (rebuilt when a weight changes), not per anchor
    table = s.model.scoring_table()
    assert tuple(table.shape) == (n + 1, s.model_config.d_model)
    with ShapeSpy() as spy:
        idx, _ = s.topk(anchors, 10)
    wide = [sh for sh in spy.shapes if len(sh) >= 2 and max(sh) >= n]
    assert spy.shapes and not wide
    assert (idx[:, 0] >= 0).all()
    with ShapeSpy() as dense:  # the spy sees a dense row when there is one
        s.score(anchors[:4])
    assert any(len(sh) >= 2 and max(sh) >= n for sh in dense.shapes)


def test_dense_scores_do_not_depend_on_how_many_queries_a_model_call_holds(forced, data,
                                                                            monkeypatch):
    n = forced.model_config.n_items
    anchors = [np.array([i]) for i in range(n)]
    whole = forced.score(anchors)
    monkeypatch.setattr(scorer_module, "SCORE_ELEMENTS", 4 * (n + 1))  # 4 queries a call
    calls = []
    model = forced.model
    original = model.full_sort_predict
    monkeypatch.setattr(model, "full_sort_predict",
                        lambda c, h=None, table=None: calls.append(len(c))
                        or original(c, h, table=table))
    np.testing.assert_allclose(forced.score(anchors), whole, rtol=1e-5, atol=1e-5)
    assert max(calls) == 4


def test_early_stopping_validates_on_a_sample_above_the_size(data, monkeypatch):
    baskets, _, attrs = data
    monkeypatch.setattr(scorer_module, "MAX_VAL_BASKETS", 10)
    seen = []
    real = scorer_module.evaluate
    monkeypatch.setattr(scorer_module, "evaluate",
                        lambda s, q, pop, **kw: seen.append(len(q.contexts))
                        or real(s, q, pop, **kw))
    cfg = TrainConfig(epochs=1, batch_size=64, threads=1, time_budget_s=None, device="cpu")
    BundleScorer(TINY, cfg).fit(baskets, attrs, val=baskets)  # below: every order
    below = max(seen)
    seen.clear()
    BundleScorer(TINY, cfg, max_full_items=0).fit(baskets, attrs, val=baskets)
    assert below > 40 and 0 < max(seen) <= 10  # one query per order and view at most


class Fixed:
    """A component whose candidates are given rows (duplicates and context items included)."""

    def __init__(self, rows):
        self.rows = rows

    def candidates(self, contexts):
        return self.rows


def test_the_union_of_candidates_is_each_row_s_sorted_union_less_its_context():
    rng = np.random.default_rng(3)
    n, q = 40, 60
    contexts = [rng.integers(0, n, int(rng.integers(0, 4))) for _ in range(q)]
    parts = [Fixed([rng.integers(0, n, int(rng.integers(0, 9))) for _ in range(q)])
             for _ in range(3)]
    parts.append(Fixed([np.arange(int(rng.integers(0, 5))) for _ in range(q)]))  # a head
    allowed = rng.random(n) < 0.7
    for ok in (None, allowed):
        got = union_candidates(parts, contexts, ok)
        assert len(got) == q
        for r, ctx in enumerate(contexts):
            want = np.unique(np.concatenate([p.rows[r] for p in parts]))
            want = want[~np.isin(want, ctx)]
            if ok is not None:
                want = want[ok[want]]
            assert got[r].dtype == np.int64 and got[r].tolist() == want.tolist()
    assert union_candidates(parts, [], None) == []
    rows = [rng.integers(-3, n, int(rng.integers(0, 7))) for _ in range(q)] + [np.zeros(0)]
    padded = pad_rows(rows)
    assert padded.shape == (q + 1, max(len(np.unique(r)) for r in rows))
    for r, row in enumerate(rows):
        u = np.unique(row).astype(np.int64)
        assert padded[r, :len(u)].tolist() == u.tolist() and (padded[r, len(u):] == -1).all()
    assert pad_rows([np.zeros(0)]).tolist() == [[-1]]


def test_top_positions_are_the_stable_sort_s_ties_and_minus_infinity_included():
    rng = np.random.default_rng(4)
    s = rng.integers(0, 4, (50, 30)).astype(np.float64)  # many ties
    s[rng.random(s.shape) < 0.3] = -np.inf
    s[:5] = -np.inf  # rows with nothing finite
    s[5, :3] = [2.0, 2.0, -0.0]
    for k in (1, 3, 10, 30, 40):
        want = np.argsort(-s, axis=1, kind="stable")[:, :k]
        assert np.array_equal(topk_positions(s, k), want)
        assert np.array_equal(topk_positions(s, k), topk_of_scores(s, k))


def per_query_candidates(s, contexts, histories=None, extra=None):
    """BundleScorer.candidates' definition, one query at a time."""
    m, n = s.model, s.model_config.n_items
    bias = m.out_bias.detach()[1:].float().numpy()
    h = min(scorer_module.CANDIDATE_HEAD, n)
    head = np.argpartition(-bias, h - 1)[:h] if 0 < h < n else np.arange(n)
    out = []
    for q, ctx in enumerate(contexts):
        ctx = np.asarray(ctx, dtype=np.int64)[:s.max_context_eval]
        parts = [head]
        if s.model_config.use_prior and s.model_config.sparse_prior:
            crow, col = m.prior_crow.numpy(), m.prior_col.numpy() - 1
            parts += [col[crow[c + 1]:crow[c + 2]] for c in ctx]
        elif s.model_config.use_prior:
            parts += [np.flatnonzero(m.prior[c + 1, 1:].numpy()) for c in ctx]
        if extra is not None:
            parts += [extra.indices[extra.indptr[c]:extra.indptr[c + 1]] for c in ctx]
        if histories is not None:
            parts.append(np.asarray(histories[q])[:s.train_config.max_history])
        cand = np.unique(np.concatenate(parts).astype(np.int64))
        out.append(cand[~np.isin(cand, ctx)].tolist())
    return out


@pytest.mark.parametrize("prior", ["none", "dense", "sparse"])
def test_candidates_of_every_query_at_once_are_each_query_s(data, prior, monkeypatch):
    baskets, _, attrs = data
    n = baskets.n_items
    monkeypatch.setattr(scorer_module, "CANDIDATE_HEAD", 5)
    monkeypatch.setattr(scorer_module, "CANDIDATE_CHUNK", 7)  # several chunks
    s = BundleScorer(dataclasses.replace(TINY, use_prior=prior != "none"), ONE,
                     max_full_items=0, max_prior_items=0 if prior == "sparse" else 10**6)
    s.fit(baskets, attrs)
    assert s.model_config.sparse_prior == (prior == "sparse")
    s.max_context_eval = 3  # a longer context is cut, and only its first items are removed
    rng = np.random.default_rng(5)
    contexts = [rng.choice(n, int(rng.integers(1, 6)), replace=False) for _ in range(30)]
    hist = [rng.integers(0, n, int(rng.integers(0, 4))) for _ in contexts]
    extra = sp.random(n, n, density=0.05, format="csr", random_state=1)
    for h, e in ((None, None), (hist, extra)):
        got = s.candidates(contexts, h, e)
        assert [c.tolist() for c in got] == per_query_candidates(s, contexts, h, e)
    assert s.candidates([]) == []


def test_baseline_candidates_are_each_row_s_entries_and_best_sellers_less_its_context(data):
    baskets, _, _ = data
    n = baskets.n_items
    ease = EASE(30.0, cooccurrence_counts(baskets, dense_max_items=0)).fit(baskets)
    pop = Popularity().fit(baskets)
    rng = np.random.default_rng(6)
    contexts = [rng.choice(n, int(rng.integers(1, 4)), replace=False) for _ in range(40)]
    contexts.append(np.lexsort((np.arange(n), -pop.popularity))[:3])  # best sellers
    best = np.lexsort((np.arange(n), -ease.popularity))
    rows = (context_matrix(contexts, n) @ ease.matrix).tocsr()
    for r, (e, p) in enumerate(zip(ease.candidates(contexts, head=7), pop.candidates(contexts))):
        want = np.union1d(rows.indices[rows.indptr[r]:rows.indptr[r + 1]], best[:7])
        assert e.tolist() == want[~np.isin(want, contexts[r])].tolist()
        assert p.tolist() == [j for j in best[:200] if j not in set(contexts[r])]  # in order
    assert ease.candidates([]) == [] and pop.candidates([]) == []
    cols = np.array([[3, 5, 8, -1], [3, 5, 8, 9]])
    z = np.array([[np.nan, 1.0, 2.0, 7.0], [1.0, np.inf, 2.0, np.nan]], dtype=np.float32)
    assert top_columns(z, cols, 3)[0].tolist() == [[8, 5, -1], [8, 3, -1]]
    # the blend's lists keep their old rule: a +inf ranks first and leaves a -1 there
    assert top_columns(z, cols, 3, finite_only=False)[0].tolist() == [[8, 5, -1], [-1, 8, 3]]
