"""Epoch speed benchmark: the bundle model per device, measured in one run.

    python -m shop_recs.ml.benchmark_speed --orders FILE [--format online_retail]
        [--devices cpu:2 cpu cuda] [--epochs 3] [--json OUT]

Each device entry is ``cpu``, ``cpu:N`` (N torch threads) or ``cuda``. Every entry trains the
same model (same seed, data, configuration as the benchmark) for ``--epochs`` epochs with
no time budget, validating after each epoch, and reports the training time of an epoch
(validation excluded; the median of epochs 2.., since the first pays for warm-up) plus the
validation curve, which shows that every device learns the same thing. Ratios are
against the first entry. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from shop_recs.ml.evaluate import temporal_split
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.orders import FORMATS, OrderFileError, read_orders
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml.train import TrainConfig
from shop_recs.ml.types import baskets_from_frame


def parse_device(text: str) -> tuple[str, int | None]:
    name, _, threads = text.partition(":")
    if name not in ("cpu", "cuda") or (threads and not threads.isdigit()):
        raise argparse.ArgumentTypeError(f"device must be cpu, cpu:N or cuda, not {text!r}")
    return name, int(threads) if threads else None


DEFAULT_THREADS = torch.get_num_threads()


def measure(split, device: str, threads: int | None, epochs: int, batch_size: int) -> dict:
    """Train ``epochs`` epochs on ``device``; per-epoch seconds and validation metric."""
    torch.set_num_threads(threads or DEFAULT_THREADS)
    n_examples = int((split.train.sizes >= 2).sum())
    cfg = TrainConfig(epochs=epochs, time_budget_s=None, patience=epochs + 1, seed=0,
                      device=device, batch_size=batch_size)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    scorer = BundleScorer(BundleModelConfig(n_items=0), cfg).fit(
        split.train, split.attrs, val=split.val, history_pool=split.all_baskets)
    epoch_s = [n_examples / r.examples_per_s for r in scorer.result.history]
    row = {"device": device, "threads": torch.get_num_threads() if device == "cpu" else None,
           "epochs": len(epoch_s), "examples": n_examples, "batch_size": batch_size,
           "first_epoch_s": epoch_s[0],
           "epoch_s": statistics.median(epoch_s[1:] or epoch_s),
           "loss_curve": [round(r.loss, 4) for r in scorer.result.history],
           "val_curve": [round(r.val_metric, 4) for r in scorer.result.history],
           "fit_s": time.perf_counter() - t0}
    if device == "cuda":
        row["gpu"] = torch.cuda.get_device_name(0)
        row["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shop_recs.ml.benchmark_speed",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", action="append", required=True, metavar="PATH")
    p.add_argument("--format", default="generic", choices=FORMATS)
    p.add_argument("--devices", nargs="+", type=parse_device, default=[("cpu", None)],
                   help="cpu, cpu:N or cuda (default: cpu)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is warm-up)")
    if any(d == "cuda" for d, _ in args.devices) and not torch.cuda.is_available():
        print("error: cuda was asked for but torch sees no CUDA device", file=sys.stderr)
        return 2
    try:
        frame = read_orders(args.orders, args.format)
        split = temporal_split(*baskets_from_frame(frame))
    except (OrderFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = []
    for device, threads in args.devices:
        rows.append(measure(split, device, threads, args.epochs, args.batch_size))
        r = rows[-1]
        label = f"{device} ({r['threads']} threads)" if r["threads"] else f"{device} ({r['gpu']})"
        print(f"{label:<34} epoch {r['epoch_s']:8.2f} s (first {r['first_epoch_s']:.2f} s)  "
              f"ratio {rows[0]['epoch_s'] / r['epoch_s']:6.1f}x  val {r['val_curve']}",
              flush=True)
    out = {"dataset": ", ".join(Path(x).name for x in args.orders), "split": split.info,
           "torch": torch.__version__, "results": rows,
           "ratios_vs_first": [rows[0]["epoch_s"] / r["epoch_s"] for r in rows]}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
