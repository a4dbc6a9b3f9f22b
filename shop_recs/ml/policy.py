"""The serving policy for returning visitors: boost what they bought before, demote it, or
leave the list alone — measured per shop on validation, as the widget would serve it.

Whether re-buying helps is a property of the shop (a wholesaler's customers re-order the same
stock; nobody buys a second television), so each run decides it from its own orders. The
widget can only show what serving can reach: the anchor's published list (its first
``top_k`` entries, ranked) and the visitor's own purchases. Every policy is evaluated on
exactly that, with the formula serving applies (``shop_recs.returning.boosted``)::

    served score = base(rank) + weight * sum over the visitor's past orders of
                   0.5 ** (position / half_life)

    base(rank) = 1 - rank / top_k for the published list's entries, 0 for the rest

where ``position`` counts the items of the visitor's history, most recent order first (one
entry per order that held the item, ``evaluate.customer_histories``): frequency and recency
together, as in TIFU-KNN (Hu et al. 2020). *demote* moves products the visitor bought behind
the others (the list itself unchanged otherwise); *off* serves the anonymous list.

``weight`` and ``half_life`` are tuned on half of the validation queries with a history and
scored on the other half, and the other way round (cross-fitting), so that the comparison with
*off* is out of sample; a policy replaces *off* only when the lower end of the paired-bootstrap
interval of its gain is above zero (``gate.paired_bootstrap``)::

    policy = choose_policy(scorer, val_queries, top_k=10)
    policy["mode"], policy["weight"], policy["half_life"], policy["validation"]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from shop_recs.ml.evaluate import (Queries, Split, anchor_queries, customer_histories,
                                   multi_ndcg_rows, subset)
from shop_recs.ml.gate import paired_bootstrap
from shop_recs.ml.topk import masked, topk_of_scores, topk_rows

__all__ = ["PolicyConfig", "MODES", "candidate_lists", "scorer_lists", "ServedFrame",
           "served_topk", "choose_policy", "evaluate_policy", "shop_policy"]

OFF, BOOST, DEMOTE = "off", "boost", "demote"
MODES = (OFF, BOOST, DEMOTE)


@dataclass
class PolicyConfig:
    top_k: int = 10  # the published list's length (SHOP_RECS["FBT_TOP_K"])
    k: int = 10  # NDCG cut-off
    weights: tuple = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
    half_lives: tuple = (4.0, 16.0, 64.0, 256.0)  # in history positions
    max_history: int = 256  # serving reads the visitor's latest 256 purchased items
    confidence: float = 0.95
    n_boot: int = 1000
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def candidate_lists(scores: np.ndarray, contexts, top_k: int) -> np.ndarray:
    """The published list of each query's anchor: its ``top_k`` items, best first (the order
    of ``evaluate.rank_items``, in O(n) per row)."""
    return topk_of_scores(masked(scores, contexts), top_k)


def scorer_lists(scorer, contexts, top_k: int, chunk: int = 256) -> np.ndarray:
    """:func:`candidate_lists` of ``scorer``, scored ``chunk`` queries at a time: only
    ``chunk x n_items`` scores exist at once, never ``queries x n_items`` (issue 15).
    Published lists (``served.PublishedLists``) answer single-anchor queries from their
    lists, with -1 where a list is short (what the widget can show)."""
    lists = getattr(scorer, "lists", None)
    if (lists is not None and lists.shape[1] >= top_k
            and all(len(c) == 1 for c in contexts)):
        anchors = np.fromiter((int(c[0]) for c in contexts), dtype=np.int64,
                              count=len(contexts))
        if hasattr(scorer, "require"):  # lists built for some anchors only must hold these
            scorer.require(anchors)
        return lists[anchors, :top_k]
    return topk_rows(scorer.score, contexts, top_k, chunk, dtype=np.float64)[0]


class ServedFrame:
    """Each query's servable items (its published list, then its history) as one padded
    table, built once and re-scored for every (mode, weight, half-life) by array operations.

    Column ``c`` of a row holds the ``c``-th distinct item in list-then-history order (the
    tie order of serving); ``base`` the list's rank scores (0 for history-only items, -inf
    for padding); ``occ[j]`` the ``j``-th occurrence of each item in the history as (rows,
    columns, positions), so a boost adds them in the order and float operations of serving.
    """

    def __init__(self, cands: np.ndarray, histories, contexts, max_history: int = 256) -> None:
        cands = np.asarray(cands, dtype=np.int64)
        q, top_k = cands.shape
        hists = [np.asarray(h, dtype=np.int64)[:max_history] for h in histories]
        hlen = np.array([len(h) for h in hists], dtype=np.int64)
        table = np.full((q, top_k + int(hlen.max(initial=0))), -1, dtype=np.int64)
        table[:, :top_k] = cands
        if hlen.sum():
            rows = np.repeat(np.arange(q), hlen)
            pos = np.arange(len(rows)) - np.repeat(np.cumsum(hlen) - hlen, hlen)
            table[rows, top_k + pos] = np.concatenate(hists)
        self.q, self.max_history, self.has_history = q, max_history, hlen > 0
        row, col = np.nonzero(table >= 0)
        item = table[row, col]
        # the entries of one (row, item) together, in position order (one int64 sort key)
        span, wide = int(item.max(initial=0)) + 1, table.shape[1]
        order = np.argsort((row * span + item) * wide + col, kind="stable")
        row, col, item = row[order], col[order], item[order]
        new = np.ones(len(row), dtype=bool)
        new[1:] = (row[1:] != row[:-1]) | (item[1:] != item[:-1])
        group = np.cumsum(new) - 1
        g_row, g_first = row[new], col[new]
        # a group's column: the rank of its first appearance within its row
        by_first = np.argsort(g_row * wide + g_first, kind="stable")
        rank = np.empty(len(by_first), dtype=np.int64)
        rank[by_first] = np.arange(len(by_first)) - np.repeat(
            np.searchsorted(g_row[by_first], np.arange(q)), np.bincount(g_row, minlength=q))
        width = int(rank.max(initial=-1)) + 1
        self.items = np.full((q, width), -1, dtype=np.int64)
        self.items[g_row, rank] = item[new]
        self.base = np.where(self.items >= 0, 0.0, -np.inf)
        listed = col < top_k
        self.base[row[listed], rank[group[listed]]] = 1.0 - col[listed] / top_k
        self.listed = np.zeros((q, width), dtype=bool)
        self.listed[row[listed], rank[group[listed]]] = True
        self.owned = np.zeros((q, width), dtype=bool)
        self.owned[row[~listed], rank[group[~listed]]] = True
        starts = np.flatnonzero(new)
        nth = np.arange(len(row)) - starts[group] - listed[starts][group]
        hist = np.flatnonzero(~listed)
        hist = hist[np.argsort(nth[hist], kind="stable")]  # by occurrence number
        cuts = np.cumsum(np.bincount(nth[hist]))[:-1] if len(hist) else []
        self.occ = [(row[at], rank[group[at]], col[at] - top_k) for at in np.split(hist, cuts)
                    if len(at)]
        # the anchor (the query's context) is never shown: one comparison per context slot
        self.shown = np.zeros((q, width), dtype=bool)
        c_len = np.array([len(c) for c in contexts], dtype=np.int64)
        for j in range(int(c_len.max(initial=0))):
            slot = np.array([int(c[j]) if len(c) > j else -2 for c in contexts])
            self.shown |= (self.items == slot[:, None]) & (self.items >= 0)

    def take(self, rows: np.ndarray) -> "ServedFrame":
        """The frame of the queries at ``rows`` (cross-fitting scores parts of a split)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = ServedFrame.__new__(ServedFrame)
        out.q, out.max_history, out.has_history = len(rows), self.max_history, \
            self.has_history[rows]
        for name in ("items", "base", "listed", "owned", "shown"):
            setattr(out, name, getattr(self, name)[rows])
        where = np.full(self.q, -1, dtype=np.int64)
        where[rows] = np.arange(len(rows))
        out.occ = [(where[r][where[r] >= 0], c[where[r] >= 0], p[where[r] >= 0])
                   for r, c, p in self.occ]
        return out

    def topk(self, mode: str, weight: float = 0.0, half_life: float = 16.0, k: int = 10
             ) -> np.ndarray:
        """The ``k`` items serving shows for each query under ``mode`` (-1 pads)."""
        if mode == BOOST:
            score = self.base.copy()
            decay = 0.5 ** (np.arange(self.max_history) / max(half_life, 1e-9))
            for r, c, p in self.occ:  # one occurrence per (row, item) per step: no clashes
                score[r, c] = score[r, c] + weight * decay[p]
        else:  # off: the list in order; demote: its owned items after the others
            score = np.where(self.listed, self.base, -np.inf)
            if mode == DEMOTE:
                score -= 2.0 * (self.owned & self.listed)
        score[self.shown] = -np.inf
        out = np.full((self.q, k), -1, dtype=np.int64)
        kk = min(k, score.shape[1])
        if kk == 0:
            return out
        # each row's k best by (-score, column) without sorting whole rows: the entries at
        # or above the row's k-th score, sorted (-inf never shows: it pads with -1)
        kth = -np.partition(-score, kk - 1, axis=1)[:, kk - 1]
        r, c = np.nonzero((score >= kth[:, None]) & np.isfinite(score))
        order = np.lexsort((c, -score[r, c], r))
        r, c = r[order], c[order]
        pos = np.arange(len(r)) - np.searchsorted(r, r)
        keep = pos < k
        out[r[keep], pos[keep]] = self.items[r[keep], c[keep]]
        return out


