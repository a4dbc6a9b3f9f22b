"""The one evaluation protocol: split -> tune -> gate -> refit, for the pipeline and the benchmark.

``shop_recs.pipeline`` publishes what :func:`fit_shop` returns and the benchmark CLI reports it
(its ``shipped`` and ``shipped_refit`` rows), so the figures describe what a shop is served::

    cfg = configure(get_default_config(), {"train.epochs": 20, "ease_lambdas": [10, 100]})
    fitted = fit_shop(baskets, index, attrs, cfg, progress=cb)
    fitted.choice, fitted.gate["reason"]     # what ships, and the validation interval
    fitted.metrics["test"]["shipped"]        # the winner as trained on the training split
    fitted.metrics["test"]["shipped_refit"]  # the same recipe refit on train + validation
    fitted.scorer.score([[j]])               # the shipped scorer, refit on every order

Protocol: orders sorted by time; the last ``test_frac`` are test, the ``val_frac`` before them
validation. Every candidate is judged as served (``shop_recs.ml.served``): its per-product
top-``top_k`` lists, which the product page shows and the cart widget merges; no model runs at
request time. On validation: each baseline's one published setting, early stopping of the
model and (cross-fitted) the blend weight, all on one objective, the mean of each order's cart
and product-page NDCG@10. The gate (``shop_recs.ml.gate``) then ships a more complex
candidate only when its gain on that objective is larger than noise. Test is only reported.
The winner is refit on all orders with the chosen settings (the model for the epochs early
stopping picked) over the whole catalogue: every product in ``index``, bought or not, so the
model scores new products from their attributes. Products with fewer than ``min_orders`` orders
are scored but not evaluated, used as context or published (``Fitted.published``).

Configuration is one tree (``shop_recs.ml.config``, re-exported here): ``ProtocolConfig`` with
the defaults each component contributes; ``configure`` applies dotted overrides and checks them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from shop_recs.ml.baselines import EASE, CoOccurrence, ItemKNN, Popularity, cooccurrence_counts
from shop_recs.ml.blend import BlendScorer, best_weight, crossfit_rows
from shop_recs.ml.candidates import flat_rows
from shop_recs.ml.catalogue import OnCatalogue, cap_evaluated, sample_queries as _sample
from shop_recs.ml.config import (SETTINGS, ConfigError, ProtocolConfig, configure,
                                 get_default_config)
from shop_recs.ml.evaluate import (Split, anchor_queries, complete_queries, evaluate,
                                   temporal_split)
from shop_recs.ml.gate import decide
from shop_recs.ml.policy import PolicyConfig, shop_policy
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.sparse import use_dense
from shop_recs.ml.served import PublishedLists, blend_lists
from shop_recs.ml.topk import distinct
from shop_recs.ml.train import EpochReport, TrainConfig
from shop_recs.ml.types import Baskets, ItemAttributes, ItemIndex

logger = logging.getLogger("shop_recs.ml.protocol")

__all__ = ["ProtocolConfig", "ConfigError", "SETTINGS", "get_default_config", "configure",
           "fit_shop", "Fitted", "Evaluation", "OnCatalogue", "MODEL", "TASKS",
           "scored_on_test"]

TASKS = {"complete": "ndcg", "anchor": "multi_ndcg"}  # task -> per-query metric
GATE_METRIC = "served NDCG@10 (mean of cart and product page)"
# validation queries that choose the model's EASE prior (a seeded sample above this; the
# prior is ranked from whole rows, the costliest evaluation at 10^5 products and more)
PRIOR_QUERIES = 10_000
MODEL = "bundle_model"


@dataclass
class _Option:
    """A family's published setting: the option with the best validation objective."""

    value: float  # mean validation objective
    label: str
    make: Callable
    scorer: object  # fitted on the training split
    served: PublishedLists  # its published lists
    rows: np.ndarray  # per-order validation objective
    val: dict  # validation figures per task and "combined"


