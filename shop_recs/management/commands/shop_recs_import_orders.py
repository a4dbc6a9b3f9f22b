"""``manage.py shop_recs_import_orders PATH [PATH ...] [--format online_retail|generic]``."""

from django.core.management.base import BaseCommand, CommandError

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

    def handle(self, *args, paths, fmt, chunk_size, verbosity, **options):
        if chunk_size is not None and chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1")

        def progress(result):
            if verbosity >= 1:
                self.stderr.write(
                    f"  {result.report.read:,} lines read, {result.imported:,} imported "
                    f"({result.rate:,.0f} lines/s)", ending="\r")

        try:
            result = import_orders(paths, fmt, chunk_size, progress=progress)
        except OrderFileError as exc:
            raise CommandError(str(exc)) from exc
        report = result.report
        write = self.stdout.write
        write(f"Read {report.read:,} lines from {len(paths)} file(s) in {result.seconds:.1f} s "
              f"({result.rate:,.0f} lines/s).")
        write(f"Imported {result.imported:,} purchase lines in {len(result.orders):,} orders; "
              f"{result.already_imported:,} already imported.")
        write(f"Products: {result.products_created:,} created, "
              f"{result.products_updated:,} updated.")
        skipped = sum(report.skipped.values())
        write(f"Skipped {skipped:,} lines" + (":" if skipped else "."))
        for reason, count in report.skipped.most_common():
            write(f"  {reason:<24} {count:>10,}")
        if report.bad_lines:
            write(f"Bad lines (first {min(BAD_LINES_SHOWN, len(report.bad_lines))}):")
            for path, line_no, reason in report.bad_lines[:BAD_LINES_SHOWN]:
                write(f"  {path}:{line_no}: {reason}")
        self.stdout.write(self.style.SUCCESS("Import finished."))
