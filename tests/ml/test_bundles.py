"""Bundle search: constraints hold, evidence is counted, precision is measured."""

import numpy as np
import pytest

from shop_recs.ml.baselines import CoOccurrence
from shop_recs.ml.bundle_search import BundleSearch, search_bundles
from shop_recs.ml.bundles import (BundleRules, Evidence, bundle_precision, near_duplicates,
                                  variant_keys)
from shop_recs.ml.types import Baskets, ItemAttributes, ItemIndex


def _catalogue():
    ids = ["84029G", "84029E", "22000", "22001", "22002", "22003"]
    names = ["RED WOOLLY HOTTIE HEART", "WHITE WOOLLY HOTTIE HEART", "PAPER CHAIN KIT",
             "PAPER CHAIN KIT VINTAGE", "TEA LIGHT HOLDER", "GIFT BAG BIRTHDAY"]
    attrs = ItemAttributes(np.array(names, dtype=object), np.array([""] * 6, dtype=object),
                           np.array([3.0, 3.0, 2.0, 2.0, 1.0, 50.0]))
    # everything is bought with everything, so only the constraints shape the bundles
    rows = [[0, 1, 2, 3, 4, 5]] * 5 + [[0, 2, 4]] * 3
    items = np.concatenate(rows)
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    baskets = Baskets(indptr, items, np.arange(len(rows)), -np.ones(len(rows)), 6)
    return ItemIndex(ids), attrs, baskets


def test_variant_keys_and_near_duplicate_names():
    assert variant_keys(["84029G", "84029E", "POST"]).tolist() == ["84029", "84029", "POST"]
    dups = near_duplicates(["PAPER CHAIN KIT", "PAPER CHAIN KIT VINTAGE", "TEA LIGHT"], 0.7)
    assert dups[0].tolist() == [1] and dups[2].tolist() == []


def test_bundles_respect_every_constraint():
    index, attrs, baskets = _catalogue()
    scorer = CoOccurrence("count").fit(baskets)
    allowed = np.ones(6, dtype=bool)
    allowed[4] = False  # out of stock
    rules = BundleRules(sizes=(2, 3, 4), allowed=allowed, max_total_price=20.0,
                        name_overlap=0.7, per_anchor=5)
    found = search_bundles(scorer, [0, 2], index, attrs, rules, Evidence(baskets))
    assert found[0] and found[2]
    for bundles in found.values():
        for b in bundles:
            assert len(set(b.items)) == len(b.items)
            assert 4 not in b.items  # not in stock
            assert attrs.prices[b.items].sum() <= 20.0  # price limit (drops the 50.0 bag)
            assert not {0, 1} <= set(b.items)  # colour variants 84029G/84029E
            assert not {2, 3} <= set(b.items)  # near-identical names
            assert 2 <= len(b.items) <= 4


def test_evidence_counts_orders_and_lift():
    index, attrs, baskets = _catalogue()
    ev = Evidence(baskets)
    assert ev.orders_with_all([0, 2, 4]) == 8
    assert ev.orders_with_all([0, 5]) == 5
    assert ev.lift(0, 2) == 1.0  # both in every order
    scorer = CoOccurrence("count").fit(baskets)
    b = search_bundles(scorer, [0], index, attrs, BundleRules(sizes=(2,)), ev)[0][0]
    assert b.n_orders == ev.orders_with_all(b.items)
    assert set(b.pair_lift) == {f"{b.items[0]},{b.items[1]}"}


def test_bundle_precision_by_hand():
    from shop_recs.ml.bundles import Bundle
    bundles = {0: [Bundle(0, [0, 1, 2], 1.0)]}
    orders = [np.array([0, 1, 5]), np.array([0, 1, 2])]
    assert bundle_precision(bundles, orders, [0, 0], size=3) == (0.5 + 1.0) / 2


def _planted(n=300, seed=1):
    from benchmarks.synthetic_shop import ShopParams, synthetic_baskets

    baskets, _ = synthetic_baskets(ShopParams(products=n, lines=25 * n, seed=seed,
                                              chunk_orders=500))
    # names that share words, some identical but for a number (near-duplicates), prices
    from benchmarks.synthetic_shop import ADJECTIVES, NOUNS

    names = np.asarray([f"{ADJECTIVES[i % 17]} {NOUNS[i // 17 % 20]} {i}" if i % 5 else
                        f"BLUE LAMP SHADE {i % 40}" for i in range(n)], dtype=object)
    prices = np.random.default_rng(seed).uniform(1.0, 30.0, n)
    attrs = ItemAttributes(names, np.array([""] * n, dtype=object), prices)
    return baskets, ItemIndex([f"P{i:05d}" for i in range(n)]), attrs


