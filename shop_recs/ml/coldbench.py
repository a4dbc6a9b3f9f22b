"""The cold-start benchmark (issue 17): the protocol of ``shop_recs.ml.coldstart`` per seed,
the table over seeds, and each row's ratio to the best baseline (the goal's 1.5x line).

Per seed (:func:`cold_seed`): a new masked set and a new model seed; the nets (the model, a
content-trained one, and one that also reads a text encoder's vectors), every baseline, the
ceiling, the model's content options and the variants of ``shop_recs.ml.coldvariants``, each
tuned on the validation cold queries. ``cfg`` is a ``shop_recs.ml.runner.BenchConfig`` (not
imported: runner imports this module). :func:`run_cold` runs ``cfg.seeds`` of them (what
``python -m shop_recs.ml.benchmark --cold`` calls); ``benchmarks/cold_device.py`` runs them one
by one under a time budget::

    out = run_cold(frame, BenchConfig(seeds=3), log=print)
    out["cold_results"], out["cold_goal"]
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable

import numpy as np

from shop_recs.ml.coldstart import KINDS, ColdConfig, cold_split, name_similarity, tune_and_score
from shop_recs.ml.coldvariants import variant_options
from shop_recs.ml.protocol import MODEL, OnCatalogue
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.text import LazyEncoder, embed_products
from shop_recs.ml.types import baskets_from_frame

logger = logging.getLogger("shop_recs.ml.coldbench")

__all__ = ["COLD_FIGURES", "CONTENT", "CEILING", "cold_seed", "cold_nets", "cold_table",
           "cold_goal", "cold_report", "run_cold", "with_text"]

COLD_FIGURES = ("cold_anchor_ndcg10", "cold_anchor_recall10", "cold_target_ndcg10",
                "cold_target_hr10")
CONTENT = f"{MODEL} (content for new products)"
CEILING = "ceiling: EASE knowing the new products' orders"
BASELINES = ("popularity", "category_bestsellers", "borrowed_lists")


def with_text(attrs, ccfg: ColdConfig, log, encoder=None) -> tuple:
    """``attrs`` with the text encoder's vectors (None when no encoder is set) and the seconds
    embedding took (zero when every text came from the cache). ``encoder``: the one to use
    (default: ``ccfg.text_encoder`` loaded on the first text the cache lacks)."""
    if not ccfg.text_encoder:
        return None, 0.0
    t0 = time.perf_counter()
    encoder = encoder or LazyEncoder(ccfg.text_encoder)
    vecs = embed_products(list(attrs.names), None, encoder, ccfg.text_cache or None)
    secs = time.perf_counter() - t0
    log(f"text encoder {ccfg.text_encoder}: {vecs.shape[0]} products x {vecs.shape[1]} in "
        f"{secs:.1f} s")
    return dataclasses.replace(attrs, text_vectors=vecs), secs


def _content_options(net, unseen, borrow, split, ccfg: ColdConfig) -> list:
    """The ways one net can score products without orders, each tuned on validation."""
    opts = [(f"bias quantile {q:g}" + (", prior borrowed from 5 similar" if b else ""),
             lambda q=q, b=b: OnCatalogue(net.for_new_products(
                 unseen, q, borrow if b else None), split.items))
            for q in ccfg.bias_quantiles for b in (False, True)]
    opts += [(f"distilled, ridge {a:g}" + (", prior borrowed from 5 similar" if b else ""),
              lambda a=a, b=b: OnCatalogue(net.for_new_products(
                  unseen, 0.5, borrow if b else None, distil=a), split.items))
             for a in ccfg.distil_penalties for b in (False, True)]
    return opts


def _net_cost(net) -> dict:
    """Training time, epochs, speed and weight size of one fitted net (the content tower's
    cost is the difference between nets)."""
    hist = net.result.history
    state = net.model.state_dict()
    return {"train_s": net.result.train_s, "epochs": len(hist),
            "best_epoch": net.result.best_epoch, "stopped": net.result.stopped,
            "examples_per_s": float(np.mean([h.examples_per_s for h in hist])) if hist else 0.0,
            "state_mb": sum(t.numel() * t.element_size() for t in state.values()) / 2 ** 20,
            "parameters": sum(p.numel() for p in net.model.parameters())}


def cold_nets(cfg: BenchConfig, text: bool) -> int:
    """How many nets :func:`cold_seed` trains (for a caller that splits a time budget)."""
    return 1 + (cfg.cold.content_dropout > 0) + bool(text)


def cold_seed(data: tuple, text_attrs, cfg: BenchConfig, seed: int,
              progress: Callable | None = None, log: Callable[[str], None] = logger.info,
              train_budget_s: float | None = None) -> dict:
    """One seed of the cold-start protocol: a new masked set and a new model seed. The model
    is trained over every product on the masked training orders; its content variants score
    products without orders from their name, category and price alone
    (``BundleScorer.for_new_products``: bias quantile, borrowed prior rows or distilled id
    rows, tuned on validation like the baselines' settings). With ``text_attrs`` a third net
    also reads the pretrained encoder's vectors. ``train_budget_s``: seconds per net (default:
    the protocol's). ``data`` = (baskets, index, attrs)."""
    baskets, index, attrs = data
    p = cfg.protocol
    ccfg = dataclasses.replace(cfg.cold, seed=cfg.cold.seed + seed)
    split = cold_split(baskets, index, attrs, p.val_frac, p.test_frac, p.min_orders, ccfg)
    tcfg = dataclasses.replace(p.train, seed=p.seed + seed)
    if train_budget_s is not None:
        tcfg = dataclasses.replace(tcfg, time_budget_s=float(train_budget_s))

    def train(model_cfg, attrs=attrs):
        return BundleScorer(model_cfg, tcfg, prior_lambda=p.prior_lambda or 10.0,
                            max_prior_items=p.max_prior_items).fit(
            split.train_full, attrs, val=split.val_full.select(split.val_full.sizes >= 2),
            callback=progress(seed) if progress else None)

    t0 = time.perf_counter()
    nets = {MODEL: train(dataclasses.replace(p.model))}
    train_s = time.perf_counter() - t0
    d = ccfg.content_dropout
    content = dataclasses.replace(p.model, id_dropout=d, out_id_dropout=d)
    trained = f"{MODEL} (content-trained, id dropout {d:g})"
    encoded = f"{MODEL} (content-trained + text encoder)"
    if d > 0:
        nets[trained] = train(content)
    if text_attrs is not None:
        nets[encoded] = train(content, attrs=text_attrs)
    all_train_s = time.perf_counter() - t0
    bought = split.train_full.item_counts() > 0
    unseen = np.flatnonzero(~bought)
    nbrs, sims = name_similarity(attrs, unseen, np.flatnonzero(bought), 5)
    borrow = (nbrs, np.maximum(sims, 1e-6) / np.maximum(sims, 1e-6).sum(1, keepdims=True))
    extra = {MODEL: [("as trained", lambda: OnCatalogue(nets[MODEL], split.items))]}
    for name, net in nets.items():
        extra[CONTENT if name == MODEL else name] = _content_options(
            net, unseen, borrow, split, ccfg)
    t1 = time.perf_counter()
    chosen: dict = {}
    rows = tune_and_score(split, ccfg, extra, chosen=chosen)
    if ccfg.variants:
        models = {k: v for k, v in (("content-trained model", trained),
                                    ("content-trained model + text encoder", encoded))
                  if v in nets}
        vecs = (None if text_attrs is None else
                np.asarray(text_attrs.text_vectors)[split.items])
        rows.update(tune_and_score(split, ccfg, variant_options(split, ccfg, chosen, models,
                                                                 vecs), baselines=False))
    log(f"cold seed {ccfg.seed}: {split.info}; " + "; ".join(
        f"{name} {r['masked'].get('cold_anchor_ndcg10', 0):.4f}/"
        f"{r['masked'].get('cold_target_ndcg10', 0):.4f}" for name, r in rows.items()))
    return {"seed": ccfg.seed, "split": split.info, "rows": rows, "train_s": train_s,
            "all_train_s": all_train_s, "evaluate_s": time.perf_counter() - t1,
            "epochs": {name: len(net.result.history) for name, net in nets.items()},
            "cost": {name: _net_cost(net) for name, net in nets.items()}}


def cold_table(per_seed: list[dict]) -> list[dict]:
    """Mean ± sd over seeds of every row and kind."""
    results = []
    for name in per_seed[0]["rows"]:
        for kind in KINDS:
            runs = [s["rows"][name][kind] for s in per_seed if name in s["rows"]]
            row = {"model": name, "kind": kind, "seeds": len(runs),
                   "queries": [r["queries"] for r in runs],
                   "params": [s["rows"][name]["params"] for s in per_seed if name in s["rows"]]}
            for key in COLD_FIGURES:
                vals = [r[key] for r in runs if key in r]
                if vals:
                    row[key], row[key + "_std"] = float(np.mean(vals)), float(np.std(vals))
            results.append(row)
    return results


def cold_goal(results: list[dict], goal: float = 1.5) -> dict:
    """Against issue 17's goal, per kind and task: the best baseline, the line (``goal`` x
    it), the ceiling and every other row as a ratio to the best baseline. A ceiling below the
    line says no content path can reach it on this shop."""
    out = {}
    for kind in KINDS:
        for task in ("cold_anchor_ndcg10", "cold_target_ndcg10"):
            rows = {r["model"]: r.get(task) for r in results if r["kind"] == kind}
            base = {m: v for m, v in rows.items() if m in BASELINES and v is not None}
            if not base:
                continue
            best = max(base, key=base.get)
            ref = base[best]
            out[f"{kind} {task}"] = {
                "best_baseline": best, "best_baseline_value": ref, "line": goal * ref,
                "ceiling_ratio": (rows.get(CEILING) or 0.0) / ref if ref else None,
                "ratios": {m: (v / ref if ref else None) for m, v in rows.items()
                           if v is not None and m not in BASELINES}}
    return out


def run_cold(frame, cfg: BenchConfig, progress: Callable | None = None,
             log: Callable[[str], None] = logger.info) -> dict:
    """The cold-start protocol (``shop_recs.ml.coldstart``) for ``cfg.seeds`` seeds
    (:func:`cold_seed`), with the table over seeds and the goal's ratios."""
    data = baskets_from_frame(frame)
    text, embed_s = with_text(data[2], cfg.cold, log)
    per_seed = [cold_seed(data, text, cfg, seed, progress, log)
                for seed in range(cfg.seeds)]
    return cold_report(per_seed, cfg, embed_s)


def cold_report(per_seed: list[dict], cfg: BenchConfig, embed_s: float) -> dict:
    """The JSON the benchmark writes: the table, the goal's ratios, every seed's detail."""
    results = cold_table(per_seed)
    return {"cold_results": results, "cold_goal": cold_goal(results),
            "cold_per_seed": per_seed,
            "cold_config": dataclasses.asdict(cfg.cold),
            "cold_epochs": [s["epochs"] for s in per_seed],
            "cold_train_s": [s["train_s"] for s in per_seed],
            "cold_cost": [s["cost"] for s in per_seed], "text_embed_s": embed_s}
