"""Faults of the training pipeline, with a real Redis and a real Celery worker process.

Each test starts ``celery -A shop_demo worker -Q shop_recs.gpu -c 1 --prefetch-multiplier 1
--pool prefork`` (tests/celery_helpers.py) on the test Redis and the test database, and
queues runs from this process the way the admin and ``shop_recs_train`` do:

- the worker's pool process, or the whole worker, is SIGKILLed mid-training: the serving
  run keeps serving, no half-written artifact is visible, and the run is redelivered and
  succeeds exactly once (a killed main process's message comes back after the Redis
  visibility timeout, short for the second worker here; a worker that never comes back is
  failed by ``reap_stale_runs``);
- two simultaneous requests give one run;
- with Redis down, staff get a clear message (exception, admin message, ``CommandError``)
  and no run row; once it is back, the next request trains normally;
- a shop with no orders, or one product, gives a failed run that says so.
"""

import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from shop_recs import runs
from shop_recs.conf import recs_settings
from shop_recs.models import Interaction, Recommendation, TrainingRun
from shop_recs.runs import (BrokerUnavailable, TrainingAlreadyPending, reap_stale_runs,
                            request_training)
from tests.celery_helpers import (  # noqa: F401 (fixtures)
    REPO, broker_idle, broker_url, celery_broker, closed_port, redis_server_url, start_worker,
    use_redis_broker, wait_for, worker_env, worker_var_dir)
from tests.factories import planted_shop

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FAST = {"time_budget_s": 5, "epochs": 3, "device": "cpu"}
# About 10 s of training on the 3000-order shop (early stopping), an epoch every ~2 s.
SLOW = {"time_budget_s": 30, "epochs": 50, "device": "cpu"}
FINISH_TIMEOUT_S = 180  # bounds of polling loops, not expectations


# Helpers -----------------------------------------------------------------------------

def serving_run(products):
    """A succeeded, active run with FBT rows, as left by an earlier training."""
    run = TrainingRun.objects.create(trigger="test", status=TrainingRun.Status.SUCCEEDED,
                                     pending=None, is_active=True, shipped_model="cooc_count",
                                     finished_at=timezone.now(), attempts=1)
    Recommendation.objects.bulk_create(
        [Recommendation(run=run, product=products[i], recommended=products[(i + j) % 10],
                        rank=j, score=1.0 / j, source="cooc_count")
         for i in range(10) for j in (1, 2, 3)])
    return run


def rows_of(run):
    return sorted(Recommendation.objects.filter(run=run)
                  .values_list("product_id", "recommended_id", "rank", "score"))


def assert_still_serving(previous, rows):
    assert TrainingRun.objects.get(is_active=True).pk == previous.pk
    assert rows_of(previous) == rows


def finished(run_id):
    run = TrainingRun.objects.get(pk=run_id)
    return run if run.is_finished else None


def wait_finished(run, worker):
    return wait_for(lambda: finished(run.pk), FINISH_TIMEOUT_S, f"run {run.pk} to finish",
                    worker)


def wait_training(run, worker):
    """Wait until the worker has trained at least one epoch of ``run``."""

    def training():
        current = TrainingRun.objects.get(pk=run.pk)
        assert not current.is_finished, (
            f"run {run.pk} finished before it could be killed: {current.status} {current.error}")
        if current.status == TrainingRun.Status.RUNNING and current.progress.get("loss"):
            return current
        return None

    return wait_for(training, FINISH_TIMEOUT_S, f"run {run.pk} to train an epoch", worker)


def artifact_entries(var_dir):
    root = var_dir / "artifacts"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def assert_no_half_written_artifact(var_dir):
    """Only hidden temporary folders (``.run-<id>.tmp<pid>``) may exist mid-run."""
    for name in artifact_entries(var_dir):
        assert name.startswith(".run-") and ".tmp" in name, f"visible artifact {name!r}"


