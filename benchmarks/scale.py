"""Scale benchmark: cost and quality of a whole training run against the catalogue size.

    python -m benchmarks.scale --sizes 10k,100k [--lines 10k=500k,100k=5m] [--json FILE]
        [--epochs 40] [--time-budget 150] [--requests 300] [--keep DIR [--reuse]]
        [--deadline S]
    python -m benchmarks.scale --merge 10k.json 1m.json [--json FILE] [--svg FILE]  # earlier runs

For each size: a synthetic shop (``benchmarks.synthetic_shop``, seed 0) is written, imported
into a fresh SQLite database with ``shop_recs_import_orders``' importer, and trained by the
real pipeline (``pipeline.run_training``: extract, baselines, model, gate, refit, bundle
search, publish, fallbacks), each size in its own process so memory figures do not mix.
Reported per stage: wall seconds (the run's own ``timings``) and peak RSS (RSS sampled every
50 ms, the maximum inside the stage's interval). Then the planted-complement recall@10 of the
shipped FBT lists (``synthetic_shop.planted_recall`` against ``.truth.json``) and, unless
``--requests 0``, the FBT API latency ratio to a trivial DRF view on the published data
(``benchmarks.serving``, warm cache, best sellers and long tail). Across sizes: the growth
exponent ``b`` of ``time ~ size^b`` (least squares on log-log) for time and peak memory,
and with ``--svg`` both drawn against size beside a line proportional to the products.

Default order lines per size: 10k -> 500k, 100k -> 5M, 1m -> 20M (the issue's targets).
Prints a table and writes JSON; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess  # nosec B404 # runs this benchmark's own per-size process
import sys
import tempfile
import threading
import time
from types import SimpleNamespace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_LINES = {10_000: 500_000, 100_000: 5_000_000, 1_000_000: 20_000_000}
STAGES = ("generate", "import", "extract", "baselines", "model", "refit_eval", "refit",
          "search", "publish", "fallbacks")


def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * mult)


class RssSampler:
    """Resident memory of this process, sampled every ``every`` seconds in a thread."""

    def __init__(self, every: float = 0.05) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._every = every
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss_mb(self) -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.rss_mb()))
            time.sleep(self._every)

    def peak(self, start: float, end: float) -> float:
        inside = [mb for t, mb in self.samples if start <= t <= end]
        return max(inside) if inside else self.rss_mb()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def one_size(products: int, lines: int, workdir: Path, args) -> dict:
    """Everything for one catalogue size, in this process; returns the figures."""
    from benchmarks.synthetic_shop import ShopParams, planted_recall, write_shop

    rss = RssSampler()
    stages: dict[str, dict] = {}

    def record(name: str, start: float, seconds: float | None = None) -> None:
        end = time.monotonic() if seconds is None else start + seconds
        stages[name] = {"seconds": round(end - start, 2), "peak_rss_mb": round(rss.peak(start,
                                                                                       end))}

    def partial() -> None:  # what is known so far, in case the size is stopped (see _Stop)
        args.json.write_text(json.dumps({"products": products, "lines": lines,
                                         "stages": stages, "partial": True}, indent=1))

    t = time.monotonic()
    shop_file = workdir / f"shop{products}.csv.gz"
    db = workdir / "scale.sqlite3"
    reuse = args.reuse and shop_file.exists() and db.exists()
    if not reuse:
        db.unlink(missing_ok=True)
        write_shop(ShopParams(products, lines, seed=0), shop_file)
        record("generate", t)

    from benchmarks.serving import setup_django

    setup_django(workdir / "scale.sqlite3", workdir / "var")
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    call_command("migrate", verbosity=0)
    from shop_recs.importer import import_orders

    done = workdir / "import.json"
    if reuse:  # the earlier run's import (--reuse): its figures, if it wrote them
        earlier = json.loads(done.read_text()) if done.exists() else {}
        stages.update(earlier.get("stages", {}))
        result = SimpleNamespace(imported=earlier.get("imported"), rate=earlier.get("rate") or 0)
        stages.setdefault("import", {})["reused"] = True
    else:
        t = time.monotonic()
        result = import_orders([shop_file], fmt="generic")
        record("import", t)
        stages["import"]["rate"] = round(result.rate)
        done.write_text(json.dumps({"stages": stages, "imported": result.imported,
                                    "rate": result.rate}))
    partial()
    # the shop's own settings (every grid), only the epochs and time budget as asked
    learning = {**settings.SHOP_RECS, "EPOCHS": args.epochs, "TIME_BUDGET_S": args.time_budget}
    with override_settings(SHOP_RECS=learning):
        from shop_recs import pipeline
        from shop_recs.models import TrainingRun
        from shop_recs.runs import request_training

        run = request_training(trigger="benchmark", config={"device": args.device},
                               broker_check=False, enqueue=False)
        t = time.monotonic()
        try:
            status = pipeline.run_training(run.pk)
        except _Stop as stop:  # --deadline or SIGTERM: say where the run was, then exit
            run = TrainingRun.objects.get(pk=run.pk)
            args.json.write_text(json.dumps({
                "products": products, "lines": lines, "stages": stages, "partial": True,
                "stopped": {"why": str(stop), "run_seconds": round(time.monotonic() - t),
                            "progress": run.progress, "peak_rss_mb": round(max(
                                mb for _, mb in rss.samples))}}, indent=1, default=str))
            raise
        total = time.monotonic() - t
        run = TrainingRun.objects.get(pk=run.pk)
    # the run's stages follow one another in the order its timings were written
    cursor = t
    for name, seconds in (run.timings or {}).items():
        stages[name] = {"seconds": seconds, "peak_rss_mb": round(rss.peak(cursor,
                                                                          cursor + seconds))}
        cursor += seconds
    out = {"products": products, "lines": lines, "status": status, "error": run.error,
           "imported_lines": result.imported, "import_rate": round(result.rate),
           "run_seconds": round(total, 1), "stages": stages, "counts": run.counts,
           "gate": (run.gate or {}).get("reason"), "shipped": run.shipped_model,
           "catalogue": (run.metrics or {}).get("split", {}).get("catalogue")}
    out["planted_recall10"] = shipped_recall(shop_file, planted_recall)
    if args.requests and status == TrainingRun.Status.SUCCEEDED:
        out["api_ratio"] = api_ratio(args)
    rss.stop()
    out["peak_rss_mb"] = round(max(mb for _, mb in rss.samples))
    return out


class _Stop(BaseException):
    """Raised in the size's process at its deadline or on SIGTERM (a BaseException, so the
    pipeline's own error handling lets it through)."""


