"""The benchmark's work: the shop's protocol once per seed, then research rows beside it.

Every figure but the research rows comes from ``shop_recs.ml.protocol.fit_shop``, the function
a training run calls, with the same settings: the ``shipped`` row is what the gate picked on
validation, scored on test as trained on the training split; ``shipped_refit`` is that recipe
refit on train + validation. Baseline rows show each family with the one setting it would
publish (tuned on validation); model rows the learned model and its blend (mean ± sd over
seeds). Every row is scored as served (``shop_recs.ml.served``): the product page shows a
product's published top-K list, the cart merges the lists of its items.

``run_cold`` runs the cold-start protocol (``shop_recs.ml.coldstart``): masked and truly new
products, their baselines, the ceiling, the model with and without content-only scoring, the
variants of ``shop_recs.ml.coldvariants``, and each row's ratio to the best baseline.

Research rows (``role="research"``, ``use_history``) are never shipped: a model that reads
customers' earlier orders, the history-aware baseline (``shop_recs.ml.repeat``) and their blend.
Published lists are per product and cannot depend on who is looking.

    out = run_benchmark(frame, BenchConfig(seeds=3), progress=lambda seed: callback, log=print)
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from shop_recs.ml.blend import BlendScorer, tune_weight
from shop_recs.ml.bundle_search import BundleSearch
from shop_recs.ml.bundles import BundleRules, bundle_precision
from shop_recs.ml.coldstart import ColdConfig
from shop_recs.ml.evaluate import coverage_and_popularity, customer_histories, evaluate
from shop_recs.ml.protocol import (MODEL, TASKS, ProtocolConfig, configure,
                                   fit_shop, get_default_config)
from shop_recs.ml.repeat import RepeatBoost, tune_repeat
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.train import resolve_device
from shop_recs.ml.types import baskets_from_frame

logger = logging.getLogger("shop_recs.ml.runner")

FIGURES = ("complete_hr10", "complete_ndcg10", "complete_mrr", "anchor_recall10",
           "anchor_ndcg10", "coverage10", "bundle_precision", "train_s")


@dataclass
class BenchConfig:
    seeds: int = 3
    protocol: ProtocolConfig = field(default_factory=get_default_config)
    use_history: bool = False  # research rows: a model that reads customers' earlier orders
    bundle_size: int = 3
    cold: ColdConfig = field(default_factory=ColdConfig)  # the cold-start protocol (run_cold)


def peak_mem_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _bundle_precision(scorer, ev, size: int, chunk: int = 256) -> float:
    queries = ev.queries[("test", "anchor")]
    anchors = np.asarray([int(c[0]) for c in queries.contexts])
    bundles = {}
    rules = BundleRules(sizes=(size,), per_anchor=1)
    uniq = np.unique(anchors)
    search = BundleSearch(ev.split.index, ev.split.attrs, rules)  # the catalogue's part, once
    for s in range(0, len(uniq), chunk):  # bounded memory: beams of a few anchors at a time
        bundles.update(search.search(scorer, uniq[s:s + chunk]))
    baskets = [np.concatenate([c, t]) for c, t in zip(queries.contexts, queries.targets)]
    return bundle_precision(bundles, baskets, anchors, size)


def _coverage(name, ev) -> float:
    """Share of the catalogue on the served top 10 of either test task."""
    tops = [evaluate(ev.served[name], ev.queries[("test", t)], ev.popularity)["topk"]
            for t in TASKS]
    return coverage_and_popularity(tops, ev.popularity)[0]


def run_benchmark(frame, cfg: BenchConfig, progress: Callable | None = None,
                  log: Callable[[str], None] = logger.info) -> dict:
    baskets, index, attrs = baskets_from_frame(frame)
    seeds, fits = [], []
    for seed in range(cfg.seeds):
        # the benchmark publishes nothing: the refit on every order is skipped
        pcfg = configure(cfg.protocol, {"seed": cfg.protocol.seed + seed, "refit": False})
        t0 = time.perf_counter()
        fitted = fit_shop(baskets, index, attrs, pcfg, keep_candidates=True,
                          progress=(lambda stage, r, s=seed: progress(s)(r)) if progress else None)
        ev = fitted.evaluation
        if seed == 0:
            log(f"split: {fitted.split}")
        test, val = fitted.metrics["test"], fitted.metrics["validation"]
        blend = f"{MODEL}+{ev.partner}"
        run = {name: dict(test[name]) for name in (MODEL, blend, "shipped", "shipped_refit")
               if name in test}
        for name in (MODEL, blend):
            run[name].update(val=val[name], coverage10=_coverage(name, ev),
                             bundle_precision=_bundle_precision(ev.scorers[name], ev,
                                                                cfg.bundle_size),
                             train_s=fitted.timings["model"], epochs=len(fitted.history),
                             best_epoch=fitted.metrics["params"]["best_epoch"])
        for name in ("shipped", "shipped_refit"):
            if name in run:
                src = run.get(fitted.choice) or {}
                run[name]["bundle_precision"] = src.get("bundle_precision", _bundle_precision(
                    ev.scorers[fitted.choice], ev, cfg.bundle_size))
                run[name]["train_s"] = time.perf_counter() - t0
        seeds.append({"seed": pcfg.seed, "choice": fitted.choice, "gate": fitted.gate,
                      "rows": run, "timings": fitted.timings})
        fits.append(fitted)
        log(f"seed {pcfg.seed}: gate {fitted.gate['reason']}")
    first = fits[0]
    results = _baseline_rows(first, cfg)
    names = [MODEL, f"{MODEL}+{first.evaluation.partner}"]
    for name in dict.fromkeys(names + [n for s in seeds for n in s["rows"] if n not in names]):
        runs = [s["rows"][name] for s in seeds if name in s["rows"]]
        role = "shipped" if name.startswith("shipped") else "model"
        row = _aggregate(name, role, runs)
        if role == "shipped":
            row["choice"] = [s["choice"] for s in seeds]
        results.append(row)
    if cfg.use_history:
        results.extend(_research_rows(first.evaluation, cfg, progress, log))
    return {"split": first.split, "device": str(resolve_device(cfg.protocol.train.device)),
            "config": _jsonable(cfg.protocol.to_dict()), "results": results,
            "gate": [{"seed": s["seed"], **s["gate"]} for s in seeds],
            "per_seed": [{k: v for k, v in s.items() if k != "gate"} for s in seeds],
            "peak_mem_mb": peak_mem_mb()}


def _baseline_rows(fitted, cfg: BenchConfig) -> list[dict]:
    ev, rows = fitted.evaluation, []
    for family, scorer in ev.scorers.items():
        if family not in fitted.metrics["test"] or "params" not in fitted.metrics["test"][family]:
            continue
        row = {"model": family, "role": "baseline", **fitted.metrics["test"][family],
               "val": fitted.metrics["validation"][family],
               "coverage10": _coverage(family, ev),
               "bundle_precision": _bundle_precision(scorer, ev, cfg.bundle_size)}
        rows.append(row)
    return rows


def _aggregate(name: str, role: str, runs: list[dict]) -> dict:
    row = {"model": name, "role": role, "seeds": len(runs)}
    for key in FIGURES:
        vals = [r[key] for r in runs if isinstance(r.get(key), float | int)]
        if vals:
            row[key], row[key + "_std"] = float(np.mean(vals)), float(np.std(vals))
    if "val" in runs[0]:
        row["val"] = {k: float(np.mean([r["val"][k] for r in runs])) for k in runs[0]["val"]}
    for key in ("weights", "epochs", "best_epoch"):
        if key in runs[0]:
            row[key] = [r[key] for r in runs]
    return row


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def _research_rows(ev, cfg: BenchConfig, progress, log) -> list[dict]:
    """History-reading rows (never shipped): the repeat baseline, a history model, a blend."""
    split, pop = ev.split, ev.popularity
    hist = {p: customer_histories(getattr(split, p), split.all_baskets) for p in ("val", "test")}
    queries = {k: dataclasses.replace(q, histories=hist[k[0]]) for k, q in ev.queries.items()}
    partner = ev.scorers[ev.partner]
    repeat, repeat_test, params = {}, {}, {}
    # every figure below is scored chunk by chunk: never queries x catalogue at once (#15)
    for t, metric in TASKS.items():
        (w, hl), _ = tune_repeat(partner, queries[("val", t)], pop, metric)
        repeat[t] = RepeatBoost(partner, w, hl)
        repeat_test[t] = evaluate(repeat[t], queries[("test", t)], pop)
        params[t] = f"{ev.partner}, weight={w:g}, half_life={hl:g}"
    rows = [{"model": f"repeat_boost+{ev.partner}", "role": "research", "uses_history": True,
             **_figures(repeat_test), "params": params}]
    model_runs, blend_runs = [], []
    p = cfg.protocol
    for seed in range(cfg.seeds):
        t0 = time.perf_counter()
        tcfg = dataclasses.replace(p.train, seed=p.seed + seed)
        model = BundleScorer(dataclasses.replace(p.model, use_history=True), tcfg,
                             prior_lambda=p.prior_lambda or getattr(ev.scorers.get("ease"), "lam",
                                                                    10.0),
                             max_prior_items=p.max_prior_items).fit(
            split.train, split.attrs, val=split.val, history_pool=split.all_baskets,
            callback=progress(seed) if progress else None)
        train_s = time.perf_counter() - t0
        mtest, btest, weights = {}, {}, {}
        for t, metric in TASKS.items():
            q = {part: queries[(part, t)] for part in ("val", "test")}
            mtest[t] = evaluate(model, q["test"], pop)
            w, _, _ = tune_weight(repeat[t], model, q["val"], pop, metric, p.blend_weights)
            weights[t] = BlendScorer.pair_weights(w)
            btest[t] = evaluate(BlendScorer([repeat[t], model], weights[t], "blend"), q["test"],
                                pop)
        model_runs.append({**_figures(mtest), "train_s": train_s})
        blend_runs.append({**_figures(btest), "train_s": train_s, "weights": weights})
        log(f"research seed {seed}: history model {_short(mtest)}, blend {_short(btest)}")
    for name, runs in ((f"{MODEL} (history)", model_runs),
                       (f"{MODEL}+repeat_boost (history)", blend_runs)):
        rows.append({**_aggregate(name, "research", runs), "uses_history": True})
    return rows


def _figures(res: dict[str, dict]) -> dict:
    return {"complete_hr10": res["complete"]["hr"], "complete_ndcg10": res["complete"]["ndcg"],
            "complete_mrr": res["complete"]["mrr"], "anchor_recall10": res["anchor"]["recall"],
            "anchor_ndcg10": res["anchor"]["multi_ndcg"]}


def _short(res: dict[str, dict]) -> str:
    return f"complete {res['complete']['ndcg']:.4f} anchor {res['anchor']['multi_ndcg']:.4f}"


# the cold-start protocol's benchmark lives in shop_recs.ml.coldbench (imported from here too)
from shop_recs.ml.coldbench import COLD_FIGURES, run_cold  # noqa: E402,F401
