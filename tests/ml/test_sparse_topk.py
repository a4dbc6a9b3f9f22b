"""Top-k and target ranks without full sorts equal what a stable full argsort gives."""

import numpy as np

from shop_recs.ml.evaluate import rank_items
from shop_recs.ml.topk import rank_and_topk, topk_rows


def scores_with_ties(rng, b=40, n=60):
    s = rng.integers(0, 6, size=(b, n)).astype(np.float32)  # many ties
    s[rng.random((b, n)) < 0.05] = np.nan
    s[rng.random((b, n)) < 0.05] = -np.inf
    s[rng.random((b, n)) < 0.02] = np.inf
    return s


def test_rank_and_topk_equal_the_full_stable_sort():
    rng = np.random.default_rng(0)
    s = scores_with_ties(rng)
    contexts = [rng.choice(60, size=rng.integers(1, 4), replace=False) for _ in range(40)]
    targets = [np.setdiff1d(rng.choice(60, size=rng.integers(1, 6), replace=False), c)
               for c in contexts]
    targets = [t if len(t) else np.array([59 if 59 not in c else 58]) for t, c in
               zip(targets, contexts)]
    order = rank_items(s, contexts)
    position = np.empty_like(order)
    position[np.arange(len(order))[:, None], order] = np.arange(60)[None, :]
    want_ranks = [position[r, t].min() for r, t in enumerate(targets)]
    ranks, top = rank_and_topk(s, contexts, targets, 10)
    np.testing.assert_array_equal(ranks, want_ranks)
    np.testing.assert_array_equal(top, order[:, :10])
    _, short = rank_and_topk(s[:, :5], [c[c < 5] for c in contexts],
                             [np.array([0]) for _ in contexts], 10)
    assert short.shape == (40, 5)  # a catalogue smaller than k gives shorter lists


def test_topk_rows_chunks_like_one_pass():
    rng = np.random.default_rng(1)
    s = scores_with_ties(rng)
    contexts = [np.array([r % 60]) for r in range(40)]

    def score(ctx):
        rows = [int(c[0]) for c in ctx]
        return s[rows]

    idx, val = topk_rows(score, contexts, 7, chunk=6)
    order = rank_items(s[[int(c[0]) for c in contexts]], contexts)
    np.testing.assert_array_equal(idx, order[:, :7])
    assert val.dtype == np.float32 and np.all(np.diff(val, axis=1) <= 0)