def _stop_on_signals(deadline: float) -> None:
    def stop(signum, frame):
        raise _Stop("deadline" if signum == signal.SIGALRM else "terminated")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    if deadline:
        signal.alarm(max(1, int(deadline)))


def shipped_recall(shop_file: Path, planted_recall) -> float:
    """Planted-complement recall@10 of the serving run's FBT lists."""
    from shop_recs.models import Recommendation
    from shop_recs.products import get_adapter

    adapter = get_adapter()
    sku = dict(adapter.model._default_manager.values_list("pk", adapter.lookup_field()))
    lists: dict[str, list[str]] = {}
    rows = (Recommendation.objects.filter(run__is_active=True)
            .order_by("product_id", "rank").values_list("product_id", "recommended_id"))
    for anchor, item in rows.iterator(chunk_size=50_000):
        lists.setdefault(str(sku[anchor]), []).append(str(sku[item]))
    groups = json.loads(Path(f"{shop_file}.truth.json").read_text())["groups"]
    return round(planted_recall(lists, groups), 4)


def api_ratio(args) -> dict:
    from benchmarks import serving

    ns = argparse.Namespace(cache="locmem", requests=args.requests, seed=0, headless=True)
    _, rows = serving.run(ns)
    warm = {r["traffic"]: r["api_ratio"] for r in rows if r["mode"] == "warm"}
    return {k: [round(v, 2) for v in vals] for k, vals in warm.items()}


