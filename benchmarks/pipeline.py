"""Benchmark: basket extraction and a full training run on the Online Retail years.

    python -m benchmarks.pipeline [--db PATH] [--train] [--device auto|cpu|cuda]
        [--file NAME ...]

Without ``--db`` the files (default: both years) are first imported into a temporary SQLite
database (import time is reported but excluded from the end-to-end figure). Prints extraction
seconds and peak memory, then, with ``--train``, the end-to-end seconds of
``pipeline.run_training`` (extract, evaluate, gate, refit, publish), what the gate chose with
its validation interval, and the ``shipped`` / ``shipped_refit`` test figures: the rows
``python -m shop_recs.ml.benchmark`` prints for the same file and settings.
"""

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.import_orders import FILES


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="an SQLite database with the orders imported")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2]
                        / "shared" / "data" / "online_retail")
    parser.add_argument("--file", action="append", dest="files", metavar="NAME",
                        help="a file of --data to import (repeatable; default: both years)")
    parser.add_argument("--train", action="store_true", help="also run a full training run")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    os.environ["SHOP_DEMO_VAR_DIR"] = tmp.name
    os.environ["SHOP_DEMO_SQLITE"] = str(args.db or Path(tmp.name) / "bench.sqlite3")
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from shop_recs import data, pipeline
    from shop_recs.models import Interaction
    from shop_recs.runs import request_training

    if not args.db:
        from shop_recs.importer import import_orders

        paths = [args.data / name for name in (args.files or FILES)]
        if not all(p.exists() for p in paths):
            sys.exit(f"missing data files in {args.data}")
        result = import_orders(paths, fmt="online_retail")
        print(f"import           {result.report.read:,} lines in {result.seconds:.1f} s "
              f"({result.rate:,.0f} lines/s)")
    lines = Interaction.objects.purchases().count()
    before = peak_rss_mb()
    started = time.perf_counter()
    extract = data.extract_baskets()
    seconds = time.perf_counter() - started
    print(f"purchase lines   {lines:,}")
    print(f"extraction       {seconds:.1f} s, {extract.counts['orders']:,} baskets, "
          f"{extract.counts['products']:,} products")
    print(f"peak memory      {peak_rss_mb():,.0f} MB (before extraction {before:,.0f} MB)")
    if not args.train:
        return
    del extract
    run = request_training(trigger="benchmark", config={"device": args.device},
                           broker_check=False, enqueue=False)
    started = time.perf_counter()
    pipeline.run_training(run.pk)
    seconds = time.perf_counter() - started
    run.refresh_from_db()
    print(f"training run     {run.status} in {seconds:.0f} s on {run.device} "
          f"(stages: {run.timings})")
    print(f"gate             {run.gate.get('reason', run.error)}")
    test = (run.metrics or {}).get("test", {})
    for name, row in sorted(test.items(), key=lambda kv: -kv[1].get("anchor_ndcg10", 0)):
        print(f"  test {name:<28} complete-NDCG@10 {row['complete_ndcg10']:.4f}  "
              f"anchor-NDCG@10 {row['anchor_ndcg10']:.4f}")
    counts = run.counts or {}
    print(f"published        {counts.get('fbt_rows', 0):,} FBT rows; bundles: "
          + ", ".join(f"{k.removeprefix('bundles_')} {v:,}" for k, v in counts.items()
                      if k.startswith("bundles_")))
    print(f"peak memory      {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
