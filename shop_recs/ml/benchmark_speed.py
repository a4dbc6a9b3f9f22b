"""Epoch speed benchmark: the bundle model per device, measured in one run.

    python -m shop_recs.ml.benchmark_speed --orders FILE [--format online_retail]
        [--devices cpu:2 cpu cuda] [--epochs 3] [--json OUT]
    python -m shop_recs.ml.benchmark_speed --synthetic 1mx20m \
        --devices cuda/sampled cuda/full cpu:2/sampled --steps 8 --cuda-steps 50 --warmup 3 \
        --json OUT    # issue 15's device run: about 100 s (the shop is built in 20-40 s)

``--synthetic PRODUCTSxLINES`` measures training throughput at catalogue scale instead
(``shop_recs.ml.throughput``): a synthetic shop built in process, the real model and loss, a
fixed number of steps per entry (``DEVICE[:THREADS][/sampled|/full]``; the loss defaults to
what the scorer picks for that catalogue size), epoch seconds extrapolated from them.

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
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from shop_recs.ml.evaluate import temporal_split
from shop_recs.ml.model import BundleModelConfig
from shop_recs.ml.orders import FORMATS, OrderFileError, read_orders
from shop_recs.ml.sampled import NEGATIVES, use_sampled_softmax
from shop_recs.ml.scorer import BundleScorer
from shop_recs.ml import throughput
from shop_recs.ml.train import TrainConfig
from shop_recs.ml.types import baskets_from_frame


def parse_device(text: str) -> tuple[str, int | None, str | None]:
    """``cpu``, ``cpu:N`` or ``cuda``, optionally ``/sampled`` or ``/full`` (synthetic runs)."""
    spec, _, loss = text.partition("/")
    name, _, threads = spec.partition(":")
    if (name not in ("cpu", "cuda") or (threads and not threads.isdigit())
            or loss not in ("", "sampled", "full")):
        raise argparse.ArgumentTypeError(
            f"device must be cpu, cpu:N or cuda (optionally /sampled or /full), not {text!r}")
    return name, int(threads) if threads else None, loss or None


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
    p.add_argument("--orders", action="append", metavar="PATH")
    p.add_argument("--synthetic", metavar="PRODUCTSxLINES",
                   help="throughput on a synthetic shop, e.g. 1mx20m (instead of --orders)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per entry (--synthetic)")
    p.add_argument("--cuda-steps", type=int, help="timed steps of cuda entries (default --steps)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (--synthetic)")
    p.add_argument("--negatives", type=int, default=NEGATIVES,
                   help="shared negatives per batch of the sampled loss (--synthetic)")
    p.add_argument("--format", default="generic", choices=FORMATS)
    p.add_argument("--devices", nargs="+", type=parse_device, default=[("cpu", None, None)],
                   help="cpu, cpu:N or cuda (default: cpu)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    if (args.orders is None) == (args.synthetic is None):
        p.error("give either --orders or --synthetic")
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is warm-up)")
    if args.steps < 1 or args.warmup < 0 or args.negatives < 1:
        p.error("--steps and --negatives must be at least 1, --warmup at least 0")
    if any(d == "cuda" for d, _, _ in args.devices) and not torch.cuda.is_available():
        print("error: cuda was asked for but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.synthetic:
        try:
            size = throughput.parse_size(args.synthetic)
        except ValueError as exc:
            p.error(str(exc))
        return synthetic(size, args)
    try:
        frame = read_orders(args.orders, args.format)
        split = temporal_split(*baskets_from_frame(frame))
    except (OrderFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = []
    for device, threads, _ in args.devices:
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


def synthetic(size: tuple[int, int], args) -> int:
    """Fixed-step throughput of every entry on one synthetic shop; JSON to stdout/--json
    (the file is rewritten after each entry, so a run cut short keeps what it measured)."""
    t0 = time.perf_counter()
    cuda_steps = args.cuda_steps or args.steps
    need = (args.warmup + max(args.steps, cuda_steps)) * args.batch_size
    built = throughput.build(*size, n_examples=need)
    info = built["info"]
    print(f"shop: {info['products']:,} products, {info['lines']:,} lines, "
          f"{info['training_examples']:,} examples, prior {info['prior_nnz']:,} entries, "
          f"built in {info['build_s']} s", flush=True)
    default_loss = "sampled" if use_sampled_softmax(size[0]) else "full"
    out = {"synthetic": info, "torch": torch.__version__, "cpu_count": os.cpu_count(),
           "results": []}
    rows = out["results"]
    for device, threads, loss in args.devices:
        steps = cuda_steps if device == "cuda" else args.steps
        r = throughput.measure_steps(built, device, threads, loss or default_loss, steps,
                                     args.warmup, args.batch_size, args.negatives)
        rows.append(r)
        label = f"{device}:{r['threads']}" if r["threads"] else f"{device} ({r.get('gpu')})"
        print(f"{label + '/' + r['loss']:<40} {r['examples_per_s']:10.0f} ex/s  "
              f"{r['s_per_step']:.4f} s/step  epoch ~{r['epoch_s_extrapolated']:.0f} s "
              f"(extrapolated)  peak rss {r['peak_rss_mb']:.0f} MB"
              + (f"  gpu {r['peak_gpu_mem_mb']:.0f} MB" if "peak_gpu_mem_mb" in r else ""),
              flush=True)
        out["ratios_vs_first"] = [x["examples_per_s"] / rows[0]["examples_per_s"] for x in rows]
        out["cuda_over_cpu"] = cuda_ratios(rows)
        out["wall_s"] = round(time.perf_counter() - t0, 1)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
    for name, ratio in out["cuda_over_cpu"].items():
        print(f"cuda / cpu examples/s, {name} loss: {ratio:.1f}x")
    if args.json:
        print(f"wrote {args.json} ({out['wall_s']} s)")
    else:
        print(json.dumps(out, indent=1))
    return 0


def cuda_ratios(rows: list[dict]) -> dict[str, float]:
    """Per loss: examples/s of the first cuda entry over the first cpu entry."""
    out = {}
    for loss in dict.fromkeys(r["loss"] for r in rows):
        first = {}
        for r in rows:
            if r["loss"] == loss:
                first.setdefault(r["device"], r)
        if "cuda" in first and "cpu" in first:
            out[loss] = first["cuda"]["examples_per_s"] / first["cpu"]["examples_per_s"]
    return out


if __name__ == "__main__":
    sys.exit(main())