def _judge(served: PublishedLists, queries: dict, pop: np.ndarray) -> tuple[dict, np.ndarray]:
    """Validation figures of published lists on both tasks, and the per-order objective that
    tuning and the gate use: the mean of the order's cart and product-page NDCG@10 (both query
    sets hide or pick one item of the same validation orders, so the rows pair up)."""
    res = {t: evaluate(served, queries[("val", t)], pop) for t in TASKS}
    per_order = (res["complete"]["rows"]["ndcg"] + res["anchor"]["rows"]["multi_ndcg"]) / 2
    figures = {t: res[t][TASKS[t]] for t in TASKS}
    return {**figures, "combined": float(np.mean(per_order))}, per_order


@dataclass
class Evaluation:
    """What the benchmark reads besides the figures: the split and the candidates on it."""

    split: Split
    queries: dict  # (part, task) -> Queries
    popularity: np.ndarray  # training counts
    scorers: dict  # candidate -> scorer fitted on the training split (baselines: gate-tuned)
    partner: str  # the baseline the model is blended with
    served: dict = field(default_factory=dict)  # candidate -> its PublishedLists


@dataclass
class Fitted:
    scorer: object  # the shipped scorer (Scorer protocol), over ``index``
    index: ItemIndex  # the shipped catalogue
    attrs: ItemAttributes
    baskets: Baskets  # every order, on ``index`` (for evidence)
    published: np.ndarray  # bool [len(index)]: products with enough orders to publish
    choice: str
    gate: dict  # shop_recs.ml.gate.decide's decision
    metrics: dict  # {"validation": {name: {task: v}}, "test": {name: row}, "params": {...}}
    split: dict
    model: BundleScorer | None  # the neural model inside the shipped scorer, if any
    trained: BundleScorer | None = None  # the latest neural model (shipped or not)
    trained_index: ItemIndex | None = None  # its catalogue
    history: list[EpochReport] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    evaluation: Evaluation | None = None  # with fit_shop(keep_candidates=True): the benchmark's

    @property
    def reason(self) -> str:
        return self.gate["reason"]


def _options(cfg: ProtocolConfig) -> dict[str, list[tuple[str, Callable]]]:
    """family -> [(label, make(counts) -> unfitted scorer)], in order of complexity."""
    every = {
        "popularity": [("", lambda c: Popularity())],
        "cooc_count": [("", lambda c: CoOccurrence("count", c))],
        "cooc_confidence": [("", lambda c: CoOccurrence("confidence", c))],
        "cooc_lift": [("", lambda c: CoOccurrence("lift", c))],
        "item_knn": [(f"k={k}", lambda c, k=k: ItemKNN(int(k), 10.0, c)) for k in cfg.knn_ks],
        "ease": [(f"lambda={lam:g}", lambda c, lam=lam: EASE(float(lam), c))
                 for lam in cfg.ease_lambdas],
    }
    return {f: every[f] for f in cfg.families}


def scored_on_test(scorer, queries, pop) -> dict:
    """Test figures of ``scorer`` on both tasks (the columns of every report)."""
    complete = evaluate(scorer, queries[("test", "complete")], pop)
    anchor = evaluate(scorer, queries[("test", "anchor")], pop)
    return {"complete_hr10": complete["hr"], "complete_ndcg10": complete["ndcg"],
            "complete_mrr": complete["mrr"], "anchor_recall10": anchor["recall"],
            "anchor_ndcg10": anchor["multi_ndcg"]}


def _model(cfg: ProtocolConfig, train_cfg: TrainConfig, prior_lambda: float) -> BundleScorer:
    return BundleScorer(dataclasses.replace(cfg.model), train_cfg, prior_lambda=prior_lambda,
                        max_prior_items=cfg.max_prior_items)


def _warm(init_from, index: ItemIndex) -> dict:
    """``fit`` keyword arguments that start from ``init_from`` (scorer, index) on ``index``."""
    if init_from is None:
        return {}
    old, old_index = init_from
    return {"init_from": old, "old_to_new": index.lookup(old_index.ids)}


