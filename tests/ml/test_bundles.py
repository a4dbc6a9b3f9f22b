"""Bundle search: constraints hold, evidence is counted, precision is measured."""

import numpy as np

from shop_recs.ml.baselines import CoOccurrence
from shop_recs.ml.bundles import (BundleRules, Evidence, bundle_precision, near_duplicates,
                                  search_bundles, variant_keys)
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
