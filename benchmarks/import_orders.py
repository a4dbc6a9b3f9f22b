"""Benchmark: import both UCI Online Retail years into a fresh SQLite database.

    python -m benchmarks.import_orders [--data DIR]

Prints lines read, lines imported, the rate in lines/s and the peak resident memory.
"""

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

FILES = ("online_retail_ii_2009-12_2010-12.csv.gz", "online_retail_2010-12_2011-12.csv.gz")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data"
                        / "online_retail")
    args = parser.parse_args(argv)
    paths = [args.data / name for name in FILES]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        sys.exit(f"missing data file(s): {', '.join(missing)}")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SHOP_DEMO_SQLITE"] = str(Path(tmp) / "bench.sqlite3")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
        os.environ.pop("DATABASE_URL", None)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        from shop_recs.importer import import_orders

        result = import_orders(paths, fmt="online_retail")
        size_mb = Path(os.environ["SHOP_DEMO_SQLITE"]).stat().st_size / 2**20
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"files            {len(paths)}")
    print(f"lines read       {result.report.read:,}")
    print(f"lines imported   {result.imported:,} ({result.orders:,} orders)")
    print(f"seconds          {result.seconds:.1f}")
    print(f"rate             {result.rate:,.0f} lines/s")
    print(f"peak memory      {peak_mb:,.0f} MB")
    print(f"database size    {size_mb:,.0f} MB")


if __name__ == "__main__":
    main()
