"""Bundles and their evidence: the rules a bundle obeys, co-purchase evidence, precision.

A bundle is 2-4 items around an anchor product, grown by the beam search of
:mod:`shop_recs.ml.bundle_search` over a scorer's *set-completion* scores. This module holds
what that search and its callers share:

* :class:`BundleRules`: distinct items, only allowed (active, in-stock) products, no
  near-duplicates of an item already in the bundle (colour variants such as stock codes
  ``84029G``/``84029E``, grouped by :func:`variant_keys`, or names that share almost all
  words, :func:`near_duplicates`), optional per-item and total price limits;
* :class:`Bundle`, and :class:`Evidence`, which fills in each bundle's evidence: the number of
  training orders that contain the whole bundle and the pairwise lifts of its items;
* :func:`bundle_precision`, the offline measure of the bundles against held-out orders.

Usage::

    rules = BundleRules(allowed=in_stock_mask, max_total_price=50.0)
    ev = Evidence(train_baskets)
    bundles = search_bundles(scorer, anchors, index, attrs, rules, ev)  # bundle_search
    bundle_precision(bundles, test_baskets, anchors_per_basket)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from shop_recs.ml.baselines import cooccurrence_counts
from shop_recs.ml.features import name_words
from shop_recs.ml.types import Baskets, ItemIndex

__all__ = ["BundleRules", "Bundle", "Evidence", "bundle_precision", "variant_keys",
           "near_duplicates", "csr_lookup"]

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
    # items each anchor's search considers (its best by the first step); None: the whole
    # catalogue up to sparse.DENSE_MAX_ITEMS products, bundle_search.CANDIDATES above
    candidates: int | None = None


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
        if sp.issparse(self.counts):  # csr_lookup binary-searches sorted rows
            self.counts = self.counts.tocsr()
            self.counts.sort_indices()
        # .diagonal(): a dense array or, above the dense threshold, a SciPy CSR matrix
        self.support = np.asarray(self.counts.diagonal(), dtype=np.float64)
        # inverted index: for each item, the sorted ids of the orders that contain it
        order = np.argsort(baskets.items, kind="stable")
        starts = np.searchsorted(baskets.items[order], np.arange(baskets.n_items + 1))
        self._orders_of = np.split(baskets.basket_ids()[order], starts[1:-1])

    def orders_with_all(self, items: Sequence[int]) -> int:
        # from the shortest order list, each step a binary search into the next (a best
        # seller's list holds 10^5 orders: merging it whole per bundle dominated the search)
        lists = sorted((self._orders_of[it] for it in items), key=len)
        common = lists[0]
        for other in lists[1:]:
            if not len(common) or not len(other):
                return 0
            spot = np.minimum(np.searchsorted(other, common), len(other) - 1)
            common = common[other[spot] == common]
        return int(len(common))

    def lift(self, i: int, j: int) -> float:
        denom = self.support[i] * self.support[j]
        return float(self.counts[i, j] * self.n_orders / denom) if denom else 0.0

    def together(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Orders holding both ``i[k]`` and ``j[k]``, float32 [len(i)], in one gather (an
        element lookup at a time in a CSR matrix costs microseconds: 10^7 FBT rows)."""
        i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
        if len(i) == 0:
            return np.zeros(0, dtype=np.float32)
        if not sp.issparse(self.counts):
            return np.asarray(self.counts[i, j], dtype=np.float32).ravel()
        return csr_lookup(self.counts, i, j)

    def lifts(self, i: np.ndarray, j: np.ndarray, together: np.ndarray) -> np.ndarray:
        """:meth:`lift` of each pair, from their ``together`` counts (float64 [len(i)])."""
        denom = self.support[i] * self.support[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = together * self.n_orders / denom
        return np.where(denom > 0, out, 0.0)

    def fill(self, bundle: Bundle) -> Bundle:
        return self.fill_all([bundle])[0]

    def fill_all(self, bundles: Sequence[Bundle]) -> list[Bundle]:
        """Each bundle with its evidence: the pairs of every bundle are gathered at once
        (one CSR lookup per bundle cost ~0.1 ms: 30 s for a 100k-product shop's bundles)."""
        pairs = [[(i, j) for k, i in enumerate(b.items) for j in b.items[k + 1:]]
                 for b in bundles]
        flat = np.asarray([p for ps in pairs for p in ps], dtype=np.int64).reshape(-1, 2)
        lifts = self.lifts(flat[:, 0], flat[:, 1], self.together(flat[:, 0], flat[:, 1]))
        at = 0
        for bundle, ps in zip(bundles, pairs):
            bundle.n_orders = self.orders_with_all(bundle.items)
            bundle.pair_lift = {f"{i},{j}": round(float(v), 3)
                                for (i, j), v in zip(ps, lifts[at:at + len(ps)])}
            at += len(ps)
        return list(bundles)


def csr_lookup(m: sp.csr_matrix, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``m[i[k], j[k]]`` of a CSR matrix with sorted indices (float32 [len(i)]): a binary
    search in each pair's row, all pairs in step (SciPy's element indexing costs ~5 us a
    pair: a minute for the 10^7 FBT rows of 10^6 products)."""
    lo, hi = m.indptr[i].astype(np.int64), m.indptr[i + 1].astype(np.int64)
    end = hi.copy()
    while True:  # the first position in the row whose column is >= j
        open_ = lo < hi
        if not open_.any():
            break
        mid = (lo + hi) // 2
        right = open_ & (m.indices[np.minimum(mid, len(m.indices) - 1)] < j)
        lo = np.where(right, mid + 1, lo)
        hi = np.where(open_ & ~right, mid, hi)
    found = (lo < end) & (m.indices[np.minimum(lo, max(len(m.indices) - 1, 0))] == j) \
        if len(m.indices) else np.zeros(len(i), dtype=bool)
    return np.where(found, m.data[np.minimum(lo, max(len(m.data) - 1, 0))] if len(m.data)
                    else 0.0, 0.0).astype(np.float32)


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
