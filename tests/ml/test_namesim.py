"""The most similar known products by name (shop_recs.ml.namesim): the bounded search over
rare words lists exactly what a full sort of every cosine lists."""

import numpy as np
import pytest

from shop_recs.ml import namesim
from shop_recs.ml.topk import topk_of_scores
from shop_recs.ml.types import ItemAttributes


def full_sort(attrs, items, known, k):
    """Every cosine, dense, stably sorted (ties by item, the item itself never first)."""
    cand = np.flatnonzero(known)
    vec = namesim.tfidf(attrs)
    dense = np.asarray((vec[items] @ vec[cand].T).todense(), dtype=np.float64)
    dense[cand[None, :] == items[:, None]] = -np.inf
    top = topk_of_scores(dense, min(k, len(cand)))
    return cand[top], np.maximum(np.take_along_axis(dense, top, 1), 0.0).astype(np.float32)


@pytest.fixture
def paths(monkeypatch):
    """How many queries each path scored: "bounded" (rare words' candidates) or "full"."""
    seen = {"bounded": 0, "full": 0}
    best = namesim._best

    def counting(sim, part, candidates, k, columns=None):
        seen["full" if columns is None else "bounded"] += len(part)
        return best(sim, part, candidates, k, columns)

    monkeypatch.setattr(namesim, "_best", counting)
    return seen


def _shop(n, rng):
    """Every name holds a common colour and "SET"; products 3i..3i+2 share a rare word."""
    colours = ["RED", "BLUE", "GREEN"]
    rare = ["".join(chr(65 + int(d)) for d in str(i // 3).zfill(4)) for i in range(n)]
    names = [f"{colours[i % 3]} SET {rare[i]}" for i in range(n)]
    cats = rng.choice(["kitchen", "garden"], n)
    return ItemAttributes(np.asarray(names, dtype=object), np.asarray(cats, dtype=object),
                          np.ones(n))


def test_a_rare_word_finds_the_neighbours_without_the_common_words(monkeypatch, paths):
    monkeypatch.setattr(namesim, "RARE_POSTINGS", 4)
    monkeypatch.setattr(namesim, "GROUP_POSTINGS", 12)
    rng = np.random.default_rng(0)
    attrs = _shop(600, rng)
    known = np.ones(600, dtype=bool)
    known[2::3] = False  # the third of each rare-word trio is new
    items = np.flatnonzero(~known)
    nbrs, sims = namesim.similar_known(attrs, items, known, 2)
    want = full_sort(attrs, items, known, 2)
    assert np.array_equal(nbrs, want[0]) and np.array_equal(sims, want[1])
    assert set(nbrs[:, 0] // 3) == set(range(200)) and (nbrs // 3 == items[:, None] // 3).all()
    # the two known products of its trio beat anything the common words could give
    assert paths == {"bounded": 200, "full": 0}


def test_a_bound_the_rare_words_do_not_beat_is_scored_against_every_product(monkeypatch,
                                                                                paths):
    monkeypatch.setattr(namesim, "RARE_POSTINGS", 1)
    names = ["TEA POT", "TEA CUP", "TEA POT WITH LID BRASS KNOB SPOUT HANDLE GLAZE", "TEA POT"]
    attrs = ItemAttributes(np.asarray(names, dtype=object), np.asarray([""] * 4, dtype=object),
                           np.ones(4))
    known = np.array([True, True, True, False])
    # the query's rarest word (its category, named by its last word) reaches product 0
    # alone: fewer candidates than the 3 asked for, so it is scored against every product
    nbrs, sims = namesim.similar_known(attrs, np.array([3]), known, 3)
    want = full_sort(attrs, np.array([3]), known, 3)
    assert np.array_equal(nbrs, want[0]) and np.array_equal(sims, want[1])
    assert nbrs[0].tolist() == [0, 2, 1]
    assert paths["full"] == 1


def test_random_names_list_what_a_full_sort_lists(monkeypatch, paths):
    rng = np.random.default_rng(4)
    words = ["MUG", "TEA", "RED", "LAMP", "SET", "BOX", "ZORB", "OF", "BLUE", "HEART"]
    for trial in range(120):
        monkeypatch.setattr(namesim, "RARE_POSTINGS", int(rng.choice([1, 3, 10, 4096])))
        monkeypatch.setattr(namesim, "GROUP_POSTINGS", int(rng.choice([1, 5, 50, 16384])))
        monkeypatch.setattr(namesim, "CHUNK", int(rng.choice([1, 7, 256])))
        n = int(rng.integers(3, 120))
        names = [" ".join(rng.choice(words, int(rng.integers(0, 5)))) for _ in range(n)]
        attrs = ItemAttributes(np.asarray(names, dtype=object),
                               rng.choice(["", "kitchen", "garden", "x"], n).astype(object),
                               np.ones(n))
        known = rng.random(n) < rng.uniform(0.2, 0.9)
        known[0] = True
        items = rng.choice(n, int(rng.integers(1, n)), replace=False)
        k = int(rng.integers(1, 7))
        nbrs, sims = namesim.similar_known(attrs, items, known, k)
        want = full_sort(attrs, items, known, k)
        assert np.array_equal(nbrs, want[0]), trial
        assert np.array_equal(sims, want[1]), trial
    assert paths["bounded"] > 0 and paths["full"] > 0  # both paths were checked


def test_no_known_product_and_no_items():
    attrs = ItemAttributes(np.asarray(["A MUG", "A CUP"], dtype=object),
                           np.asarray(["", ""], dtype=object), np.ones(2))
    nbrs, sims = namesim.similar_known(attrs, np.array([0]), np.zeros(2, dtype=bool), 3)
    assert nbrs.shape == (1, 0) and sims.shape == (1, 0)
    nbrs, sims = namesim.similar_known(attrs, np.zeros(0, np.int64), np.ones(2, dtype=bool), 3)
    assert nbrs.shape == (0, 2) and sims.dtype == np.float32  # k: at most the known