@pytest.mark.parametrize("kind", ["count", "lift", "ease"])
@pytest.mark.parametrize("price_cap", [None, 40.0])
def test_candidate_lists_find_the_bundles_of_the_whole_catalogue(kind, price_cap):
    """Issue 15: above the dense threshold bundles grow only by items on their members'
    candidate lists (40 items each here). On a planted shop that finds every bundle the search
    over the whole catalogue finds; with a price cap (which pushes the search down the lists)
    every bundle publishing keeps (bought together at least twice) is found (the lists may find
    a few more: the whole catalogue fills beams with items never bought with the anchor)."""
    from shop_recs.ml.baselines import EASE

    baskets, index, attrs = _planted()
    scorer = EASE(30.0).fit(baskets) if kind == "ease" else CoOccurrence(kind).fit(baskets)
    allowed = np.random.default_rng(2).random(len(index)) > 0.1
    anchors = np.flatnonzero(allowed & (baskets.item_counts() > 0))

    def run(candidates):
        rules = BundleRules(sizes=(2, 3, 4), allowed=allowed, name_overlap=0.6,
                            max_total_price=price_cap, candidates=candidates)
        search = BundleSearch(index, attrs, rules)
        found = search.search(scorer, anchors, Evidence(baskets))
        return search, {a: [(b.items, b.score) for b in bs
                            if price_cap is None or b.n_orders >= 2]
                        for a, bs in found.items()}

    whole, full = run(None)
    assert whole.exhaustive  # below the threshold: the whole catalogue
    short, restricted = run(40)
    assert short.list_size == 40 and not short.exhaustive
    assert sum(len(v) for v in full.values()) > len(anchors) // 2  # bundles were found
    if price_cap is None:
        assert restricted == full
    else:
        assert all({tuple(b) for b, _ in full[a]} <= {tuple(b) for b, _ in restricted[a]}
                   for a in full)


def test_above_the_dense_threshold_beams_are_scored_at_candidates_only(monkeypatch):
    """No beam is scored over the whole catalogue above the threshold: the scorer scores
    each anchor alone once, then only its candidates."""
    from shop_recs.ml import bundle_search, sparse

    baskets, index, attrs = _planted()
    from shop_recs.ml.baselines import cooccurrence_counts

    # a sparse matrix, as above the threshold (its score_candidates reads no full row)
    scorer = CoOccurrence("lift", cooccurrence_counts(baskets, dense_max_items=0)).fit(baskets)
    anchors = np.flatnonzero(baskets.item_counts() > 0)[:60]
    want = search_bundles(scorer, anchors, index, attrs, BundleRules(sizes=(3,)))
    monkeypatch.setattr(sparse, "DENSE_MAX_ITEMS", 100)
    monkeypatch.setattr(bundle_search, "CANDIDATES", 40)
    widths, full = [], CoOccurrence.score
    real = CoOccurrence.score_candidates

    def score(self, contexts, histories=None):
        assert all(len(c) == 1 for c in contexts), "a beam scored over the whole catalogue"
        return full(self, contexts, histories)

    monkeypatch.setattr(CoOccurrence, "score", score)
    monkeypatch.setattr(CoOccurrence, "score_candidates",
                        lambda self, c, cand: widths.append(cand.shape[1]) or real(self, c, cand))
    search = BundleSearch(index, attrs, BundleRules(sizes=(3,)))
    assert search.list_size == 40
    got = search.search(scorer, anchors)
    assert widths and set(widths) == {80}  # the union of two members' lists of 40
    assert {a: [b.items for b in bs] for a, bs in got.items()} == \
        {a: [b.items for b in bs] for a, bs in want.items()}


def test_orders_with_all_counts_the_orders_holding_every_item():
    """Evidence's intersection (shortest order list first, binary search) against a count
    over the orders themselves, for bundles of popular and rare items alike."""
    from shop_recs.ml.synthetic import synthetic_orders

    baskets = synthetic_orders(300, 20_000, seed=1).baskets
    evidence = Evidence(baskets)
    orders = [set(baskets.basket(i).tolist()) for i in range(len(baskets))]
    rng = np.random.default_rng(0)
    for _ in range(300):
        items = rng.choice(300, int(rng.integers(1, 4)), replace=False).tolist()
        assert evidence.orders_with_all(items) == sum(all(i in o for i in items)
                                                      for o in orders)


