"""Benchmark CLI: what a shop would ship for an order file, beside the baselines.

    python -m shop_recs.ml.benchmark --orders FILE [--orders FILE2] [--format online_retail]
        [--device auto|cpu|cuda] [--seeds 3] [--time-budget S] [--setting KEY=VALUE ...]
        [--history] [--cold off|on|only] [--json OUT]

Steps: read and clean the orders (``shop_recs.ml.orders``), then per seed the protocol a
training run uses (``shop_recs.ml.protocol``): tune every baseline on validation, train the
model, cross-fit its blend weight, gate with a paired bootstrap, score the winner on test as
trained (``shipped``) and refit on train + validation (``shipped_refit``). ``--setting`` takes
the SHOP_RECS learning keys (``EPOCHS=20``, ``EASE_LAMBDAS=[10,100]``, ...), so the figures are
those of a shop with those settings. ``--history`` adds research rows (models that read
customers' earlier orders; never shipped); ``--cold`` the cold-start table (products nobody
has bought: masked and truly new). Every figure is of what is served: published per-product
lists, merged for a cart the way the widget merges them. The ``runner`` module does the work;
this module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from shop_recs.ml.coldstart import ColdConfig
from shop_recs.ml.orders import FORMATS, CleaningReport, OrderFileError, read_orders
from shop_recs.ml.protocol import SETTINGS, ConfigError, configure, get_default_config
from shop_recs.ml.runner import COLD_FIGURES, BenchConfig, peak_mem_mb, run_benchmark, run_cold
from shop_recs.ml.text import TextEncoderError
from shop_recs.ml.train import EpochReport
from shop_recs.ml.types import DataError

COLUMNS = ("complete_hr10", "complete_ndcg10", "complete_mrr", "anchor_recall10",
           "anchor_ndcg10", "coverage10", "bundle_precision", "train_s")


def _progress(seed: int):
    def show(r: EpochReport) -> None:
        val = "" if r.val_metric is None else f" val_mean_ndcg10={r.val_metric:.4f}"
        end = "\n" if r.kind == "epoch" else "\r"
        print(f"  seed {seed} epoch {r.epoch:>2} {100 * r.fraction:5.1f}% "
              f"loss={r.loss:.4f} {r.examples_per_s:7.0f} ex/s{val}   ", end=end, flush=True)
    return show


def format_table(results: list[dict]) -> str:
    head = f"{'model':<40} {'role':<8} " + " ".join(f"{c:>16}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in results:
        cells = []
        for c in COLUMNS:
            v, sd = r.get(c), r.get(c + "_std")
            if v is None:
                cells.append(f"{'-':>16}")
            elif c == "train_s":
                cells.append(f"{v:>16.1f}")
            elif sd is not None:
                cells.append(f"{f'{v:.4f}±{sd:.4f}':>16}")
            else:
                cells.append(f"{v:>16.4f}")
        lines.append(f"{r['model'][:40]:<40} {r['role']:<8} " + " ".join(cells))
        if r["role"] == "shipped":
            lines[-1] += f"  ({', '.join(dict.fromkeys(r.get('choice', [])))})"
    return "\n".join(lines)


def format_cold_table(results: list[dict]) -> str:
    head = f"{'cold start':<40} {'kind':<7} " + " ".join(f"{c:>22}" for c in COLD_FIGURES)
    lines = [head, "-" * len(head)]
    for r in results:
        cells = [f"{r[c]:.4f}±{r[c + '_std']:.4f}".rjust(22) if c in r else "-".rjust(22)
                 for c in COLD_FIGURES]
        lines.append(f"{r['model'][:40]:<40} {r['kind']:<7} " + " ".join(cells))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m shop_recs.ml.benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", action="append", required=True, metavar="PATH",
                   help="order-line CSV (gzip ok); repeat for several files, oldest first")
    p.add_argument("--format", default="generic", choices=FORMATS)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seeds", type=int, default=3, help="seeds of the learned model (mean ± std)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds of training per model fit (default: TIME_BUDGET_S, "
                        f"{get_default_config().train.time_budget_s:g})")
    p.add_argument("--epochs", type=int, default=None, help="default: EPOCHS")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                   help="a SHOP_RECS learning setting, VALUE as JSON (" + ", ".join(SETTINGS)
                        + ")")
    p.add_argument("--history", action="store_true",
                   help="add research rows: a model reading customers' earlier orders")
    p.add_argument("--no-history", action="store_true", help=argparse.SUPPRESS)  # the default
    p.add_argument("--cold", default="off", choices=("off", "on", "only"),
                   help="the cold-start protocol (masked and truly new products): beside the "
                        "warm table, or alone")
    p.add_argument("--text-encoder", default="", metavar="NAME_OR_FOLDER",
                   help="--cold: also train a content model reading this sentence encoder's "
                        'vectors of the names (needs pip install "shop-recs[text]")')
    p.add_argument("--text-cache", default="", metavar="DIR",
                   help="cache the encoder's vectors here (by a hash of model name and text)")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _overrides(args) -> dict:
    """Protocol overrides from --setting KEY=VALUE and the shorthand options."""
    out = {}
    for item in args.setting:
        key, sep, text = item.partition("=")
        if not sep or key not in SETTINGS:
            raise ConfigError(f"--setting {item!r}: use KEY=VALUE with KEY one of "
                              + ", ".join(SETTINGS))
        try:
            out[SETTINGS[key]] = json.loads(text)
        except json.JSONDecodeError:
            out[SETTINGS[key]] = text  # a bare word such as cpu
    for path, value in (("train.time_budget_s", args.time_budget), ("train.epochs", args.epochs),
                        ("train.threads", args.threads)):
        if value is not None:
            out[path] = value
    out["train.device"] = args.device
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    if args.seeds < 1:
        print("error: --seeds must be at least 1", file=sys.stderr)
        return 2
    try:
        protocol = configure(get_default_config(), _overrides(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = CleaningReport()
    try:
        frame = read_orders(args.orders, args.format, report=report)
    except OrderFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"read {report.read} lines, kept {report.kept}; skipped: "
          + (", ".join(f"{k}={v}" for k, v in sorted(report.skipped.items())) or "none"))
    cfg = BenchConfig(seeds=args.seeds, protocol=protocol, use_history=args.history,
                      cold=ColdConfig(text_encoder=args.text_encoder,
                                      text_cache=args.text_cache))
    try:
        out = ({"results": [], "gate": []} if args.cold == "only" else
               run_benchmark(frame, cfg, progress=_progress, log=print))
        if args.cold != "off":
            out.update(run_cold(frame, cfg, progress=_progress, log=print))
    except TextEncoderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DataError as exc:  # too few orders, no repeated products, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out["dataset"] = ", ".join(Path(p).name for p in args.orders)
    out["cleaning"] = {"read": report.read, "kept": report.kept, "skipped": dict(report.skipped)}
    print()
    if out["results"]:
        print(format_table(out["results"]))
    for g in out["gate"]:
        print(f"gate[seed {g['seed']}]: {g['reason']}")
    if "cold_results" in out:
        print(format_cold_table(out["cold_results"]))
        print(f"cold-start model epochs per seed: {out['cold_epochs']}")
        for name in out["cold_cost"][0]:
            costs = [c[name] for c in out["cold_cost"]]
            print(f"  {name}: train {np.mean([c['train_s'] for c in costs]):.1f} s, "
                  f"{np.mean([c['examples_per_s'] for c in costs]):.0f} ex/s, "
                  f"weights {costs[0]['state_mb']:.1f} MB, {costs[0]['parameters']:,} parameters")
        if args.text_encoder:
            print(f"  text encoder: {out['text_embed_s']:.1f} s to embed the catalogue")
    out.setdefault("peak_mem_mb", peak_mem_mb())
    print(f"peak memory {out['peak_mem_mb']:,.0f} MB on {out.get('device', args.device)}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
