"""``manage.py shop_recs_train [--sync] [--device auto|cpu|cuda] [--time-budget S]``."""

from django.core.management.base import BaseCommand, CommandError

from shop_recs.models import TrainingRun
from shop_recs.runs import BrokerUnavailable, TrainingAlreadyPending, request_training


class Command(BaseCommand):
    help = ("Start a training run: queue it for a Celery worker (default), or run it in this "
            "process with --sync.")

    def add_arguments(self, parser):
        parser.add_argument("--sync", action="store_true",
                            help="train in this process instead of queueing a Celery task")
        parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
        parser.add_argument("--time-budget", type=float, default=None, metavar="S",
                            help="training seconds per model fit")
        parser.add_argument("--epochs", type=int, default=None)

    def handle(self, *args, sync, device, time_budget, epochs, **options):
        config = {k: v for k, v in (("device", device), ("time_budget_s", time_budget),
                                    ("epochs", epochs)) if v is not None}
        if time_budget is not None and time_budget <= 0:
            raise CommandError("--time-budget must be positive")
        if epochs is not None and epochs < 1:
            raise CommandError("--epochs must be at least 1")
        try:
            run = request_training(trigger="command", config=config, broker_check=not sync,
                                   enqueue=not sync)
        except TrainingAlreadyPending as exc:
            raise CommandError(f"{exc}; wait for it or check `shop_recs_runs`") from exc
        except BrokerUnavailable as exc:
            raise CommandError(f"{exc}. Start the broker, or train here with --sync.") from exc
        if not sync:
            self.stdout.write(self.style.SUCCESS(
                f"Queued training run {run.pk}; follow it with `manage.py shop_recs_runs`."))
            return
        from shop_recs import pipeline  # noqa: PLC0415 (loads torch only when training here)

        self.stdout.write(f"Training run {run.pk} in this process ...")
        try:
            pipeline.run_training(run.pk)
        except Exception as exc:
            raise CommandError(f"training run {run.pk} failed: {exc}") from exc
        run.refresh_from_db()
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"training run {run.pk} failed: {run.error}")
        self.stdout.write(self.style.SUCCESS(
            f"Run {run.pk} succeeded in {sum(run.timings.values()):.0f} s: "
            f"{run.gate.get('reason', '')}"))
