"""Fit what a shop will publish: tune baselines, train the model, blend, gate, refit.

This is the production counterpart of ``runner.run_benchmark`` (one seed, no test-time
choices)::

    fitted = fit_shop(baskets, index, attrs, FitConfig(time_budget_s=150), progress=cb)
    fitted.choice, fitted.reason        # what the gate picked on validation, and why
    fitted.metrics["test"]              # held-out figures of every candidate
    fitted.scorer.score([[j]])          # the shipped scorer, refitted on every order

Protocol: temporal split (train / validation / test = the last 10 %), every
hyper-parameter and the blend weight chosen on validation, test only reported. The
gate ranks candidates by validation anchor-NDCG@10 (the product page's task). The
winner is then refitted on all orders with the chosen hyper-parameters (the model for
the number of epochs early stopping picked), so the most recent orders count too.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from shop_recs.ml.baselines import EASE, CoOccurrence, ItemKNN, Popularity, cooccurrence_counts
from shop_recs.ml.blend import BlendScorer, gate, tune_weight
from shop_recs.ml.evaluate import anchor_queries, complete_queries, evaluate, temporal_split
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.train import EpochReport, TrainConfig
from shop_recs.ml.types import Baskets, ItemAttributes, ItemIndex

logger = logging.getLogger("shop_recs.ml.fit")

TASKS = {"complete": "ndcg", "anchor": "multi_ndcg"}
MODEL = "bundle_model"


@dataclass
class FitConfig:
    time_budget_s: float = 150.0  # per model fit (evaluation fit and refit each)
    epochs: int = 40
    device: str = "auto"
    seed: int = 0
    threads: int | None = None
    ease_lambdas: tuple = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
    knn_ks: tuple = (20, 50, 200)
    # Published lists and bundles are per product and never see a visitor's history, so the
    # pipeline trains (and stops early on) what it ships; the benchmark measures both kinds.
    model: BundleModelConfig = field(
        default_factory=lambda: BundleModelConfig(n_items=0, use_history=False))
    refit: bool = True
    # Warm start: a previous (scorer, item index); shared products keep their learned rows.
    init_from: tuple[BundleScorer, ItemIndex] | None = None


@dataclass
class Fitted:
    scorer: object  # the shipped scorer (Scorer protocol), over ``index``
    index: ItemIndex
    attrs: ItemAttributes
    baskets: Baskets  # every order, on ``index`` (for evidence)
    choice: str
    reason: str
    metrics: dict  # {"validation": {name: {task: ndcg}}, "test": {name: {metric: value}}}
    split: dict
    model: BundleScorer | None  # the neural model fitted on all orders, when shipped
    trained: BundleScorer | None = None  # the latest neural model (shipped or not)
    trained_index: ItemIndex | None = None  # its catalogue
    history: list[EpochReport] = field(default_factory=list)
    timings: dict = field(default_factory=dict)


def _baselines(counts: np.ndarray, cfg: FitConfig) -> dict[str, list[tuple[str, Callable]]]:
    return {
        "popularity": [("", lambda c: Popularity())],
        "cooc_lift": [("", lambda c: CoOccurrence("lift", c))],
        "cooc_count": [("", lambda c: CoOccurrence("count", c))],
        "item_knn": [(f"k={k}", lambda c, k=k: ItemKNN(k, 10.0, c)) for k in cfg.knn_ks],
        "ease": [(f"lambda={lam:g}", lambda c, lam=lam: EASE(lam, c)) for lam in cfg.ease_lambdas],
    }


def _catalogue(baskets: Baskets, index: ItemIndex, attrs: ItemAttributes, min_count: int = 2):
    """All orders restricted to products bought at least ``min_count`` times."""
    keep = np.flatnonzero(baskets.item_counts() >= min_count)
    mapping = np.full(baskets.n_items, -1, dtype=np.int64)
    mapping[keep] = np.arange(len(keep))
    return baskets.remap_items(mapping, len(keep)), ItemIndex(index.ids[keep]), attrs.take(keep)


def _warm(cfg: FitConfig, index: ItemIndex) -> dict:
    """``fit`` keyword arguments that start from ``cfg.init_from`` on catalogue ``index``."""
    if cfg.init_from is None:
        return {}
    old, old_index = cfg.init_from
    return {"init_from": old, "old_to_new": index.lookup(old_index.ids)}


def fit_shop(baskets: Baskets, index: ItemIndex, attrs: ItemAttributes, cfg: FitConfig,
             progress: Callable[[str, EpochReport], None] | None = None) -> Fitted:
    """Evaluate every candidate, gate on validation and refit the winner on all orders.

    ``progress(stage, report)`` is called during training; ``stage`` is ``"evaluate"``
    or ``"refit"``. Raises ``ValueError`` when there are too few orders to split.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    split = temporal_split(baskets, index, attrs)
    pop = split.train.item_counts()
    queries = {(part, task): make(getattr(split, part), 0)
               for part in ("val", "test")
               for task, make in (("complete", complete_queries), ("anchor", anchor_queries))}
    counts = cooccurrence_counts(split.train)
    val: dict[str, dict] = {}
    test: dict[str, dict] = {}
    best: dict[str, tuple] = {}  # family -> (label, make, fitted scorer) best on anchor val
    for family, options in _baselines(counts, cfg).items():
        for label, make in options:
            scorer = make(counts).fit(split.train, split.attrs)
            v = {t: evaluate(scorer, queries[("val", t)], pop)[m] for t, m in TASKS.items()}
            if family not in best or v["anchor"] > val[family]["anchor"]:
                best[family], val[family] = (label, make, scorer), v
        test[family] = _test_row(best[family][2], queries, pop)
        test[family]["params"] = best[family][0]
    timings["baselines"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    tcfg = TrainConfig(time_budget_s=cfg.time_budget_s, epochs=cfg.epochs, seed=cfg.seed,
                       device=cfg.device, threads=cfg.threads)
    model = BundleScorer(dataclasses.replace(cfg.model), tcfg).fit(
        split.train, split.attrs, val=split.val, history_pool=split.all_baskets,
        callback=(lambda r: progress("evaluate", r)) if progress else None,
        **_warm(cfg, split.index))
    history = list(model.result.history)
    val[MODEL] = {t: evaluate(model, queries[("val", t)], pop)[m] for t, m in TASKS.items()}
    test[MODEL] = _test_row(model, queries, pop)
    partner = max(best, key=lambda f: val[f]["anchor"])
    weight, _, _ = tune_weight(best[partner][2].score(queries[("val", "anchor")].contexts),
                               model.score(queries[("val", "anchor")].contexts),
                               queries[("val", "anchor")], pop, TASKS["anchor"])
    weights = BlendScorer.pair_weights(weight)
    blend_name = f"{MODEL}+{partner}"
    blend = BlendScorer([best[partner][2], model], weights, blend_name, personal=[False, False])
    val[blend_name] = {t: evaluate(blend, queries[("val", t)], pop)[m] for t, m in TASKS.items()}
    test[blend_name] = _test_row(blend, queries, pop)
    test[blend_name]["weights"] = weights
    timings["model"] = time.perf_counter() - t1

    choice, reason = gate({k: v["anchor"] for k, v in val.items()}, list(best), "anchor-NDCG@10")
    t2 = time.perf_counter()
    all_baskets, all_index, all_attrs = _catalogue(baskets, index, attrs)
    shipped_model = None
    if not cfg.refit:
        scorer, all_baskets, all_index, all_attrs = (
            {MODEL: model, blend_name: blend}.get(choice) or best[choice][2],
            split.all_baskets, split.index, split.attrs)
        shipped_model = model if choice in (MODEL, blend_name) else None
    else:
        all_counts = cooccurrence_counts(all_baskets)
        if choice in (MODEL, blend_name):
            epochs = max(model.result.best_epoch, 1)
            refit_cfg = dataclasses.replace(tcfg, epochs=epochs, patience=epochs + 1)
            shipped_model = BundleScorer(dataclasses.replace(cfg.model), refit_cfg).fit(
                all_baskets, all_attrs,
                callback=(lambda r: progress("refit", r)) if progress else None,
                **_warm(cfg, all_index))
            scorer = shipped_model
            if choice == blend_name:
                base = best[partner][1](all_counts).fit(all_baskets, all_attrs)
                scorer = BlendScorer([base, shipped_model], weights, blend_name,
                                     personal=[False, False])
        else:
            scorer = best[choice][1](all_counts).fit(all_baskets, all_attrs)
    timings["refit"] = time.perf_counter() - t2
    logger.info("gate: %s", reason)
    trained, trained_index = ((shipped_model, all_index) if shipped_model is not None
                              else (model, split.index))
    return Fitted(scorer=scorer, index=all_index, attrs=all_attrs, baskets=all_baskets,
                  choice=choice, reason=reason, metrics={"validation": val, "test": test},
                  split=split.info, model=shipped_model, trained=trained,
                  trained_index=trained_index, history=history, timings=timings)


def _test_row(scorer, queries, pop) -> dict:
    complete = evaluate(scorer, queries[("test", "complete")], pop)
    anchor = evaluate(scorer, queries[("test", "anchor")], pop)
    return {"complete_hr10": complete["hr"], "complete_ndcg10": complete["ndcg"],
            "complete_mrr": complete["mrr"], "anchor_recall10": anchor["recall"],
            "anchor_ndcg10": anchor["multi_ndcg"]}