def test_name_checks_of_many_pairs_agree_with_one_pair_at_a_time():
    """The beam search compares names for many (candidate, member) pairs at once; each answer
    is the one-pair check's: Jaccard of name words at or above ``name_overlap``, never for a
    name without words."""
    words = ["RED", "BLUE", "LAMP", "SHADE", "MUG", "TEA", "CUP"]
    rng = np.random.default_rng(3)
    names = [" ".join(rng.choice(words, int(rng.integers(0, 5)))) for _ in range(120)]
    names[:3] = ["", "12 34", "RED LAMP"]  # no words, digits only, a plain name
    attrs = ItemAttributes(np.asarray(names, dtype=object), np.array([""] * 120, dtype=object),
                           np.ones(120))
    search = BundleSearch(ItemIndex([f"P{i}" for i in range(120)]), attrs,
                          BundleRules(name_overlap=0.6))
    j, i = rng.integers(0, 120, 3000), rng.integers(0, 120, 3000)
    want = [search.near_duplicate(int(a), [int(b)]) for a, b in zip(j, i)]
    assert search.near_duplicates(j, i).tolist() == want
    assert 0 < sum(want) < len(want)


def test_pair_counts_are_looked_up_in_sorted_csr_rows():
    """Evidence reads co-purchase counts of many pairs at once by binary search in each
    pair's CSR row: the matrix's values, 0 where a row holds no entry (empty rows too)."""
    import scipy.sparse as sp

    from shop_recs.ml.bundles import csr_lookup

    rng = np.random.default_rng(5)
    for trial in range(40):
        n = int(rng.integers(1, 30))
        m = sp.random(n, n, density=rng.random(), format="csr", random_state=trial,
                      dtype=np.float32)
        m.sort_indices()
        i, j = rng.integers(0, n, 200), rng.integers(0, n, 200)
        assert np.array_equal(csr_lookup(m, i, j), m.toarray()[i, j]), trial


class _TableScorer:
    """A set-completion scorer for the search's tests: ``s(j | ctx) = sum of W[c, j]``. Most
    entries are quarters (sums are exact, so many ties), a few are fine (float64 scores keep
    them: a search that rounds them to float32 differs) or -inf."""

    def __init__(self, n: int, rng, dtype, lists: bool = True) -> None:
        w = rng.integers(0, 5, (n, n)) / 4.0
        fine = rng.random((n, n)) < 0.2
        w[fine] += rng.random(int(fine.sum())) * 1e-3 + 1e-9
        w[rng.random((n, n)) < 0.03] = -np.inf
        self.w = w.astype(dtype)
        if not lists:  # no score_candidates: the search reads its beams' full rows
            self.score_candidates = None

    def score(self, contexts, histories=None):
        return np.stack([self.w[np.asarray(c)].sum(axis=0) for c in contexts])

    def score_candidates(self, contexts, cands):
        return np.take_along_axis(self.score(contexts), cands, 1)


def _words_catalogue(n: int, rng, words: int = 8):
    """Names from a small vocabulary (near-duplicates, the same words, no words), colour
    variants among the ids, prices, some items not allowed."""
    vocab = ["RED", "BLUE", "LAMP", "SHADE", "MUG", "TEA", "CUP", "BAG"][:words]
    names = [" ".join(rng.choice(vocab, int(rng.integers(0, 4)))) for _ in range(n)]
    ids = [f"{100 + i // 3}{'ABC'[i % 3]}" if i % 4 == 0 else f"P{i}" for i in range(n)]
    attrs = ItemAttributes(np.asarray(names, dtype=object), np.array([""] * n, dtype=object),
                           rng.integers(1, 20, n).astype(np.float64))
    return ItemIndex(ids), attrs, rng.random(n) > 0.15