def _continued(net: BundleScorer) -> bool:
    """Whether the refit continues ``net`` (it ran out of time in its first epoch)."""
    return net.result.stopped == "time_budget" and len(net.result.history) == 1


def _refit_start(net: BundleScorer, train_cfg: TrainConfig, trained_on: int, orders: int,
                 init_from, index: ItemIndex) -> tuple[TrainConfig, dict]:
    """(training settings, ``fit`` warm-start arguments) of the network's refit on ``orders``
    orders after the evaluated fit ``net`` trained on ``trained_on`` of them.

    A fit that completed an epoch is repeated on every order for the epochs validation chose,
    from the same start. A fit that ran out of ``time_budget_s`` within its first epoch chose
    no epoch count: the refit continues that network over every order for the seconds per
    order it had (``time_budget_s`` times the orders it never saw over those it trained on)
    instead of spending the budget again from the start (issue 15: at 10^5 products and more
    the network trains less than one epoch per fit, and a second full fit was a quarter of the
    run; at 10^5 the continued network scored better on test than the refit from the start).
    """
    epochs = max(net.result.best_epoch, 1)
    refit_cfg = dataclasses.replace(train_cfg, epochs=epochs, patience=epochs + 1)
    if not _continued(net):
        return refit_cfg, _warm(init_from, index)
    # at least a second: a budget of 0 would mean no limit
    budget = max(train_cfg.time_budget_s * (orders - trained_on) / max(trained_on, 1), 1.0)
    return (dataclasses.replace(refit_cfg, time_budget_s=budget),
            {"init_from": net, "old_to_new": np.arange(len(index))})


