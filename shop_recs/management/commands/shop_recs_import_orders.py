"""``manage.py shop_recs_import_orders PATH [PATH ...] [--format online_retail|generic]``.

Into a host's catalogue (``SHOP_RECS_PRODUCT_MODEL``) the import adds no product and
renames none unless asked: ``--create-products`` creates the products the shop does not
have as hidden products, ``--update-products`` gives products the file's newest name
and price. With shop_recs' own Product both are on by default (``--no-...`` turns them off).

After an import that added purchases, the stored fallback lists are recomputed
(``shop_recs.fallbacks``), so product pages show what was bought together before the first
training run; ``--no-fallbacks`` skips that.
"""

import argparse

from django.core.management.base import BaseCommand, CommandError

from shop_recs import fallbacks
from shop_recs.importer import import_orders
from shop_recs.ml.orders import FORMATS, OrderFileError

BAD_LINES_SHOWN = 20


class Command(BaseCommand):
    help = (
        "Import historical orders from plain or gzip CSV files. Re-importing a file adds "
        "nothing; lines that cannot be used are skipped and counted by reason."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="CSV or CSV.gz file(s)")
        parser.add_argument("--format", choices=FORMATS, default="generic", dest="fmt",
                            help="online_retail (UCI Online Retail, either year) or generic "
                                 "(order_id, product_id, timestamp, ...). Default: generic.")
        parser.add_argument("--chunk-size", type=int, default=None,
                            help="lines per transaction (default: SHOP_RECS['IMPORT_CHUNK_SIZE'])")
        parser.add_argument("--create-products", action=argparse.BooleanOptionalAction,
                            default=None,
                            help="create products the catalogue does not have (hidden in a "
                                 "host catalogue). Default: only for shop_recs' own Product.")
        parser.add_argument("--update-products", action=argparse.BooleanOptionalAction,
                            default=None,
                            help="overwrite product names and prices with the file's newest. "
                                 "Default: only for shop_recs' own Product.")
        parser.add_argument("--fallbacks", action=argparse.BooleanOptionalAction, default=True,
                            dest="refresh_fallbacks",
                            help="recompute the stored fallback lists after the import "
                                 "(default: on)")

    def handle(self, *args, paths, fmt, chunk_size, verbosity, create_products=None,
               update_products=None, refresh_fallbacks=True, **options):
        if chunk_size is not None and chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1")

        def progress(result):
            if verbosity >= 1:
                self.stderr.write(
                    f"  {result.report.read:,} lines read, {result.imported:,} imported "
                    f"({result.rate:,.0f} lines/s)", ending="\r")

        try:
            result = import_orders(paths, fmt, chunk_size, progress=progress,
                                   create_products=create_products,
                                   update_products=update_products)
        except OrderFileError as exc:
            raise CommandError(str(exc)) from exc
        report = result.report
        write = self.stdout.write
        write(f"Read {report.read:,} lines from {len(paths)} file(s) in {result.seconds:.1f} s "
              f"({result.rate:,.0f} lines/s).")
        write(f"Imported {result.imported:,} purchase lines in {result.orders:,} orders; "
              f"{result.already_imported:,} already imported.")
        write(f"Products: {result.products_created:,} created, "
              f"{result.products_updated:,} updated.")
        if result.products_skipped:
            write(f"{result.products_skipped:,} product codes are not in the catalogue; their "
                  f"{report.skipped['unknown_product']:,} lines were skipped "
                  "(--create-products adds them as hidden products).")
        if result.case_folded:
            write(f"{result.case_folded:,} lines wrote their product code in lower case; "
                  "they count as the upper-case product (85123a = 85123A).")
        skipped = sum(report.skipped.values())
        write(f"Skipped {skipped:,} lines" + (":" if skipped else "."))
        for reason, count in report.skipped.most_common():
            write(f"  {reason:<24} {count:>10,}")
        if report.bad_lines:
            write(f"Bad lines (first {min(BAD_LINES_SHOWN, len(report.bad_lines))}):")
            for path, line_no, reason in report.bad_lines[:BAD_LINES_SHOWN]:
                write(f"  {path}:{line_no}: {reason}")
        if refresh_fallbacks and result.imported:
            summary = fallbacks.refresh()
            write(f"Fallback lists: {summary['rows']:,} rows for {summary['products']:,} "
                  f"products ({summary['cooccurrence']:,} bought together) in "
                  f"{summary['seconds']} s.")
        self.stdout.write(self.style.SUCCESS("Import finished."))