def served_topk(cands: np.ndarray, histories, contexts, mode: str, weight: float = 0.0,
                half_life: float = 16.0, k: int = 10, max_history: int = 256) -> np.ndarray:
    """The ``k`` items serving shows for each query under ``mode`` (-1 pads a short list).

    ``cands`` [q, top_k] are the published lists, ``histories`` the visitors' past items
    (most recent first). The anchor (``contexts``) is never shown. A visitor without a
    history gets the published list whatever the mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return ServedFrame(cands, histories, contexts, max_history).topk(mode, weight, half_life, k)


def evaluate_policy(cands, queries: Queries, mode: str, weight: float = 0.0,
                    half_life: float = 16.0, k: int = 10, max_history: int = 256) -> np.ndarray:
    """Per-query multi-NDCG@k of what serving shows under ``mode``."""
    tops = served_topk(cands, queries.histories, queries.contexts, mode, weight, half_life, k,
                       max_history)
    return multi_ndcg_rows(tops, queries.targets, k)


def _with_history(queries: Queries) -> np.ndarray:
    return np.array([i for i, h in enumerate(queries.histories or []) if len(h)], dtype=np.int64)


def _ndcg(frame: ServedFrame, targets, mode: str, cfg: PolicyConfig, weight: float = 0.0,
          half_life: float = 16.0) -> np.ndarray:
    return multi_ndcg_rows(frame.topk(mode, weight, half_life, cfg.k), targets, cfg.k)


def _tune(frame: ServedFrame, targets, cfg: PolicyConfig) -> tuple[float, float, float]:
    best = (0.0, cfg.half_lives[0], -1.0)
    for w in cfg.weights:
        for hl in cfg.half_lives:
            value = float(np.mean(_ndcg(frame, targets, BOOST, cfg, w, hl)))
            if value > best[2]:
                best = (w, hl, value)
    return best


def choose_policy(scorer, queries: Queries, cfg: PolicyConfig | None = None,
                  test: Queries | None = None) -> dict:
    """Decide the policy on validation ``queries`` (anchor queries with ``histories``) for
    ``scorer``'s published lists; report it on ``test`` too when given."""
    cfg = cfg or PolicyConfig()
    rows = _with_history(queries)
    policy = {"mode": OFF, "weight": 0.0, "half_life": 0.0, "top_k": cfg.top_k,
              "validation": {"queries": int(len(rows))}}
    if len(rows) < 2:
        policy["reason"] = "fewer than two validation orders by customers with a history"
        return policy
    q = subset(queries, rows)
    frame = ServedFrame(scorer_lists(scorer, q.contexts, cfg.top_k), q.histories, q.contexts,
                        cfg.max_history)
    off, demote = _ndcg(frame, q.targets, OFF, cfg), _ndcg(frame, q.targets, DEMOTE, cfg)
    # cross-fitted boost: each half scored with the setting tuned on the other half
    rng = np.random.default_rng(cfg.seed)
    folds = np.array_split(rng.permutation(len(rows)), 2)
    boost = np.empty(len(rows))
    settings = []
    for tune_on, score_on in ((folds[0], folds[1]), (folds[1], folds[0])):
        w, hl, _ = _tune(frame.take(tune_on), subset(q, tune_on).targets, cfg)
        settings.append((w, hl))
        boost[score_on] = _ndcg(frame.take(score_on), subset(q, score_on).targets, BOOST, cfg,
                                w, hl)
    weight, half_life, _ = _tune(frame, q.targets, cfg)  # what ships: tuned on all of validation
    figures = {OFF: float(off.mean()), BOOST: float(boost.mean()), DEMOTE: float(demote.mean())}
    intervals = {}
    for mode, values in ((BOOST, boost), (DEMOTE, demote)):
        mean, low, high = paired_bootstrap(values, off, cfg.n_boot, cfg.confidence, cfg.seed)
        base = max(figures[OFF], 1e-12)
        intervals[mode] = [100.0 * low / base, 100.0 * high / base]
    winners = [m for m in (BOOST, DEMOTE) if intervals[m][0] > 0]
    mode = max(winners, key=lambda m: figures[m]) if winners else OFF
    policy.update(mode=mode, weight=weight if mode == BOOST else 0.0,
                  half_life=half_life if mode == BOOST else 0.0)
    policy["validation"].update({f"{m}_ndcg10": v for m, v in figures.items()})
    policy["validation"]["interval_pct"] = intervals
    policy["validation"]["fold_settings"] = [list(s) for s in settings]
    policy["reason"] = (f"{mode}: gain over off {intervals[mode][0]:+.1f}% to "
                        f"{intervals[mode][1]:+.1f}% (95% interval)" if mode != OFF else
                        "off: neither boosting nor demoting past purchases beat the anonymous "
                        "list beyond noise")
    if test is not None:
        t_rows = _with_history(test)
        if len(t_rows):
            tq = subset(test, t_rows)
            t_frame = ServedFrame(scorer_lists(scorer, tq.contexts, cfg.top_k), tq.histories,
                                  tq.contexts, cfg.max_history)
            policy["test"] = {"queries": int(len(t_rows)), **{
                f"{m}_ndcg10": float(_ndcg(t_frame, tq.targets, m, cfg, weight,
                                           half_life).mean()) for m in MODES}}
    return policy


def shop_policy(scorer, split: Split, query_seed: int = 0, cfg: PolicyConfig | None = None
                ) -> dict:
    """The policy of a run: ``scorer`` (the gate's winner, fitted on the training orders)
    judged on the split's validation orders of customers with earlier orders, reported on
    its test orders. Product-page (anchor) queries, the same anchors as the gate's."""
    queries = {part: anchor_queries(getattr(split, part), query_seed,
                                    customer_histories(getattr(split, part), split.all_baskets))
               for part in ("val", "test")}
    return choose_policy(scorer, queries["val"], cfg, test=queries["test"])
