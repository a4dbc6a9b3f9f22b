"""Validation without queries x catalogue arrays (issue 15): the chunked and vectorised
functions give the figures of the per-row loops and whole-matrix code they replace.

Each reference below is the code before the change, kept here as the specification.
"""

import numpy as np
import pytest

from shop_recs.ml.blend import crossfit_weight, standardise, tune_weight
from shop_recs.ml.evaluate import (anchor_queries, complete_queries,
                                   customer_histories, evaluate, multi_ndcg_rows, rank_items,
                                   recall_at_k, subset)
from shop_recs.ml.policy import PolicyConfig, choose_policy, served_topk
from shop_recs.ml.repeat import HALF_LIVES, WEIGHTS, boost, tune_repeat
from shop_recs.ml.types import Baskets


def ref_histories(baskets, pool, max_items=256, max_orders=50):
    by_customer = {}
    for i in np.argsort(pool.timestamps, kind="stable"):
        if int(pool.customers[i]) >= 0:
            by_customer.setdefault(int(pool.customers[i]), []).append(int(i))
    out = []
    for ts, c in zip(baskets.timestamps, baskets.customers):
        earlier = [r for r in by_customer.get(int(c), []) if pool.timestamps[r] < ts]
        if not earlier:
            out.append(np.zeros(0, dtype=np.int32))
            continue
        items = np.concatenate([pool.basket(r) for r in reversed(earlier[-max_orders:])])
        out.append(items[:max_items].astype(np.int32))
    return out


def ref_served(cands, histories, contexts, mode, weight=0.0, half_life=16.0, k=10,
               max_history=256):
    top_k = cands.shape[1]
    base = 1.0 - np.arange(top_k) / top_k
    decay = 0.5 ** (np.arange(max_history) / max(half_life, 1e-9))
    out = np.full((len(cands), k), -1, dtype=np.int64)
    for row, (cand, hist, ctx) in enumerate(zip(cands, histories, contexts)):
        hist = np.asarray(hist, dtype=np.int64)[:max_history]
        shown = set(int(i) for i in ctx)
        if mode == "off" or len(hist) == 0:
            items = [int(i) for i in cand if int(i) not in shown]
        elif mode == "demote":
            kept = [int(i) for i in cand if int(i) not in shown]
            items = ([i for i in kept if i not in set(hist.tolist())]
                     + [i for i in kept if i in set(hist.tolist())])
        else:
            score = {int(item): float(base[rank]) for rank, item in enumerate(cand)}
            for position, item in enumerate(hist):
                score[int(item)] = score.get(int(item), 0.0) + weight * float(decay[position])
            order = {item: i for i, item in enumerate(dict.fromkeys(
                [*(int(i) for i in cand), *(int(i) for i in hist)]))}
            items = sorted((i for i in score if i not in shown),
                           key=lambda i: (-score[i], order[i]))
        out[row, :len(items[:k])] = items[:k]
    return out


def ref_multi_ndcg(topk, targets, k=10):
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    vals = []
    for row, t in zip(topk, targets):
        hits = np.isin(row[:k], t)
        vals.append(float(disc[:len(hits)][hits].sum()) / float(disc[:min(k, len(t))].sum()))
    return np.asarray(vals)


