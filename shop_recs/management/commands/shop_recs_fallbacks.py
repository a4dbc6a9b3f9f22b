"""``manage.py shop_recs_fallbacks``: recompute the stored fallback lists now.

Each training run and ``shop_recs_import_orders`` already do this, and the periodic task
"shop_recs: refresh fallbacks" does it daily; run it after changing orders or categories
some other way (raw SQL, a data migration)."""

from django.core.management.base import BaseCommand

from shop_recs import fallbacks


class Command(BaseCommand):
    help = "Recompute the fallback lists shown beyond each product's FBT list."

    def handle(self, *args, **options):
        summary = fallbacks.refresh()
        self.stdout.write(
            f"Stored {summary['rows']:,} fallback rows for {summary['products']:,} products "
            f"({summary['cooccurrence']:,} bought together, the rest category bestsellers) "
            f"in {summary['seconds']} s.")