def fit_shop(baskets: Baskets, index: ItemIndex, attrs: ItemAttributes, cfg: ProtocolConfig,
             progress: Callable[[str, EpochReport], None] | None = None,
             init_from: tuple[BundleScorer, ItemIndex] | None = None,
             keep_candidates: bool = False) -> Fitted:
    """Evaluate every candidate, gate on validation, report test, refit the winner.

    ``progress(stage, report)`` is called during training; ``stage`` is ``"evaluate"``,
    ``"refit_eval"`` (train + validation) or ``"refit"``. ``init_from`` warm-starts every model
    fit from an earlier (scorer, index); ``keep_candidates`` keeps the split and every
    candidate in ``Fitted.evaluation``. Raises ``DataError`` when there are too few orders.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    split = temporal_split(baskets, index, attrs, cfg.val_frac, cfg.test_frac, cfg.min_orders)
    split = cap_evaluated(split, cfg.max_eval_orders, cfg.query_seed)
    pop = split.train.item_counts()
    n = len(split.index)
    queries = {(part, task): make(getattr(split, part), cfg.query_seed)
               for part in ("val", "test")
               for task, make in (("complete", complete_queries), ("anchor", anchor_queries))}
    # the lists judging reads: those of the evaluated orders' products (every list with
    # keep_candidates, whose lists the benchmark reads)
    anchors = None if keep_candidates else distinct(np.concatenate(
        [flat_rows(q.contexts)[1] for q in queries.values()]))
    counts = cooccurrence_counts(split.train)
    val: dict[str, dict] = {}
    rows: dict[str, np.ndarray] = {}  # candidate -> per-order validation objective (the gate's)
    test: dict[str, dict] = {}
    best: dict[str, _Option] = {}  # family -> its one published setting
    prior = None  # (cart NDCG with the whole cart as context, lambda): the model's EASE prior
    prior_queries = _sample(queries[("val", "complete")], PRIOR_QUERIES, cfg.query_seed)
    for family, options in _options(cfg).items():
        judged: list[tuple[PublishedLists, tuple]] = []  # this family's lists and figures
        for label, make in options:
            scorer = make(counts).fit(split.train, split.attrs)
            served = PublishedLists(scorer, n, cfg.top_k, anchors=anchors)
            # settings that publish the same lists score the same (e.g. item-kNN's k above
            # top_k: a list is the top of the same row): judged once
            same = next((f for lists, f in judged if lists.same_as(served)), None)
            figures, per_order = same or _judge(served, queries, pop)
            judged.append((served, (figures, per_order)))
            if family not in best or figures["combined"] > best[family].value:
                best[family] = _Option(figures["combined"], label, make, scorer, served,
                                       per_order, figures)
            if family == "ease" and cfg.prior_lambda is None:
                whole = evaluate(scorer, prior_queries, pop)["ndcg"]
                if prior is None or whole > prior[0]:
                    prior = (whole, scorer.lam)
        opt = best[family]
        val[family], rows[family] = opt.val, opt.rows
        test[family] = {**scored_on_test(opt.served, queries, pop),
                        "params": opt.label}  # the one published setting
    timings["baselines"] = time.perf_counter() - t0
    partner = max(best, key=lambda f: best[f].value)  # first of equals: the simplest
    del counts
    if cfg.refit and not keep_candidates:
        # only the blend's partner is scored again (the rest are refit from ``make`` if they
        # win): their item-item matrices go (issue 15: gigabytes at 10^6 products)
        for family in best:
            if family != partner:
                best[family].scorer = best[family].served.scorer = None

    t1 = time.perf_counter()
    prior_lambda = cfg.prior_lambda
    if prior_lambda is None:
        prior_lambda = prior[1] if prior is not None else 10.0
    train_cfg = dataclasses.replace(cfg.train, seed=cfg.seed)
    # the network is trained over every product of ``index`` (bought or not), on the training
    # orders, and evaluated through the split's catalogue
    net_val = baskets.select(split.rows["val"])
    net = _model(cfg, train_cfg, prior_lambda).fit(
        baskets.select(split.rows["train"]), attrs, val=net_val.select(net_val.sizes >= 2),
        callback=(lambda r: progress("evaluate", r)) if progress else None,
        **_warm(init_from, index))
    model = OnCatalogue(net, split.items)
    history = list(net.result.history)
    served_model = PublishedLists(model, n, cfg.top_k, anchors=anchors)
    val[MODEL], rows[MODEL] = _judge(served_model, queries, pop)
    test[MODEL] = scored_on_test(served_model, queries, pop)
    base = best[partner].scorer
    blend_name = f"{MODEL}+{partner}"
    # the blend's published lists for every weight; the weight is judged like the rest
    by_weight = blend_lists(base, model, cfg.blend_weights, n, cfg.top_k, blend_name,
                            anchors=anchors)
    judged = {w: _judge(lists, queries, pop) for w, lists in by_weight.items()}
    per_weight = {w: per_order for w, (_, per_order) in judged.items()}
    weight = best_weight(per_weight)
    weights = BlendScorer.pair_weights(weight)
    blend = BlendScorer([base, model], weights, blend_name, personal=[False, False])
    served_blend = by_weight[weight]
    served_blend.scorer = blend
    # the gate compares cross-fitted figures: a weight never scores the orders it was tuned on
    rows[blend_name], fold_weights = crossfit_rows(per_weight, cfg.blend_folds, cfg.seed)
    val[blend_name] = {**judged[weight][0],
                       "combined_crossfit": float(np.mean(rows[blend_name]))}
    test[blend_name] = {**scored_on_test(served_blend, queries, pop), "weights": weights,
                        "fold_weights": [BlendScorer.pair_weights(w) for w in fold_weights]}
    timings["model"] = time.perf_counter() - t1

    decision = decide(rows, list(best), [MODEL, blend_name], cfg.gate, GATE_METRIC)
    choice = decision["choice"]
    logger.info("gate: %s", decision["reason"])
    shipped = test[choice]  # one published setting serves both tasks
    test["shipped"] = {**{k: v for k, v in shipped.items() if k.startswith(tuple(TASKS))},
                       "choice": choice}

    def recipe(stage: str, full: Baskets, cat: Baskets | None = None):
        """The winner refit with the settings validation chose: baselines on ``cat`` (the
        same orders in catalogue space; None: on ``full``), the network on ``full`` over the
        whole index (seen through the catalogue when ``cat`` is given).
        Returns (scorer, network or None)."""
        base_on, base_attrs = (full, attrs) if cat is None else (cat, split.attrs)
        make_base = best[choice if choice in best else partner].make
        base = (make_base(cooccurrence_counts(base_on)).fit(base_on, base_attrs)
                if choice != MODEL else None)
        if choice in best:
            return base, None
        refit_cfg, warm = _refit_start(net, train_cfg, len(split.rows["train"]), len(full),
                                       init_from, index)
        fitted_net = _model(cfg, refit_cfg, prior_lambda).fit(
            full, attrs, callback=(lambda r: progress(stage, r)) if progress else None, **warm)
        seen = fitted_net if cat is None else OnCatalogue(fitted_net, split.items)
        if choice == MODEL:
            return seen, fitted_net
        return BlendScorer([base, seen], weights, blend_name, personal=[False, False]), fitted_net

    t2 = time.perf_counter()
    # "auto": skipped only when it would train a network above the dense size, where a fit
    # takes the whole TIME_BUDGET_S for a figure the gate never reads (issue 15)
    refit_evaluated = ((choice in best or use_dense(len(index)))
                       if cfg.evaluate_refit == "auto" else bool(cfg.evaluate_refit))
    if refit_evaluated:
        train_val = np.concatenate([split.rows["train"], split.rows["val"]])
        refit_eval, _ = recipe("refit_eval", baskets.select(train_val),
                               split.all_baskets.select(np.arange(len(train_val))))
        refit_lists = PublishedLists(refit_eval, n, cfg.top_k, anchors=anchors)
        test["shipped_refit"] = {**scored_on_test(refit_lists, queries, pop), "choice": choice}
    timings["refit_eval"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    if cfg.refit:
        scorer, shipped_model = recipe("refit", baskets)
        out_index, out_attrs, out_baskets = index, attrs, baskets
        published = baskets.item_counts() >= cfg.min_orders
    else:
        scorer = {MODEL: model, blend_name: blend}.get(choice) or best[choice].scorer
        shipped_model = net if choice in (MODEL, blend_name) else None
        out_index, out_attrs, out_baskets = split.index, split.attrs, split.all_baskets
        published = np.ones(len(split.index), dtype=bool)
    timings["refit"] = time.perf_counter() - t3
    # the latest network (for the checkpoint and the next warm start) covers every product
    trained = shipped_model if shipped_model is not None and cfg.refit else net
    metrics = {"validation": val, "test": test,
               "params": {"prior_lambda": prior_lambda, "blend_weights": weights,
                          "refit_evaluated": refit_evaluated,
                          "refit_continues": (cfg.refit and shipped_model is not None
                                              and _continued(net)),
                          "blend_partner": partner, "best_epoch": net.result.best_epoch,
                          "top_k": cfg.top_k, "objective": GATE_METRIC}}
    t4 = time.perf_counter()
    # the winner as published: the anchors' lists are read, not scored again (issue 15)
    winner = ({MODEL: served_model, blend_name: served_blend}.get(choice)
              or best[choice].served)
    metrics["serving_policy"] = shop_policy(
        winner, split, cfg.query_seed, PolicyConfig(top_k=cfg.top_k, seed=cfg.seed))
    timings["policy"] = time.perf_counter() - t4
    evaluation = None
    if keep_candidates:
        scorers = {f: best[f].scorer for f in best} | {MODEL: model, blend_name: blend}
        served = {f: best[f].served for f in best} | {MODEL: served_model,
                                                      blend_name: served_blend}
        evaluation = Evaluation(split, queries, pop, scorers, partner, served)
    return Fitted(scorer=scorer, index=out_index, attrs=out_attrs, baskets=out_baskets,
                  published=published, choice=choice, gate=decision, metrics=metrics,
                  split=split.info, model=shipped_model, trained=trained,
                  trained_index=index, history=history, timings=timings,
                  evaluation=evaluation)