def growth_exponent(sizes: list[int], values: list[float]) -> float | None:
    """Slope of log(value) on log(size) (least squares); None with fewer than two points."""
    pts = [(math.log(s), math.log(v)) for s, v in zip(sizes, values) if v and v > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return round(sum((x - mx) * (y - my) for x, y in pts) / sxx, 2) if sxx else None


def _cell(value) -> str:
    if isinstance(value, dict) and "why" in value:  # a stopped size: when, in which stage
        stage = (value.get("progress") or {}).get("stage", "before training")
        return f"{value['why']} {value['run_seconds']}s in: {stage}"[:22]
    return str(value)


def table(results: list[dict]) -> str:
    names = [s for s in STAGES if any(s in r.get("stages", {}) for r in results)]
    names += sorted({k for r in results for k in r.get("stages", {})} - set(names))
    head = f"{'stage':<12}" + "".join(f"{r['products']:>10,} prod: s / MB" for r in results)
    lines = [head, "-" * len(head)]
    for name in names:
        cells = []
        for r in results:
            st = r.get("stages", {}).get(name)
            cells.append(f"{st['seconds']:>14.1f} / {st['peak_rss_mb']:>6,}"
                         if st and "seconds" in st else
                         f"{'reused' if st else '-':>23}")
        lines.append(f"{name:<12}" + "".join(cells))
    for label, key in (("run total s", "run_seconds"), ("peak RSS MB", "peak_rss_mb"),
                       ("stopped", "stopped"),
                       ("recall@10", "planted_recall10"), ("catalogue", "catalogue"),
                       ("lines", "lines")):
        lines.append(f"{label:<12}" + "".join(f"{_cell(r.get(key, '-')):>23}" for r in results))
    lines.append(f"{'API ratio':<12}" + "".join(
        f"{json.dumps(r.get('api_ratio', '-')):>23}"[:60] for r in results))
    return "\n".join(lines)


def report(results: list[dict], out: Path) -> dict:
    """Print the table and the growth exponents of ``results`` (one dict per size, in size
    order) and write them as JSON to ``out``; returns the growth exponents."""
    ok = [r for r in results if "stages" in r]
    growth = {}
    for name in sorted({k for r in ok for k in r["stages"]}):
        pts = [(r["products"], r["stages"][name]) for r in ok
               if "seconds" in r["stages"].get(name, {})]
        growth[name] = {"time": growth_exponent([p for p, _ in pts],
                                                [s["seconds"] for _, s in pts]),
                        "memory": growth_exponent([p for p, _ in pts],
                                                  [s["peak_rss_mb"] for _, s in pts])}
    done = [r for r in ok if "run_seconds" in r]  # sizes whose run finished
    growth["run_total"] = {"time": growth_exponent([r["products"] for r in done],
                                                   [r["run_seconds"] for r in done]),
                           "memory": growth_exponent([r["products"] for r in done],
                                                     [r["peak_rss_mb"] for r in done])}
    print("\n" + table(ok))
    print("\ngrowth exponents (value ~ products^b), time / memory:")
    for name, g in growth.items():
        print(f"  {name:<12} {g['time']} / {g['memory']}")
    out.write_text(json.dumps({"sizes": results, "growth": growth}, indent=1, default=str))
    print(f"\nwrote {out}")
    return growth


def curve_svg(results: list[dict]) -> str:
    """Time and peak memory against the catalogue size as one SVG: log10 of each figure, the
    sizes as evenly spaced ticks (decades, so both axes are logarithmic), and a line of slope
    one from the smallest size (cost proportional to products) to read the growth against."""
    from shop_recs.charts import line_chart

    done = [r for r in results if "run_seconds" in r]
    if not done:
        return ""
    ticks = [f"{r['products']:,}" for r in done]

    def log(values):
        return [math.log10(v) if v and v > 0 else None for v in values]

    def linear(first):
        return log([first * r["products"] / done[0]["products"] for r in done])

    def stage(name):
        return [r["stages"].get(name, {}).get("seconds") for r in done]

    charts = [
        line_chart([("run total", log([r["run_seconds"] for r in done])),
                    ("import", log(stage("import"))),
                    ("∝ products", linear(done[0]["run_seconds"]))],
                   title="seconds (log10)", x_label="products", x_ticks=ticks),
        line_chart([("peak RSS", log([r["peak_rss_mb"] for r in done])),
                    ("∝ products", linear(done[0]["peak_rss_mb"]))],
                   title="peak RSS, MB (log10)", x_label="products", x_ticks=ticks),
    ]
    inner = "".join(c.replace("<svg", f'<svg x="{440 * i}" y="0"', 1)
                    for i, c in enumerate(charts))
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="860" height="220" '
            f'viewBox="0 0 860 220">{inner}</svg>\n')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k,100k")
    parser.add_argument("--lines", default="", help="per size, e.g. 10k=500k,100k=5m")
    parser.add_argument("--epochs", type=int, default=40, help="SHOP_RECS EPOCHS (default too)")
    parser.add_argument("--time-budget", type=float, default=150.0,
                        help="SHOP_RECS TIME_BUDGET_S (default the shop default)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--requests", type=int, default=300, help="0: no API latency")
    parser.add_argument("--json", type=Path, default=Path("scale.json"))
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: reuse a size's shop file and imported database "
                             "from an earlier run (its import figures, if it saved them)")
    parser.add_argument("--max-gb", type=float, default=0,
                        help="address-space cap of each size's process (0: none)")
    parser.add_argument("--deadline", type=float, default=0,
                        help="stop each size after this many seconds and report the stages it "
                             "finished and where its run was (0: none)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a size, in this process
    parser.add_argument("--one-lines", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--svg", type=Path, help="also draw time and memory against size here")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="no run: the table and growth exponents of earlier runs' JSON "
                             "files together (sizes measured on different days)")
    args = parser.parse_args(argv)
    if args.merge:
        merged = [r for f in args.merge for r in json.loads(f.read_text())["sizes"]]
        merged.sort(key=lambda r: r["products"])
        report(merged, args.json)
        if args.svg:
            args.svg.write_text(curve_svg(merged))
        return 0
    if args.one:
        if args.max_gb:  # a shared machine: fail this size rather than starve the others
            import resource

            cap = int(args.max_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        workdir = args.keep or Path(tempfile.mkdtemp(prefix="shop_recs_scale_"))
        workdir.mkdir(parents=True, exist_ok=True)
        _stop_on_signals(args.deadline)
        try:
            out = one_size(args.one, args.one_lines, workdir, args)
        except _Stop:
            return 3  # the partial figures are in args.json
        args.json.write_text(json.dumps(out, indent=1, default=str))
        return 0
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    lines = dict(DEFAULT_LINES)
    for part in filter(None, args.lines.split(",")):
        k, v = part.split("=")
        lines[parse_size(k)] = parse_size(v)
    results = []
    for n in sizes:
        m = lines.get(n, 50 * n)
        with tempfile.TemporaryDirectory(prefix="shop_recs_scale_") as tmp:
            work = args.keep / str(n) if args.keep else Path(tmp)
            one_json = Path(tmp) / "one.json"
            cmd = [sys.executable, "-m", "benchmarks.scale", "--one", str(n), "--one-lines",
                   str(m), "--json", str(one_json), "--keep", str(work), "--epochs",
                   str(args.epochs), "--time-budget", str(args.time_budget), "--device",
                   args.device, "--requests", str(args.requests), "--max-gb", str(args.max_gb),
                   "--deadline", str(args.deadline)] + (["--reuse"] if args.reuse else [])
            print(f"== {n:,} products, {m:,} lines", flush=True)
            started = time.monotonic()
            proc = subprocess.run(cmd, cwd=REPO)  # nosec B603 # this module, fixed argv
            if proc.returncode or not one_json.exists():
                results.append({"products": n, "lines": m, "error": f"exit {proc.returncode}",
                                "wall_s": round(time.monotonic() - started)})
                if one_json.exists():  # stopped: the stages it finished, where it was
                    results[-1].update(json.loads(one_json.read_text()))
            else:
                results.append(json.loads(one_json.read_text()))
            print(json.dumps(results[-1], default=str)[:2000], flush=True)
    report(results, args.json)
    if args.svg:
        args.svg.write_text(curve_svg(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
