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
                                   multi_ndcg_rows, rank_items, subset)
from shop_recs.ml.gate import paired_bootstrap

__all__ = ["PolicyConfig", "MODES", "candidate_lists", "served_topk", "choose_policy",
           "evaluate_policy", "shop_policy"]

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
    """The published list of each query's anchor: its ``top_k`` items, best first."""
    return rank_items(scores, contexts)[:, :top_k]


def served_topk(cands: np.ndarray, histories, contexts, mode: str, weight: float = 0.0,
                half_life: float = 16.0, k: int = 10, max_history: int = 256) -> np.ndarray:
    """The ``k`` items serving shows for each query under ``mode`` (-1 pads a short list).

    ``cands`` [q, top_k] are the published lists, ``histories`` the visitors' past items
    (most recent first). The anchor (``contexts``) is never shown.
    """
    top_k = cands.shape[1]
    base = 1.0 - np.arange(top_k) / top_k
    decay = 0.5 ** (np.arange(max_history) / max(half_life, 1e-9))
    out = np.full((len(cands), k), -1, dtype=np.int64)
    for row, (cand, hist, ctx) in enumerate(zip(cands, histories, contexts)):
        hist = np.asarray(hist, dtype=np.int64)[:max_history]
        shown = set(int(i) for i in ctx)
        if mode == OFF or len(hist) == 0:
            items = [int(i) for i in cand if int(i) not in shown]
        elif mode == DEMOTE:
            owned = set(hist.tolist())
            kept = [int(i) for i in cand if int(i) not in shown]
            items = [i for i in kept if i not in owned] + [i for i in kept if i in owned]
        else:
            score: dict[int, float] = {}
            for rank, item in enumerate(cand):
                score[int(item)] = float(base[rank])
            for position, item in enumerate(hist):
                score[int(item)] = score.get(int(item), 0.0) + weight * float(decay[position])
            # ties keep the published order, then the most recent purchase first
            order = {item: i for i, item in enumerate(dict.fromkeys(
                [*(int(i) for i in cand), *(int(i) for i in hist)]))}
            items = sorted((i for i in score if i not in shown),
                           key=lambda i: (-score[i], order[i]))
        items = items[:k]
        out[row, :len(items)] = items
    return out


def evaluate_policy(cands, queries: Queries, mode: str, weight: float = 0.0,
                    half_life: float = 16.0, k: int = 10, max_history: int = 256) -> np.ndarray:
    """Per-query multi-NDCG@k of what serving shows under ``mode``."""
    tops = served_topk(cands, queries.histories, queries.contexts, mode, weight, half_life, k,
                       max_history)
    return multi_ndcg_rows(tops, queries.targets, k)


def _with_history(queries: Queries) -> np.ndarray:
    return np.array([i for i, h in enumerate(queries.histories or []) if len(h)], dtype=np.int64)


def _tune(cands, queries: Queries, cfg: PolicyConfig) -> tuple[float, float, float]:
    best = (0.0, cfg.half_lives[0], -1.0)
    for w in cfg.weights:
        for hl in cfg.half_lives:
            value = float(np.mean(evaluate_policy(cands, queries, BOOST, w, hl, cfg.k,
                                                  cfg.max_history)))
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
    cands = candidate_lists(scorer.score(q.contexts), q.contexts, cfg.top_k)
    off = evaluate_policy(cands, q, OFF, k=cfg.k)
    demote = evaluate_policy(cands, q, DEMOTE, k=cfg.k)
    # cross-fitted boost: each half scored with the setting tuned on the other half
    rng = np.random.default_rng(cfg.seed)
    folds = np.array_split(rng.permutation(len(rows)), 2)
    boost = np.empty(len(rows))
    settings = []
    for tune_on, score_on in ((folds[0], folds[1]), (folds[1], folds[0])):
        w, hl, _ = _tune(cands[tune_on], subset(q, tune_on), cfg)
        settings.append((w, hl))
        boost[score_on] = evaluate_policy(cands[score_on], subset(q, score_on), BOOST, w, hl,
                                          cfg.k, cfg.max_history)
    weight, half_life, _ = _tune(cands, q, cfg)  # what ships: tuned on all of validation
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
            t_cands = candidate_lists(scorer.score(tq.contexts), tq.contexts, cfg.top_k)
            policy["test"] = {"queries": int(len(t_rows)), **{
                f"{m}_ndcg10": float(evaluate_policy(
                    t_cands, tq, m, weight, half_life, cfg.k, cfg.max_history).mean())
                for m in MODES}}
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