def _reference_search(scorer, anchors, index, attrs, rules, lists=None):
    """The beam search one anchor and one beam at a time (what the array search must equal):
    each beam's ``beam_width`` best allowed items (score descending, ties by item), every
    option of an anchor sorted by score (stable), the best order of each item set, cuts."""
    from shop_recs.ml.features import name_words

    keys, words = variant_keys(index.ids), [set(name_words(nm)) for nm in attrs.names]
    prices = np.nan_to_num(np.asarray(attrs.prices, dtype=np.float64))
    n = len(index)

    def allowed(j, items, value):
        if not rules.allowed[j] or not np.isfinite(value):
            return False
        if any(keys[j] == keys[i] or (words[j] and words[j] == words[i]) for i in items):
            return False
        if rules.max_total_price is not None and \
                prices[j] + prices[items].sum() > rules.max_total_price:
            return False
        return not any(words[j] and len(words[j] & words[i]) / len(words[j] | words[i])
                       >= rules.name_overlap for i in items)

    found = {}
    for a in anchors:
        beams, found[a] = [([a], 0.0)], []
        for size in range(2, max(rules.sizes) + 1):
            options = []
            for items, s in beams:
                row = scorer.score([np.asarray(items)])[0]
                if lists is None:
                    cands = range(n)
                else:  # the union of the members' lists; the anchor's own scores at size 2
                    cands = sorted({int(j) for i in items for j in lists[0][i] if j >= 0})
                    row = (dict(zip(lists[0][a], lists[1][a])) if size == 2 else
                           row.astype(np.float32) if scorer.score_candidates else row)
                ok = [j for j in cands if allowed(j, items, row[j])]
                ok.sort(key=lambda j: (-row[j], j))
                options += [(items + [j], s + float(row[j])) for j in ok[:rules.beam_width]]
            options.sort(key=lambda o: -o[1])
            best = {}
            for items, s in options:
                best.setdefault(frozenset(items), (items, s))
            beams = list(best.values())[:rules.beam_width]
            if size in rules.sizes:
                found[a] += [(items, s) for items, s in beams[:rules.per_anchor]]
    return found


@pytest.mark.parametrize("sizes", [(2,), (3,), (2, 3, 4)])
@pytest.mark.parametrize("price_cap", [None, 25.0])
@pytest.mark.parametrize("exhaustive", [True, False])
def test_array_beams_give_the_bundles_of_a_search_beam_by_beam(sizes, price_cap, exhaustive):
    """Issue 15: the beams are arrays for the whole search; the bundles (items in order), the
    float64 scores (the same additions) and their order equal a search one anchor and one
    beam at a time, on catalogues with tied scores and near-duplicate names, whole catalogue
    and candidate lists, float32 and float64 scorers, with and without score_candidates."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        n = 48
        # seed 2: three words, most names near-duplicates (the walk past a beam's 4 x width)
        index, attrs, allowed = _words_catalogue(n, rng, (8, 8, 3, 8)[seed])
        scorer = _TableScorer(n, rng, np.float32 if seed % 2 else np.float64, lists=seed < 2)
        rules = BundleRules(sizes=sizes, allowed=allowed, max_total_price=price_cap,
                            name_overlap=(0.5, 0.5, 0.3, 0.5)[seed], beam_width=(2, 3, 8, 4)[seed],
                            per_anchor=(3, 2, 5, 9)[seed], candidates=None if exhaustive else 9)
        anchors = rng.permutation(n)[:30].tolist()
        search = BundleSearch(index, attrs, rules)
        assert search.exhaustive == exhaustive
        got = search.search(scorer, anchors)
        lists = None
        if not exhaustive:
            search._ensure(scorer, np.arange(n))  # every list, as the search learned them
            lists = search.lists, search.list_scores
        want = _reference_search(scorer, anchors, index, attrs, rules, lists)
        assert list(got) == anchors
        assert {a: [(b.items, b.score) for b in bs] for a, bs in got.items()} == want, seed
        assert all(b.anchor == a and type(b.score) is float and
                   all(type(i) is int for i in b.items) for a, bs in got.items() for b in bs)
        assert sum(map(len, want.values())) > len(anchors)


@pytest.mark.parametrize("packed", [True, False])
def test_first_rows_of_each_key_packed_or_lexsorted(packed, monkeypatch):
    """The beams' de-duplication keeps the first row of each (anchor, item set) key; the key's
    columns are packed into one int64 where they fit, else lexsorted: both give the rows a
    dict of the keys seen, row by row, gives."""
    from shop_recs.ml import bundle_search

    if not packed:
        monkeypatch.setattr(bundle_search, "PACKED_MAX", 1)
    rng = np.random.default_rng(7)
    for trial in range(30):
        cols, top = int(rng.integers(1, 5)), int(rng.choice([2, 5, 1000, 2 ** 40]))
        key = rng.integers(0, top, (int(rng.integers(0, 300)), cols))
        seen: dict = {}
        want = [seen.setdefault(tuple(row), i) == i for i, row in enumerate(key.tolist())]
        assert bundle_search._firsts(key).tolist() == want, trial
