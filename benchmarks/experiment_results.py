"""Benchmark: an experiment's results page over N events, read from its roll-ups.

    python -m benchmarks.experiment_results [--events 2000000] [--days 60] [--repeat 3]
                                            [--json PATH]

Builds a throw-away SQLite shop with ``benchmarks.rollups.build`` (``--events`` interactions
as shopping sessions over ``--days`` days), runs one experiment over the whole range with
two arms and exposes every session's visitor at their first event (half in each arm, by the
assignment hash), then times:

* the experiments' share of the first roll-up (``experiment_rollups.rollup_day`` for every
  day: what the hourly task adds), and a re-run of the busiest day;
* the admin results page (median of ``--repeat`` after a warm-up; its query count), which
  sums the per-visitor roll-ups in SQL;
* for comparison, one pass over the raw interactions of the experiment's window (what the
  page read on every view before the roll-ups: the rows alone, before any arithmetic).

Prints figures (and writes JSON); asserts nothing. Timings depend on the machine's load.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def expose_everyone(experiment):
    """One exposure per visitor of the built sessions, at their first event, in the arm the
    assignment hash gives them (``experiments.choose`` with the experiment's salt)."""
    from django.db.models import Min

    from shop_recs.analytics import experiments
    from shop_recs.models import Exposure, Interaction

    arms = experiments.load_plans()[experiment.placement].arms
    firsts = (Interaction.objects.order_by().values("visitor_id")
              .annotate(first=Min("timestamp")).values_list("visitor_id", "first"))
    batch = []
    for unit, first in firsts.iterator(chunk_size=20_000):
        arm = experiments.choose(experiment.salt, unit, arms)
        batch.append(Exposure(experiment=experiment, arm_id=arm.pk, unit=unit,
                              first_exposed_at=first))
        if len(batch) == 20_000:
            Exposure.objects.bulk_create(batch)
            batch = []
    Exposure.objects.bulk_create(batch)
    return Exposure.objects.filter(experiment=experiment).count()


def measure(args):
    from django.contrib.auth.models import User
    from django.db.models import Count, Min
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from benchmarks.rollups import timed
    from shop_recs.analytics import experiment_rollups, experiments
    from shop_recs.analytics.days import local_day
    from shop_recs.models import Arm, Experiment, ExperimentUnitDay, Interaction

    first = Interaction.objects.aggregate(first=Min("timestamp"))["first"]
    experiment = Experiment.objects.create(name="bench", placement="fbt",
                                           planned_visitors=10_000)
    Arm.objects.create(experiment=experiment, name="no widget", kind="no_widget", position=0)
    Arm.objects.create(experiment=experiment, name="model", kind="active_run", position=1)
    experiment = experiments.start(experiment)
    Experiment.objects.filter(pk=experiment.pk).update(
        started_at=first - timedelta(seconds=1))
    experiment.refresh_from_db()
    started = time.perf_counter()
    exposed = expose_everyone(experiment)
    expose_s = time.perf_counter() - started
    days = experiment_rollups.experiment_days(experiment)
    started, cpu = time.perf_counter(), time.process_time()
    rows = sum(experiment_rollups.rollup_day(day) for day in days)
    rollup_s, rollup_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    busiest = (ExperimentUnitDay.objects.values("day").annotate(n=Count("pk"))
               .order_by("-n").values_list("day", flat=True)[0])
    started = time.perf_counter()
    experiment_rollups.rollup_day(busiest)
    rerun_s = time.perf_counter() - started
    client = Client()
    client.force_login(User.objects.get(username="bench"))
    page = timed(client, reverse("admin:shop_recs_experiment_results", args=[experiment.pk]),
                 args.repeat)
    started = time.perf_counter()
    raw = sum(1 for _ in Interaction.objects.filter(
        timestamp__gte=experiment.started_at,
        kind__in=experiment_rollups.KINDS).order_by().values_list(
            "kind", "user_id", "visitor_id", "order_id", "quantity", "unit_price", "widget",
            "timestamp").iterator(chunk_size=5000))
    raw_s = time.perf_counter() - started
    return {"events": Interaction.objects.count(), "exposed": exposed, "expose_s": expose_s,
            "days": len(days), "unit_day_rows": rows, "today": str(local_day(timezone.now())),
            "rollup_s": rollup_s, "rollup_cpu_s": rollup_cpu_s, "rerun_busiest_day_s": rerun_s,
            "page": page, "raw_rows": raw, "raw_pass_s": raw_s,
            "load_average": os.getloadavg()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if min(args.events, args.days, args.repeat) < 1:
        parser.error("--events, --days and --repeat must be positive")
    tmp = tempfile.TemporaryDirectory()
    os.environ["SHOP_DEMO_VAR_DIR"] = tmp.name
    os.environ["SHOP_DEMO_SQLITE"] = str(Path(tmp.name) / "results.sqlite3")
    os.environ["DJANGO_DEBUG"] = "0"
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    from benchmarks.rollups import build

    setup_test_environment()  # the test client's ALLOWED_HOSTS
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    build(args.events, args.days)
    print(f"built {args.events:,} events over {args.days} days in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    figures = {"args": vars(args), **measure(args)}
    page = figures["page"]
    print(f"events {figures['events']:,}; {figures['exposed']:,} exposed visitors; "
          f"experiment roll-up of {figures['days']} days into {figures['unit_day_rows']:,} "
          f"visitor-day rows: {figures['rollup_s']:.1f} s (CPU {figures['rollup_cpu_s']:.1f} s); "
          f"re-run of the busiest day {1000 * figures['rerun_busiest_day_s']:.0f} ms; "
          f"load {figures['load_average'][0]:.1f}")
    print(f"results page: status {page['status']}, median {1000 * page['median_s']:.0f} ms "
          f"(CPU {1000 * page['median_cpu_s']:.0f} ms), {page['queries']} queries; "
          f"one pass over the {figures['raw_rows']:,} raw interactions of the window "
          f"(the page's old read): {figures['raw_pass_s']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
