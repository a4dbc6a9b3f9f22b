"""Bundle search: beam search for 2-4 item bundles around each anchor product.

A bundle is grown by beam search over a scorer's *set-completion* scores: the bundle
``(a, b1, b2)`` scores ``s(b1 | {a}) + s(b2 | {a, b1})``, so each item is judged against the
whole partial bundle, not as a list of pairs. The constraints of :class:`BundleRules`
(:mod:`shop_recs.ml.bundles`) hold at every step, and each :class:`Bundle` found gets its
evidence from an :class:`Evidence` when one is given.

Why candidate lists (issue 15): a step that scores every beam over the whole catalogue costs
one catalogue-long row per beam, so its time and memory grow as anchors x beams x products,
which a catalogue of up to 1,000,000 products cannot afford (issue 15's budget).
:class:`BundleSearch` therefore prepares the catalogue's part once for every chunk of
anchors, and above ``sparse.DENSE_MAX_ITEMS`` products grows bundles only by items on their
members' candidate lists (``BundleRules.candidates``, default :data:`CANDIDATES`), never
scoring a beam over the whole catalogue when the scorer has ``score_candidates``: each anchor
is scored alone once (publishing already has that row for its FBT list). Below the threshold
the search stays exhaustive.

Usage::

    search = BundleSearch(index, attrs, rules)       # once per catalogue and rules
    found = search.search(scorer, anchors, evidence)  # {anchor: [Bundle]}, per chunk
    found = search_bundles(scorer, anchors, index, attrs, rules, evidence)  # one call
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from shop_recs.ml import sparse
from shop_recs.ml.bundles import Bundle, BundleRules, Evidence, variant_keys
from shop_recs.ml.evaluate import Scorer
from shop_recs.ml.features import name_words
from shop_recs.ml.topk import topk_of_scores
from shop_recs.ml.types import ItemAttributes, ItemIndex

__all__ = ["BundleSearch", "search_bundles", "CANDIDATES"]

CANDIDATES = 100  # items on each candidate list above the dense threshold (issue 15)
LIST_SPARE = 16  # extra listed items asked of a scorer: variants and near-duplicates drop out
PACKED_MAX = 2 ** 63  # sort keys whose columns pack into one int64 below this as one


def _static_mask(attrs: ItemAttributes, rules: BundleRules, n: int) -> np.ndarray:
    ok = np.ones(n, dtype=bool) if rules.allowed is None else np.asarray(rules.allowed, bool).copy()
    price = np.asarray(attrs.prices, dtype=np.float64)
    if rules.min_item_price is not None:
        ok &= ~(price < rules.min_item_price)
    if rules.max_item_price is not None:
        ok &= ~(price > rules.max_item_price)
    return ok


def _sorted_walk(scores: np.ndarray, cand: np.ndarray, want: int, skip) -> list[int]:
    """The first ``want`` of ``cand`` (positions) in stable descending score order (ties by
    position) that ``skip`` does not reject; the order is computed a few at a time."""
    out: list[int] = []
    done, k = 0, min(len(cand), max(2 * want, 8))
    while True:
        top = cand[topk_of_scores(scores[cand][None, :], k)[0]]
        for j in top[done:]:  # a longer stable top-k starts with the shorter one
            if not skip(int(j)):
                out.append(int(j))
                if len(out) == want:
                    return out
        if k >= len(cand):
            return out
        done, k = k, min(len(cand), 4 * k)


class BundleSearch:
    """Beam search around anchors; what it needs of the catalogue is computed once.

    Above ``sparse.DENSE_MAX_ITEMS`` products (the one rule, ``sparse.use_dense``) the search
    runs on candidate lists (issue 15): each item's list is its ``rules.candidates`` best items
    when it is scored alone (the constraints applied), and a bundle grows only by items on the
    lists of its members, scored with the scorer's ``score_candidates(contexts, candidates)``
    when it has one. A step then costs the lists' length, not the catalogue's; for an
    item-item scorer whose rows hold at most that many items the lists hold every item with
    a score above the tie-break. Below the threshold the search is exhaustive (every item is a
    candidate). Near-duplicate names are checked lazily, for the items a beam would take (a
    table of item pairs that share words is O(n^2) when names share common words).

        search = BundleSearch(index, attrs, rules)
        search.learn(items, scorer.score([[i] for i in items]))  # lists, from rows you have
        search.search(scorer, anchors, evidence)                 # scores what it lacks
    """

    def __init__(self, index: ItemIndex, attrs: ItemAttributes,
                 rules: BundleRules | None = None) -> None:
        self.rules = rules = rules or BundleRules()
        self.n = n = len(index)
        self.static_ok = _static_mask(attrs, rules, n)
        self.keys = np.unique(variant_keys(index.ids), return_inverse=True)[1]  # int per item
        self.words = [frozenset(name_words(nm)) for nm in attrs.names]
        # items whose names have the same words are near-duplicates of each other whatever
        # the threshold: left out at once, in arrays
        groups: dict[frozenset, int] = {}
        self.same_words = np.asarray([groups.setdefault(w, len(groups)) if w else -1 - i
                                      for i, w in enumerate(self.words)], dtype=np.int64)
        # name words as an item x word 0/1 matrix: near-duplicate checks for many pairs at once
        vocab: dict[str, int] = {}
        cols = [vocab.setdefault(word, len(vocab)) for w in self.words for word in sorted(w)]
        sizes = np.fromiter((len(w) for w in self.words), dtype=np.int64, count=n)
        self.word_matrix = sp.csr_matrix(
            (np.ones(len(cols), dtype=np.float32), np.asarray(cols, dtype=np.int64),
             np.concatenate([[0], np.cumsum(sizes)])), shape=(n, max(len(vocab), 1)))
        self.word_counts = sizes
        self.prices = np.nan_to_num(np.asarray(attrs.prices, dtype=np.float64), nan=0.0)
        size = rules.candidates
        if size is None:
            size = n if sparse.use_dense(n) else CANDIDATES
        self.list_size = min(int(size), n)
        self.exhaustive = self.list_size >= n
        # each item's list (-1 pads, -2: not learned yet) and its scores, int32/float32 [n, L]
        self.lists = self.list_scores = None
        if not self.exhaustive:
            self.lists = np.full((n, self.list_size), -2, dtype=np.int32)
            self.list_scores = np.full((n, self.list_size), -np.inf, dtype=np.float32)

    def near_duplicate(self, j: int, items: Sequence[int]) -> bool:
        """Whether item ``j``'s name words have Jaccard >= ``name_overlap`` with a member's."""
        wj = self.words[j]
        if not wj:
            return False
        for it in items:
            shared = len(wj & self.words[it])
            if shared and shared / (len(wj) + len(self.words[it]) - shared) >= \
                    self.rules.name_overlap:
                return True
        return False

    def near_duplicates(self, j: np.ndarray, i: np.ndarray) -> np.ndarray:
        """:meth:`near_duplicate` of item pairs ``(j[p], i[p])`` at once (bool [len(j)])."""
        j, i = np.asarray(j, dtype=np.int64), np.asarray(i, dtype=np.int64)
        if len(j) == 0:
            return np.zeros(0, dtype=bool)
        shared = np.asarray(self.word_matrix[j].multiply(self.word_matrix[i]).sum(axis=1),
                            dtype=np.float64).ravel()
        union = self.word_counts[j] + self.word_counts[i] - shared
        with np.errstate(divide="ignore", invalid="ignore"):
            return (shared > 0) & (shared / union >= self.rules.name_overlap)

    def learn(self, items: Sequence[int], rows: np.ndarray) -> None:
        """Store the lists of ``items`` from their rows scored alone ([len(items), n])."""
        if self.exhaustive:
            return
        items = np.asarray(items, dtype=np.int64)
        rows = np.asarray(rows)
        ok = self.static_ok[None, :] & np.isfinite(rows)
        ok &= self.keys[None, :] != self.keys[items][:, None]  # the item and its variants
        ok &= self.same_words[None, :] != self.same_words[items][:, None]
        s = np.where(ok, rows, -np.inf).astype(np.float64)
        best = topk_of_scores(s, self.list_size)
        best = np.where(np.isfinite(np.take_along_axis(s, best, 1)), best, self.n)
        best.sort(axis=1)  # item order, so that ties break by item index as in a full row
        found = best < self.n
        self.lists[items] = np.where(found, best, -1)
        self.list_scores[items] = np.where(
            found, np.take_along_axis(rows, np.minimum(best, self.n - 1), 1), -np.inf)

    def learn_lists(self, items: Sequence[int], idx: np.ndarray, vals: np.ndarray) -> None:
        """Store the lists of ``items`` from their top lists (``scorer.topk`` of each alone,
        best first; -1 / -inf pads): what :meth:`learn` keeps of a full row, found among
        the listed items, for scorers that list from candidates (issue 15)."""
        if self.exhaustive:
            return
        items = np.asarray(items, dtype=np.int64)
        idx = np.asarray(idx, dtype=np.int64)
        safe = np.maximum(idx, 0)
        ok = (idx >= 0) & np.isfinite(vals) & self.static_ok[safe]
        ok &= self.keys[safe] != self.keys[items][:, None]  # the item and its variants
        ok &= self.same_words[safe] != self.same_words[items][:, None]
        keep = ok & (np.cumsum(ok, axis=1) <= self.list_size)  # the best list_size, in order
        best = np.full((len(items), self.list_size), self.n, dtype=np.int64)
        score = np.full((len(items), self.list_size), -np.inf, dtype=np.float32)
        row, col = np.nonzero(keep)
        slot = np.cumsum(keep, axis=1)[row, col] - 1
        best[row, slot], score[row, slot] = idx[row, col], vals[row, col]
        order = np.argsort(best, axis=1, kind="stable")  # item order, as learn() stores them
        best, score = np.take_along_axis(best, order, 1), np.take_along_axis(score, order, 1)
        found = best < self.n
        self.lists[items] = np.where(found, best, -1)
        self.list_scores[items] = np.where(found, score, -np.inf)

    def _ensure(self, scorer, items: np.ndarray, chunk: int = 256) -> None:
        """Learn the lists of those ``items`` that have none yet (scoring each alone)."""
        items = np.unique(np.asarray(items, dtype=np.int64))
        todo = items[self.lists[items, 0] == -2]
        by_lists = bool(getattr(scorer, "lists_from_topk", False))
        for s in range(0, len(todo), chunk):
            part = todo[s:s + chunk]
            contexts = [np.asarray([i]) for i in part]
            if by_lists:  # no n-wide row: the scorer's own candidate lists
                idx, vals = scorer.topk(contexts, self.list_size + LIST_SPARE,
                                        allowed=self.static_ok)
                self.learn_lists(part, idx, vals)
            else:
                self.learn(part, scorer.score(contexts))

    def _candidates(self, members: np.ndarray) -> np.ndarray:
        """Each beam's candidates: the union of its members' lists, item order, -1 pads."""
        both = np.sort(self.lists[members].astype(np.int64).reshape(len(members), -1), axis=1)
        both[:, 1:][both[:, 1:] == both[:, :-1]] = -1  # repeats
        both[both < 0] = self.n  # pads last, then back to -1
        both = np.sort(both, axis=1)
        return np.where(both < self.n, both, -1)

    def _step_scores(self, scorer, contexts: list, cands: np.ndarray) -> np.ndarray:
        """Scores of each context's candidates, float32 [len(contexts), width]."""
        fn = getattr(scorer, "score_candidates", None)
        safe = np.maximum(cands, 0)
        if fn is not None:
            out = np.asarray(fn(contexts, safe), dtype=np.float32)
        else:
            out = np.take_along_axis(scorer.score(contexts), safe, 1)
        return np.where(cands >= 0, out, -np.inf)

    def search(self, scorer: Scorer, anchors: Sequence[int], evidence: Evidence | None = None,
               first: np.ndarray | None = None) -> dict[int, list[Bundle]]:
        """``{anchor: bundles}`` (best first within each size). ``first``: the scorer's rows
        for the anchors alone (``scorer.score([[a] for a in anchors])``) when the caller has
        them already (publishing scores them for the FBT lists).

        The beams of all anchors are arrays for the whole search (issue 15: per-beam Python
        was ~40% of the search): ``group`` (the anchor's position) int64 [B], ``items`` int64
        [B, size - 1] (the anchor first) and ``score`` float64 [B], grouped by anchor in
        anchor order, best first; :class:`Bundle` objects are made for what is returned only.
        """
        rules = self.rules
        anchors = np.asarray(anchors, dtype=np.int64)
        if self.exhaustive and first is None:
            first = scorer.score([np.asarray([a]) for a in anchors])
        elif not self.exhaustive:
            if first is not None:
                self.learn(anchors, first)
            self._ensure(scorer, anchors)
        first_row = dict(zip(anchors.tolist(), range(len(anchors))))  # an anchor's row
        uniq = np.fromiter(first_row, dtype=np.int64, count=len(first_row))
        group, items = np.arange(len(uniq)), uniq[:, None]
        score = np.zeros(len(uniq))
        kept = []  # (group, items, score) of the bundles found, by size
        for size in range(2, max(rules.sizes) + 1):
            if not len(group):
                break
            if self.exhaustive:
                cands = np.broadcast_to(np.arange(self.n), (len(group), self.n))
                scores = (np.asarray(first)[list(first_row.values())] if size == 2 else
                          scorer.score(list(items)))
            elif size == 2:  # the anchor alone: its list and the scores it was learned from
                cands = self.lists[items[:, 0]].astype(np.int64)
                scores = self.list_scores[items[:, 0]]
            else:
                self._ensure(scorer, items.ravel())
                cands = self._candidates(items)
                scores = self._step_scores(scorer, list(items), cands)
            step_item, step_score = self._extend(items, cands, scores)
            group, items, score, rank = _next_beams(group, items, score, step_item, step_score,
                                                    rules.beam_width)
            if size in rules.sizes:
                best = rank < rules.per_anchor
                kept.append((group[best], items[best], score[best]))
        found: dict[int, list[Bundle]] = {a: [] for a in first_row}
        lists = list(found.values())
        for g, it, sc in kept:
            for gg, row, s in zip(g.tolist(), it.tolist(), sc.tolist()):
                lists[gg].append(Bundle(row[0], row, s))
        if evidence is not None:
            evidence.fill_all([b for bundles in found.values() for b in bundles])
        return found

    def _extend(self, members: np.ndarray, cands: np.ndarray,
                scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each beam (its items ``members`` [beams, m]), the ``beam_width`` best items that
        may join it, best first: item int64 [beams, beam_width] (-1 pads) and their scores
        ([beams, beam_width], the dtype of ``scores``).

        ``cands`` [beams, width] item ids (-1 pads), ``scores`` their scores. The constraints
        are applied to every beam at once (arrays); only the near-duplicate check walks a
        beam's best candidates one by one.
        """
        scores = np.asarray(scores)
        at = np.maximum(cands, 0)
        ok = (cands >= 0) & self.static_ok[at] & np.isfinite(scores)
        for attr in (self.keys, self.same_words):  # members, their variants, same names
            mine, theirs = attr[at], attr[members]
            for col in range(members.shape[1]):  # a member at a time: any(axis=2) was slow
                ok &= mine != theirs[:, col, None]
        if self.rules.max_total_price is not None:
            total = self.prices[members].sum(axis=1)
            ok &= self.prices[at] + total[:, None] <= self.rules.max_total_price
        s = np.where(ok, scores, -np.inf)
        want = self.rules.beam_width
        k = min(s.shape[1], 4 * want)
        # each row's k best, score descending, ties by position (= by item: cands are sorted)
        top = (np.argsort(-s, axis=1, kind="stable")[:, :k] if s.shape[1] <= 1024
               else topk_of_scores(s, k))
        # each row's first ``want`` finite candidates in that order that are not near
        # duplicates of a member: names are compared for the first few (usually enough),
        # then for all k of the rows that lost some
        finite = np.isfinite(np.take_along_axis(s, top, 1))
        item = np.take_along_axis(cands, top, 1)
        near = np.zeros(top.shape, dtype=bool)

        def check(where: np.ndarray) -> None:
            rr, pp = np.nonzero(where)
            for col in range(members.shape[1]):
                hit = self.near_duplicates(item[rr, pp], members[rr, col])
                near[rr[hit], pp[hit]] = True

        few = min(k, want + 2)
        first = finite.copy()
        first[:, few:] = False
        check(first)
        rest = finite & ((first & ~near).sum(axis=1) < want)[:, None]
        rest[:, :few] = False
        check(rest)
        ok = finite & ~near  # unchecked past ``few`` only where ``want`` were found before
        got = ok & (np.cumsum(ok, axis=1) <= want)
        out_item = np.full((len(members), want), -1, dtype=np.int64)
        out_score = np.zeros((len(members), want), dtype=scores.dtype)
        rr, cc = np.nonzero(got)
        slot = (np.cumsum(got, axis=1) - 1)[rr, cc]
        out_item[rr, slot], out_score[rr, slot] = item[rr, cc], scores[rr, top[rr, cc]]
        short = (got.sum(axis=1) < want) & finite.all(axis=1) & (k < s.shape[1])
        for row in np.flatnonzero(short):  # the k best were not enough: walk the rest
            pos = np.flatnonzero(np.isfinite(s[row]))
            walk = _sorted_walk(s[row], pos, want, lambda p, row=row:
                                self.near_duplicate(int(cands[row, p]), members[row].tolist()))
            out_item[row] = -1
            out_item[row, :len(walk)] = cands[row, walk]
            out_score[row, :len(walk)] = scores[row, walk]
        return out_item, out_score


def _next_beams(group: np.ndarray, items: np.ndarray, score: np.ndarray, step_item: np.ndarray,
                step_score: np.ndarray, width: int) -> tuple[np.ndarray, ...]:
    """The beams one item longer: every beam with each of its steps (``step_item`` [B, w],
    -1 pads), best first per anchor (a stable sort: ties keep beam then step order), one
    option per item set (the same items in another order: the first, i.e. the best), the
    ``width`` best per anchor. Returns ``(group, items, score, rank within the anchor)``."""
    r, p = np.nonzero(step_item >= 0)  # beam order, then each beam's steps in order
    g = group[r]
    items = np.concatenate([items[r], step_item[r, p][:, None]], axis=1)
    score = score[r] + step_score[r, p].astype(np.float64)  # float64 + each float32 step
    order = np.lexsort((-score, g))  # stable: as sorted(options, key=-score) per anchor
    g, items, score = g[order], items[order], score[order]
    # the anchor (its group) and the set of the other items; the first of each is the best
    first = _firsts(np.column_stack([g, np.sort(items[:, 1:], axis=1)]))
    g, items, score = g[first], items[first], score[first]
    rank = np.arange(len(g)) - np.searchsorted(g, g)  # g is sorted: position in its anchor
    cut = rank < width
    return g[cut], items[cut], score[cut], rank[cut]


def _firsts(key: np.ndarray) -> np.ndarray:
    """Whether each row of ``key`` (int64 [N, c], values >= 0) is the first row with its
    values. The columns are packed into one int64 where they fit (an argsort of it is ~10x
    faster than a lexsort of the columns), else lexsorted; both sorts are stable."""
    radix = [int(col.max()) + 1 if len(col) else 1 for col in key.T]
    if math.prod(radix) < PACKED_MAX:
        packed = np.zeros(len(key), dtype=np.int64)
        for col, size in zip(key.T, radix):
            packed = packed * size + col
        order = np.argsort(packed, kind="stable")
        same = packed[order[1:]] == packed[order[:-1]]
    else:
        order = np.lexsort(key.T[::-1])
        same = (key[order[1:]] == key[order[:-1]]).all(axis=1)
    first = np.ones(len(key), dtype=bool)
    first[order[1:][same]] = False
    return first


def search_bundles(scorer: Scorer, anchors: Sequence[int], index: ItemIndex,
                   attrs: ItemAttributes, rules: BundleRules | None = None,
                   evidence: Evidence | None = None,
                   search: BundleSearch | None = None) -> dict[int, list[Bundle]]:
    """Beam search per anchor; returns ``{anchor: bundles}`` (best first within each size).

    ``search``: a :class:`BundleSearch` of the same catalogue and rules, when the caller
    searches the catalogue in chunks of anchors and prepares it once.
    """
    search = search or BundleSearch(index, attrs, rules)
    return search.search(scorer, anchors, evidence)