def assert_completed_once(run, var_dir):
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.attempts == 2 and run.is_active and run.pending is None
    assert TrainingRun.objects.filter(is_active=True).count() == 1
    fbt = Recommendation.objects.filter(run=run).count()
    assert fbt > 0 and fbt == run.counts["fbt_rows"]
    visible = [n for n in artifact_entries(var_dir) if not n.startswith(".")]
    if run.artifact_path:  # the neural model was shipped: its checkpoint verifies
        from shop_recs.ml.checkpoint import load_checkpoint  # noqa: PLC0415 (torch)

        assert visible == [f"run-{run.pk}"] and Path(run.artifact_path).name == visible[0]
        load_checkpoint(run.artifact_path)
    else:  # a baseline was shipped: no checkpoint at all
        assert visible == []


def assert_redelivered_copies_were_no_ops(run, broker, worker):
    # Any further copy of the message (a visibility-timeout restore) finds the run
    # finished and does nothing.
    wait_for(lambda: broker_idle(broker), 60, "the broker to hold no training message", worker)
    run.refresh_from_db()
    assert run.attempts == 2 and run.status == TrainingRun.Status.SUCCEEDED
    assert Recommendation.objects.filter(run=run).count() == run.counts["fbt_rows"]


# Worker killed mid-training ---------------------------------------------------------------

def test_pool_process_killed_mid_training_is_redelivered_and_completes_once(
        start_worker, broker_url, worker_var_dir):
    products = planted_shop(n_orders=3000)
    previous = serving_run(products)
    rows = rows_of(previous)
    worker = start_worker()
    run = request_training(trigger="test", config=SLOW)

    wait_training(run, worker)
    worker.kill_pool()
    # The main process saw its pool process die (WorkerLostError) and, as the task is
    # acks_late + reject_on_worker_lost, put the message back for a fresh pool process.
    run.refresh_from_db()
    assert run.status != TrainingRun.Status.SUCCEEDED
    assert_still_serving(previous, rows)
    assert_no_half_written_artifact(worker_var_dir)

    done = wait_finished(run, worker)
    assert_completed_once(done, worker_var_dir)
    assert "SIGKILL" in worker.log_tail(200_000)
    previous.refresh_from_db()
    assert not previous.is_active and rows_of(previous) == rows  # kept for comparison
    assert_redelivered_copies_were_no_ops(done, broker_url, worker)


def test_whole_worker_killed_mid_training_is_redelivered_by_the_next_worker(
        start_worker, broker_url, worker_var_dir):
    products = planted_shop(n_orders=3000)
    previous = serving_run(products)
    rows = rows_of(previous)
    first = start_worker()
    run = request_training(trigger="test", config=SLOW)

    wait_training(run, first)
    assert first.kill(), "the pool process should have died with the main process"
    # The message stays unacknowledged in Redis: nobody consumes it until the visibility
    # timeout runs out.
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING and run.attempts == 1 and run.pending
    assert_still_serving(previous, rows)
    assert_no_half_written_artifact(worker_var_dir)
    with pytest.raises(TrainingAlreadyPending):  # still one run at a time
        request_training(trigger="test", config=FAST)

    # Were no worker ever to take the message again, the reaper fails the run once it has
    # made no progress for longer than the hard time limit (shown, then rolled back).
    with transaction.atomic():
        later = timezone.now() + timedelta(seconds=recs_settings.TRAINING_TIME_LIMIT + 120)
        reaped = reap_stale_runs(now=later)
        assert [r.pk for r in reaped] == [run.pk]
        assert reaped[0].status == TrainingRun.Status.FAILED and reaped[0].pending is None
        assert "worker was lost" in reaped[0].error
        transaction.set_rollback(True)
    assert reap_stale_runs() == []  # its heartbeat is recent: not stale now

    # Redis gives an unacknowledged message to another worker after the visibility
    # timeout (2 h in shop_demo/settings.py, above the training time limit; 3 s here).
    second = start_worker(SHOP_RECS_WORKER_VISIBILITY_TIMEOUT=3)
    done = wait_finished(run, second)
    assert_completed_once(done, worker_var_dir)
    assert_redelivered_copies_were_no_ops(done, broker_url, second)


