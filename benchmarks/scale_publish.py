"""Bulk publishing benchmark: FBT rows per second written by ``publish.write_fbt``.

    python -m benchmarks.scale_publish --products 100000 [--top-k 10] [--old 20000]
        [--fk immediate|deferred]

Writes ``products x top_k`` rows in one transaction, as ``publish.activate`` does: COPY on
PostgreSQL (``DATABASE_URL`` set, e.g. inside ``scripts/services.sh run --``), batched
``executemany`` on SQLite (a fresh file in a temp dir otherwise). ``--old N`` also times the
previous writer (``bulk_create`` of model instances) on the first N rows, for the ratio.
The rows are handed over as ``publish.build`` hands them (``FbtRows``: numpy columns).
``--fk``: when PostgreSQL checks the foreign keys of the rows, at commit (``deferred``, what
Django declares) or row by row during the COPY (``immediate``, ``SET CONSTRAINTS``); the
commit's share is reported either way. Prints rows/s and the growth of peak RSS (this
process; the server's memory is not in it); asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--old", type=int, default=0, help="rows to write the old way too")
    parser.add_argument("--fk", choices=["deferred", "immediate", "default"], default="default",
                        help="default: what publish.write_fbt does")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="scale_publish_"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings"
    os.environ.setdefault("SHOP_DEMO_SQLITE", str(tmp / "publish.sqlite3"))
    os.environ["SHOP_DEMO_VAR_DIR"] = str(tmp / "var")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from shop_recs import publish
    from shop_recs.models import Product, Recommendation, TrainingRun

    call_command("migrate", verbosity=0)
    Product.objects.bulk_create([Product(sku=f"S{i}", name=f"Product {i}", price="1.00")
                                 for i in range(args.products)], batch_size=5000)
    pks = list(Product.objects.order_by("pk").values_list("pk", flat=True))
    n = len(pks)
    fbt = publish.FbtRows(pks)
    top = np.arange(1, args.top_k + 1)
    for start in range(0, n, 10_000):  # as build() adds them: a chunk of anchors at a time
        src = np.repeat(np.arange(start, min(start + 10_000, n)), args.top_k)
        rank = np.tile(top, len(src) // args.top_k)
        fbt.add(src, (src + rank) % n, rank, 1.0 / rank, rank, np.full(len(src), 1.5),
                np.full(len(src), 4.0))
    base_mb = peak_mb()
    run = TrainingRun.objects.create(trigger="benchmark", pending=None)
    t0 = time.perf_counter()
    with transaction.atomic():
        if args.fk != "default" and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SET CONSTRAINTS ALL {args.fk.upper()}")
        written = publish.write_fbt(run, fbt, "ease")
        write_s = time.perf_counter() - t0  # the rest is the commit (deferred FK checks)
    new_s = time.perf_counter() - t0
    assert Recommendation.objects.filter(run=run).count() == written  # nosec B101 # self-check
    server_mb = None
    if connection.vendor == "postgresql":  # the server process's peak, when it is local
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            status = Path(f"/proc/{cursor.fetchone()[0]}/status")
        if status.exists():
            hwm = [ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM")]
            server_mb = round(int(hwm[0].split()[1]) / 1024) if hwm else None
    out = {"database": connection.vendor, "rows": written, "seconds": round(new_s, 2),
           "write_s": round(write_s, 2), "commit_s": round(new_s - write_s, 2),
           "rows_per_s": round(written / new_s), "fk": args.fk,
           "peak_rss_growth_mb": round(peak_mb() - base_mb), "peak_rss_mb": round(peak_mb()),
           "server_peak_rss_mb": server_mb}
    if args.old:
        old_run = TrainingRun.objects.create(trigger="benchmark", pending=None)
        t0 = time.perf_counter()
        with transaction.atomic():
            Recommendation.objects.bulk_create(
                [Recommendation(run=old_run, product_id=p, recommended_id=r, rank=k, score=s,
                                source="ease", evidence=ev) for p, r, k, s, ev in fbt[:args.old]],
                batch_size=2000)
        old_s = time.perf_counter() - t0
        out["old_rows_per_s"] = round(args.old / old_s)
        out["speedup"] = round((written / new_s) / (args.old / old_s), 2)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