def shop(n_items=60, n_orders=400, customers=30, seed=0):
    """Orders with repeat customers, ties in time and anonymous buyers."""
    rng = np.random.default_rng(seed)
    baskets = [np.unique(rng.integers(0, n_items, rng.integers(1, 9))) for _ in range(n_orders)]
    sizes = np.array([len(b) for b in baskets])
    return Baskets(np.concatenate([[0], np.cumsum(sizes)]), np.concatenate(baskets),
                   rng.integers(0, n_orders // 3, n_orders),  # many equal timestamps
                   np.where(rng.random(n_orders) < 0.2, -1, rng.integers(0, customers,
                                                                        n_orders)), n_items)


@pytest.mark.parametrize("max_items,max_orders", [(256, 50), (5, 50), (256, 2), (1, 1)])
def test_customer_histories_equal_the_loop(max_items, max_orders):
    pool = shop()
    queries = shop(seed=1)
    for baskets in (pool, queries):
        got = customer_histories(baskets, pool, max_items, max_orders)
        want = ref_histories(baskets, pool, max_items, max_orders)
        assert len(got) == len(want)
        assert all(g.dtype == np.int32 and g.tolist() == w.tolist() for g, w in zip(got, want))
    assert sum(len(h) > 0 for h in customer_histories(queries, pool)) > 100  # not all empty


def test_served_lists_equal_the_loop_for_every_mode_and_setting():
    rng = np.random.default_rng(3)
    q, n = 300, 40
    cands = np.stack([rng.permutation(n)[:10] for _ in range(q)])
    # histories repeat items (re-orders) and hit the list; some are empty or long
    histories = [rng.integers(0, n, rng.choice([0, 1, 5, 30, 300])) for _ in range(q)]
    contexts = [rng.integers(0, n, rng.integers(1, 3)) for _ in range(q)]
    for mode, w, hl in [("off", 0, 16), ("demote", 0, 16), ("boost", 0.0, 4.0),
                        ("boost", 0.1, 4.0), ("boost", 1.6, 16.0), ("boost", 3.2, 256.0)]:
        for k in (5, 10, 14):
            got = served_topk(cands, histories, contexts, mode, w, hl, k)
            assert got.tolist() == ref_served(cands, histories, contexts, mode, w, hl,
                                              k).tolist(), (mode, w, hl, k)


def test_multi_ndcg_and_recall_equal_the_loop():
    rng = np.random.default_rng(4)
    topk = rng.integers(-1, 30, (500, 10))
    targets = [rng.integers(0, 30, rng.integers(1, 20)) for _ in range(500)]
    assert multi_ndcg_rows(topk, targets).tolist() == ref_multi_ndcg(topk, targets).tolist()
    assert multi_ndcg_rows(topk[:, :4], targets).tolist() == \
        ref_multi_ndcg(topk[:, :4], targets).tolist()
    want = float(np.mean([np.isin(r[:10], t).sum() / min(10, len(t))
                          for r, t in zip(topk, targets)]))
    assert recall_at_k(topk, targets) == want


class Table:
    """A scorer that reads item-item scores from a table and counts the rows it scores."""

    name = "table"

    def __init__(self, table):
        self.table, self.widest = table, 0

    def score(self, contexts, histories=None):
        self.widest = max(self.widest, len(contexts))
        return np.stack([self.table[c].sum(0) for c in contexts]).astype(np.float32)


def queries_of(n_queries=700, n=50, seed=5):
    rng = np.random.default_rng(seed)
    baskets = shop(n, n_queries, seed=seed)
    baskets = baskets.select(baskets.sizes >= 2)
    q = anchor_queries(baskets, 0, customer_histories(baskets, baskets))
    return q, rng


def test_blend_weight_search_is_chunked_and_equals_the_whole_matrix():
    q, rng = queries_of()
    a, b = Table(rng.random((50, 50))), Table(rng.random((50, 50)))
    pop = np.ones(50)
    whole_a, whole_b = a.score(q.contexts), b.score(q.contexts)
    a.widest = b.widest = 0
    grid = (0.0, 0.5, 1.0, 3.0, float("inf"))
    w, value, values = tune_weight(a, b, q, pop, "multi_ndcg", grid)
    assert a.widest <= 256 and b.widest <= 256  # never all queries at once
    za, zb = standardise(whole_a), standardise(whole_b)
    want = {g: evaluate(zb if np.isinf(g) else (za + g * zb if g else za), q, pop)["multi_ndcg"]
            for g in grid}
    assert values == want and value == max(want.values())
    assert tune_weight(whole_a, whole_b, q, pop, "multi_ndcg", grid)[2] == want
    # cross-fitting: each fold scored with the weight tuned on the other, as before
    rows, chosen = crossfit_weight(a, b, q, pop, "ndcg", grid, folds=2, seed=1)
    part = np.random.default_rng(1).permutation(len(q.contexts)) % 2
    for f in range(2):
        fit, held = np.flatnonzero(part != f), np.flatnonzero(part == f)
        wf = max(grid, key=lambda g: (evaluate(zb[fit] if np.isinf(g) else za[fit] + g * zb[fit],
                                               subset(q, fit), pop)["ndcg"], -g))
        assert chosen[f] == wf
        mixed = zb[held] if np.isinf(wf) else za[held] + wf * zb[held]
        assert rows[held].tolist() == evaluate(mixed, subset(q, held), pop)["rows"]["ndcg"].tolist()


def test_repeat_tuning_is_chunked_and_equals_the_whole_matrix():
    q, rng = queries_of(seed=6)
    base = Table(rng.random((50, 50)))
    pop = np.ones(50)
    z = standardise(base.score(q.contexts))
    base.widest = 0
    got = tune_repeat(base, q, pop, "multi_ndcg")
    assert base.widest <= 256
    best, best_value = (0.0, HALF_LIVES[0]), evaluate(z, q, pop)["multi_ndcg"]
    for w in WEIGHTS:
        for hl in HALF_LIVES:
            v = evaluate(boost(z.copy(), q.histories, w, hl), q, pop)["multi_ndcg"]
            if v > best_value:
                best, best_value = (w, hl), v
    assert got == (best, best_value) and best != (0.0, HALF_LIVES[0])


def test_policy_scores_chunks_and_equals_the_whole_matrix():
    q, rng = queries_of(n_queries=900, seed=7)
    table = Table(rng.random((50, 50)))
    cfg = PolicyConfig(n_boot=200)
    got = choose_policy(table, q, cfg, test=q)
    assert table.widest <= 256
    # the published lists of the old code: a full sort of every query's scores at once
    rows = np.array([i for i, h in enumerate(q.histories) if len(h)])
    sub = subset(q, rows)
    cands = rank_items(table.score(sub.contexts), sub.contexts)[:, :cfg.top_k]
    off = ref_multi_ndcg(ref_served(cands, sub.histories, sub.contexts, "off"), sub.targets)
    assert got["validation"]["off_ndcg10"] == float(off.mean())
    demote = ref_served(cands, sub.histories, sub.contexts, "demote")
    assert got["validation"]["demote_ndcg10"] == float(ref_multi_ndcg(demote, sub.targets).mean())
    best = (0.0, cfg.half_lives[0], -1.0)  # the old _tune on all of validation
    for w in cfg.weights:
        for hl in cfg.half_lives:
            boosted = ref_served(cands, sub.histories, sub.contexts, "boost", w, hl)
            value = float(np.mean(ref_multi_ndcg(boosted, sub.targets)))
            best = (w, hl, value) if value > best[2] else best
    boosted = ref_served(cands, sub.histories, sub.contexts, "boost", best[0], best[1])
    assert got["test"]["boost_ndcg10"] == float(ref_multi_ndcg(boosted, sub.targets).mean())


def test_complete_queries_unchanged_by_chunking():
    q, rng = queries_of(seed=8)
    baskets = shop(50, 600, seed=8)
    cq = complete_queries(baskets.select(baskets.sizes >= 2), 0)
    table = Table(rng.random((50, 50)))
    whole = table.score(cq.contexts)
    assert evaluate(table, cq, np.ones(50), batch_size=64)["rows"]["ndcg"].tolist() == \
        evaluate(whole, cq, np.ones(50))["rows"]["ndcg"].tolist()
