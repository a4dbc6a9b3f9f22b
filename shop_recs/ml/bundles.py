"""Bundle search: 2-4 item bundles around each anchor product, with their evidence.

A bundle is grown by beam search over a scorer's *set-completion* scores: the bundle
``(a, b1, b2)`` scores ``s(b1 | {a}) + s(b2 | {a, b1})``, so each item is judged against the
whole partial bundle, not as a list of pairs. Constraints hold at every step: distinct items,
only allowed (active, in-stock) products, no near-duplicates of an item already in the bundle
(colour variants such as stock codes ``84029G``/``84029E``, or names that share almost all
words), optional per-item and total price limits.

Usage::

    rules = BundleRules(allowed=in_stock_mask, max_total_price=50.0)
    ev = Evidence(train_baskets)
    bundles = search_bundles(scorer, anchors, index, attrs, rules, ev)  # {anchor: [Bundle]}
    bundle_precision(bundles, test_baskets, anchors_per_basket)

Each :class:`Bundle` carries its evidence: the scorer's score, the number of training orders
that contain the whole bundle, and the pairwise lifts of its items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from shop_recs.ml.baselines import cooccurrence_counts
from shop_recs.ml.evaluate import Scorer
from shop_recs.ml.features import name_words
from shop_recs.ml.topk import topk_of_scores
from shop_recs.ml.types import Baskets, ItemAttributes, ItemIndex

__all__ = ["BundleRules", "Bundle", "Evidence", "search_bundles", "bundle_precision",
           "variant_keys", "near_duplicates"]

_VARIANT = re.compile(r"^(\d+)[A-Za-z]*$")


def variant_keys(ids: Sequence[str]) -> np.ndarray:
    """Group key per product: the digits of codes like ``84029G`` (colour/size variants)."""
    keys = []
    for pid in ids:
        m = _VARIANT.match(str(pid))
        keys.append(m.group(1) if m else str(pid))
    return np.asarray(keys, dtype=object)


@dataclass
class BundleRules:
    sizes: tuple[int, ...] = (2, 3, 4)  # bundle sizes, anchor included
    allowed: np.ndarray | None = None  # bool [n_items]: active and in stock
    min_item_price: float | None = None
    max_item_price: float | None = None
    max_total_price: float | None = None
    name_overlap: float = 0.8  # Jaccard of name words at or above this = near-duplicate
    beam_width: int = 8
    per_anchor: int = 3  # bundles kept per anchor and size


@dataclass
class Bundle:
    anchor: int
    items: list[int]  # anchor first, then the added items in the order chosen
    score: float  # sum of the scorer's set-completion scores of the added items
    n_orders: int = 0  # training orders containing every item of the bundle
    pair_lift: dict = field(default_factory=dict)  # {"i,j": lift} over all item pairs

    def ids(self, index: ItemIndex) -> list[str]:
        return [str(index.ids[i]) for i in self.items]


class Evidence:
    """Co-purchase counts of the training orders, for bundle evidence (support and lift)."""

    def __init__(self, baskets: Baskets, counts: np.ndarray | None = None) -> None:
        self.n_orders = len(baskets)
        self.counts = counts if counts is not None else cooccurrence_counts(baskets)
        # .diagonal(): a dense array or, above the dense threshold, a SciPy CSR matrix
        self.support = np.asarray(self.counts.diagonal(), dtype=np.float64)
        # inverted index: for each item, the sorted ids of the orders that contain it
        order = np.argsort(baskets.items, kind="stable")
        starts = np.searchsorted(baskets.items[order], np.arange(baskets.n_items + 1))
        self._orders_of = np.split(baskets.basket_ids()[order], starts[1:-1])

    def orders_with_all(self, items: Sequence[int]) -> int:
        common = self._orders_of[items[0]]
        for it in items[1:]:
            common = np.intersect1d(common, self._orders_of[it], assume_unique=True)
        return int(len(common))

    def lift(self, i: int, j: int) -> float:
        denom = self.support[i] * self.support[j]
        return float(self.counts[i, j] * self.n_orders / denom) if denom else 0.0

    def fill(self, bundle: Bundle) -> Bundle:
        bundle.n_orders = self.orders_with_all(bundle.items)
        bundle.pair_lift = {f"{i},{j}": round(self.lift(i, j), 3)
                            for k, i in enumerate(bundle.items) for j in bundle.items[k + 1:]}
        return bundle


def _static_mask(attrs: ItemAttributes, rules: BundleRules, n: int) -> np.ndarray:
    ok = np.ones(n, dtype=bool) if rules.allowed is None else np.asarray(rules.allowed, bool).copy()
    price = np.asarray(attrs.prices, dtype=np.float64)
    if rules.min_item_price is not None:
        ok &= ~(price < rules.min_item_price)
    if rules.max_item_price is not None:
        ok &= ~(price > rules.max_item_price)
    return ok


def near_duplicates(names: Sequence[str], threshold: float) -> list[np.ndarray]:
    """For each item, the items whose name words have Jaccard >= ``threshold`` with its own."""
    words = [set(name_words(nm)) for nm in names]
    vocab: dict[str, int] = {}
    postings: list[list[int]] = []
    for i, ws in enumerate(words):
        for w in ws:
            if w not in vocab:
                vocab[w] = len(postings)
                postings.append([])
            postings[vocab[w]].append(i)
    post = [np.asarray(p, dtype=np.int64) for p in postings]
    sizes = np.asarray([len(ws) for ws in words], dtype=np.float64)
    out = []
    for i, ws in enumerate(words):
        if not ws:
            out.append(np.zeros(0, dtype=np.int64))
            continue
        # counts over the postings only: a catalogue-long bincount per item would be O(n^2)
        cand, shared = np.unique(np.concatenate([post[vocab[w]] for w in ws]),
                                 return_counts=True)
        jac = shared / (sizes[i] + sizes[cand] - shared)
        out.append(cand[(jac >= threshold) & (cand != i)])
    return out


def _blocked(items: list[int], keys: np.ndarray, dups: list[np.ndarray], n: int) -> np.ndarray:
    """Items that would duplicate or nearly duplicate a member of ``items``."""
    block = np.isin(keys, keys[items])
    block[items] = True
    for it in items:
        block[dups[it]] = True
    return block


def search_bundles(scorer: Scorer, anchors: Sequence[int], index: ItemIndex,
                   attrs: ItemAttributes, rules: BundleRules | None = None,
                   evidence: Evidence | None = None,
                   dups: list[np.ndarray] | None = None) -> dict[int, list[Bundle]]:
    """Beam search per anchor; returns ``{anchor: bundles}`` (best first within each size).

    ``dups``: ``near_duplicates(attrs.names, rules.name_overlap)``, when the caller searches
    the catalogue in chunks of anchors and computes it once.
    """
    rules = rules or BundleRules()
    n = len(index)
    static_ok = _static_mask(attrs, rules, n)
    keys = np.unique(variant_keys(index.ids), return_inverse=True)[1]  # int group per item
    dups = near_duplicates(attrs.names, rules.name_overlap) if dups is None else dups
    prices = np.nan_to_num(np.asarray(attrs.prices, dtype=np.float64), nan=0.0)
    beams = {a: [([int(a)], 0.0)] for a in anchors}
    found: dict[int, list[Bundle]] = {int(a): [] for a in anchors}
    for size in range(2, max(rules.sizes) + 1):
        flat = [(a, items, s) for a, bs in beams.items() for items, s in bs]
        if not flat:
            break
        scores = scorer.score([np.asarray(items) for _, items, _ in flat])  # [n_beams, n]
        new_beams: dict[int, list] = {}
        for row, (a, items, s) in enumerate(flat):
            ok = static_ok & ~_blocked(items, keys, dups, n)
            if rules.max_total_price is not None:
                ok &= prices + prices[items].sum() <= rules.max_total_price
            cand = np.flatnonzero(ok & np.isfinite(scores[row]))
            if len(cand) == 0:
                continue
            # = a stable argsort's first beam_width, in O(len(cand)) (issue 15)
            top = cand[topk_of_scores(scores[row, cand][None, :], rules.beam_width)[0]]
            new_beams.setdefault(a, []).extend(
                (items + [int(j)], s + float(scores[row, j])) for j in top)
        beams = {}
        for a, cands in new_beams.items():
            unique: dict[frozenset, tuple] = {}
            for items, s in sorted(cands, key=lambda c: -c[1]):
                unique.setdefault(frozenset(items), (items, s))  # same set, other order: keep best
            beams[a] = list(unique.values())[:rules.beam_width]
            if size in rules.sizes:
                for items, s in beams[a][:rules.per_anchor]:
                    b = Bundle(int(a), items, s)
                    found[int(a)].append(evidence.fill(b) if evidence is not None else b)
    return found


def bundle_precision(bundles: dict[int, list[Bundle]], baskets: Sequence[np.ndarray],
                     anchors: Sequence[int], size: int = 3) -> float:
    """Mean share of the best ``size``-bundle's added items that the order also bought.

    ``anchors[i]`` is the anchor drawn for order ``baskets[i]`` (see ``anchor_queries``).
    """
    vals = []
    for items, a in zip(baskets, anchors):
        best = next((b for b in bundles.get(int(a), []) if len(b.items) == size), None)
        if best is None:
            vals.append(0.0)
            continue
        added = best.items[1:]
        vals.append(float(np.isin(added, items).mean()))
    return float(np.mean(vals)) if vals else 0.0
