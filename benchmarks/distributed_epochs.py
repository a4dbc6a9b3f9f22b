"""Epoch time of the bundle model in 1 and in N data-parallel processes (issue 15, item 5).

    python -m benchmarks.distributed_epochs --products 5000 --lines 200000 --processes 1,2 \
        --epochs 2 --json /tmp/dist_epochs.json

Trains the protocol's model (no customer histories) on a synthetic shop
(``benchmarks.synthetic_shop``, straight into baskets) once per process count, without
validation, and prints per run the mean epoch time (the epochs as the ranks timed them), the
start-up of the processes (spawn, imports, rendezvous: the run's time not in an epoch), the
last epoch's training loss, and the epoch-time ratio to one process. Figures, never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from benchmarks.synthetic_shop import ShopParams, synthetic_baskets
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.train import TrainConfig


def measure(baskets, processes: int, epochs: int, device: str, seed: int,
            threads: int | None = None) -> dict:
    train_config = TrainConfig(epochs=epochs, time_budget_s=None, patience=epochs, seed=seed,
                               device=device, processes=processes, threads=threads)
    scorer = BundleScorer(BundleModelConfig(n_items=0, use_history=False), train_config)
    t0 = time.perf_counter()

    def progress(report):
        if report.kind == "epoch":
            print(f"  {processes} process(es): epoch {report.epoch} {report.elapsed_s:.1f} s",
                  file=sys.stderr, flush=True)
    scorer.fit(baskets, callback=progress)
    wall = time.perf_counter() - t0
    result = scorer.result
    ends = [0.0] + [h.elapsed_s for h in result.history]
    epoch_s = float(np.mean(np.diff(ends)))
    return {"processes": processes, "threads": threads or "default", "epochs": len(result.history), "epoch_s": round(epoch_s, 2),
            "startup_s": round(result.train_s - ends[-1], 2), "fit_s": round(wall, 2),
            "loss": round(result.history[-1].loss, 4),
            # each rank times its own shard: the run's rate is N times rank 0's
            "examples_per_s": round(processes * float(np.mean([h.examples_per_s
                                                               for h in result.history])))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=5000)
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--processes", default="1,2", help="comma-separated process counts")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per process (default: torch's own for 1 process, "
                         "cores / N for N)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.processes.split(",")]
    baskets, _ = synthetic_baskets(ShopParams(products=args.products, lines=args.lines,
                                              seed=args.seed))
    runs = [measure(baskets, p, args.epochs, args.device, args.seed, args.threads)
            for p in counts]
    base = next((r["epoch_s"] for r in runs if r["processes"] == 1), runs[0]["epoch_s"])
    print(f"{args.products} products, {len(baskets)} orders, {args.lines} lines, "
          f"device {args.device}, {os.cpu_count()} cores")
    print(f"{'processes':>9} {'epoch s':>8} {'ratio':>6} {'startup s':>9} {'ex/s':>7} {'loss':>7}")
    for r in runs:
        r["epoch_ratio_to_1"] = round(r["epoch_s"] / base, 3)
        print(f"{r['processes']:>9} {r['epoch_s']:>8.2f} {r['epoch_ratio_to_1']:>6.2f} "
              f"{r['startup_s']:>9.2f} {r['examples_per_s']:>7} {r['loss']:>7.4f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "runs": runs}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
