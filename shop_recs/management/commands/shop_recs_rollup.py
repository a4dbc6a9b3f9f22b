"""``manage.py shop_recs_rollup``: recompute the widget analytics roll-ups.

Without options it does what the hourly periodic task does (yesterday and today; every day
since the first interaction on the first run). ``--day D`` recomputes one day,
``--since D`` every day from D through today: after importing old events, changing
``ATTRIBUTION_WINDOW_DAYS`` or erasing a shopper whose history should leave past days too.
Each day is replaced whole, so running it twice changes nothing.
"""

from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from shop_recs.analytics import rollups


def _day(text, option):
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option} {text!r}: give a day as YYYY-MM-DD") from None


class Command(BaseCommand):
    help = "Recompute the daily widget analytics roll-ups (default: the days not final yet)."

    def add_arguments(self, parser):
        parser.add_argument("--day", help="recompute this day only (YYYY-MM-DD)")
        parser.add_argument("--since", help="recompute every day from this one through today")

    def handle(self, *args, day=None, since=None, **options):
        if day and since:
            raise CommandError("give --day or --since, not both")
        today = rollups.local_day(timezone.now())
        if day or since:
            first = _day(day or since, "--day" if day else "--since")
            if first > today:
                raise CommandError(f"{first} is in the future (today is {today})")
            days = [first] if day else rollups.days_since(first, today)
        else:
            days = rollups.pending_days()

        def progress(done):
            if options["verbosity"] > 1:
                self.stdout.write(f"  {done}")

        summary = rollups.rollup_days(days, progress=progress)
        self.stdout.write(f"Rolled up {summary['days']:,} day(s) into {summary['rows']:,} rows "
                          f"in {summary['seconds']} s.")