# Concurrent requests ---------------------------------------------------------------------

def test_two_simultaneous_requests_give_one_run(start_worker, broker_url, monkeypatch):
    planted_shop()
    worker = start_worker()
    barrier = threading.Barrier(2)
    real_check = runs.check_broker

    def check_then_wait(*args, **kwargs):
        real_check(*args, **kwargs)
        # Both requests have passed the "is a run pending?" look-up: only the database's
        # unique constraint can now keep the second from creating a run.
        barrier.wait(timeout=30)

    monkeypatch.setattr(runs, "check_broker", check_then_wait)
    results = [None, None]

    def request(i):
        try:
            results[i] = request_training(trigger=f"request {i}", config=FAST)
        except Exception as exc:  # noqa: BLE001 (reported by the assertions below)
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    created = [r for r in results if isinstance(r, TrainingRun)]
    refused = [r for r in results if isinstance(r, TrainingAlreadyPending)]
    assert len(created) == 1 and len(refused) == 1, results
    assert refused[0].run.pk == created[0].pk
    assert TrainingRun.objects.count() == 1

    done = wait_finished(created[0], worker)
    assert done.status == TrainingRun.Status.SUCCEEDED and done.attempts == 1, done.error
    wait_for(lambda: broker_idle(broker_url), 60, "the broker to hold no training message",
             worker)
    assert TrainingRun.objects.count() == 1


# Redis down ----------------------------------------------------------------------------

def test_redis_down_gives_a_clear_message_and_loses_nothing(
        start_worker, worker_var_dir, admin_client):
    planted_shop()
    worker = start_worker()  # on the real Redis; the web side finds its broker down
    down = f"redis://127.0.0.1:{closed_port()}/0"

    with celery_broker(down):
        with pytest.raises(BrokerUnavailable) as caught:
            request_training(trigger="admin", config=FAST)
        assert "broker is unreachable" in str(caught.value)
        assert "no training run was queued" in str(caught.value)
        assert not TrainingRun.objects.exists()

        response = admin_client.post(reverse("admin:shop_recs_trainingrun_train"))
        assert response.status_code == 302
        assert response.url == reverse("admin:shop_recs_trainingrun_changelist")
        [message] = [str(m) for m in get_messages(response.wsgi_request)]
        assert "could not be started" in message and "broker is unreachable" in message
        assert not TrainingRun.objects.exists()

    command = subprocess.run(
        [sys.executable, "manage.py", "shop_recs_train", "--device", "cpu", "--epochs", "3"],
        cwd=REPO, env=worker_env(down, worker_var_dir), capture_output=True, text=True,
        timeout=120)
    assert command.returncode == 1, command.stdout + command.stderr
    assert command.stderr.startswith("CommandError: ") and "Traceback" not in command.stderr
    assert "broker is unreachable" in command.stderr and "--sync" in command.stderr
    assert not TrainingRun.objects.exists()

    # Redis is back: nothing was left behind that blocks the next run.
    run = request_training(trigger="admin", config=FAST)
    done = wait_finished(run, worker)
    assert done.status == TrainingRun.Status.SUCCEEDED and done.attempts == 1, done.error


# Data the model cannot learn from ---------------------------------------------------------

def test_no_orders_or_one_product_fail_with_a_message_through_the_worker(start_worker):
    worker = start_worker()
    empty = request_training(trigger="test", config=FAST)
    done = wait_finished(empty, worker)
    assert done.status == TrainingRun.Status.FAILED and done.pending is None
    assert "not enough data" in done.error and "found 0 order" in done.error
    assert done.attempts == 1  # a data error is not retried

    products = planted_shop(n_orders=10)
    Interaction.objects.exclude(product=products[0]).delete()
    one = request_training(trigger="test", config=FAST)
    done = wait_finished(one, worker)
    assert done.status == TrainingRun.Status.FAILED and done.pending is None
    assert "1 product" in done.error and done.attempts == 1
    assert not TrainingRun.objects.filter(is_active=True).exists()
    assert not Recommendation.objects.exists()
