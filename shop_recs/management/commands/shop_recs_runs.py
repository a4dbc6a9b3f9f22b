"""``manage.py shop_recs_runs [--json] [--limit N] [--abandon]``: training runs and what they
published. ``--abandon`` first fails every queued or running run: for when no worker holds
them (``make demo`` calls it before it starts its only worker).

The published counts are read from ``TrainingRun.counts``, which ``publish.activate``
writes when the run publishes: listing runs never counts recommendation or bundle rows,
so it costs a fixed number of queries however many rows the runs published.
"""

import json

from django.core.management.base import BaseCommand
from shop_recs.models import TrainingRun
from shop_recs.runs import abandon_unfinished_runs, reap_stale_runs


def run_summary(run):
    counts = run.counts if isinstance(run.counts, dict) else {}
    return {
        "id": run.pk,
        "status": run.status,
        "active": run.is_active,
        "trigger": run.trigger,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "device": run.device,
        "data_cutoff": run.data_cutoff.isoformat() if run.data_cutoff else None,
        "counts": run.counts,
        "progress": {k: v for k, v in (run.progress or {}).items()
                     if k in ("stage", "epoch", "percent", "examples_per_s")},
        "gate": run.gate,
        "test_metrics": (run.metrics or {}).get("test", {}),
        "artifact_path": run.artifact_path,
        "artifact_sha256": run.artifact_sha256,
        "fbt_rows": counts.get("fbt_rows"),
        "proposed_bundles": counts.get("bundles_proposed"),
        "timings": run.timings,
        "attempts": run.attempts,
        "error": run.error,
    }


class Command(BaseCommand):
    help = "List training runs with status, metrics, gate choice, artifact and published rows."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="machine-readable output")
        parser.add_argument("--limit", type=int, default=20)
        parser.add_argument("--abandon", action="store_true",
                            help="first mark every queued or running run failed; only when "
                                 "no worker is running them")

    def handle(self, *args, as_json=False, limit=20, abandon=False, **options):
        reaped = reap_stale_runs()
        if abandon:
            reaped += abandon_unfinished_runs(
                "abandoned: no worker was running it (shop_recs_runs --abandon)")
        for run in reaped:
            self.stderr.write(f"Run {run.pk} marked failed: {run.error}")
        runs = TrainingRun.objects.order_by("-created_at", "-pk")[:max(limit, 1)]
        summaries = [run_summary(r) for r in runs]
        if as_json:
            self.stdout.write(json.dumps(summaries, indent=2, default=str))
            return
        if not summaries:
            self.stdout.write("No training runs yet. Start one with `manage.py shop_recs_train`.")
            return
        for s in summaries:
            test = s["test_metrics"].get(s["gate"].get("chosen", ""), {})
            self.stdout.write(
                f"#{s['id']:<4} {s['status']:<9}{' *active*' if s['active'] else ''} "
                f"{s['created_at'][:19]} device={s['device'] or '-'} "
                f"shipped={s['gate'].get('chosen', '-')} "
                f"anchor-NDCG@10={test.get('anchor_ndcg10', float('nan')):.4f} "
                f"FBT rows={s['fbt_rows'] if s['fbt_rows'] is not None else '-'} "
                f"proposed bundles="
                f"{s['proposed_bundles'] if s['proposed_bundles'] is not None else '-'}")
            if s["artifact_path"]:
                self.stdout.write(f"      artifact {s['artifact_path']} sha256 {s['artifact_sha256']}")
            if s["error"]:
                self.stdout.write(f"      error: {s['error']}")
            elif s["progress"] and s["status"] == "running":
                self.stdout.write(f"      progress: {s['progress']}")
