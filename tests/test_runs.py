"""runs: requesting runs, queueing them by task name, finishing them."""

import pytest
from celery import current_app

from shop_recs import runs
from shop_recs.models import TrainingRun
from shop_recs.tasks import train_bundle_model

pytestmark = pytest.mark.django_db


def test_the_task_queued_by_name_is_the_training_task():
    assert runs.TRAIN_TASK == train_bundle_model.name


def test_enqueue_sends_the_training_task_with_its_limits(monkeypatch, settings):
    settings.SHOP_RECS = {"TRAINING_QUEUE": "gpu-q", "TRAINING_TIME_LIMIT": 99}
    sent = []

    def send_task(name, args, **options):
        sent.append((name, args, options))
        return type("Result", (), {"id": "task-1"})()

    monkeypatch.setattr(current_app, "send_task", send_task)
    run = TrainingRun.objects.create(trigger="t")
    runs._enqueue(run.pk)
    (name, args, options), = sent
    assert name == "shop_recs.train_bundle_model" and args == (run.pk,)
    assert options["queue"] == "gpu-q" and options["time_limit"] == 99
    run.refresh_from_db()
    assert run.task_id == "task-1" and run.status == TrainingRun.Status.QUEUED


def test_a_run_that_cannot_be_queued_fails_and_frees_the_slot(monkeypatch):
    def send_task(*args, **kwargs):
        raise ConnectionRefusedError("no broker")

    monkeypatch.setattr(current_app, "send_task", send_task)
    run = TrainingRun.objects.create(trigger="t")
    runs._enqueue(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "broker is unreachable" in run.error
    assert run.pending is None and run.finished_at
    assert runs.request_training(trigger="t", broker_check=False, enqueue=False).pk != run.pk


def test_finish_is_the_run_models_and_frees_the_pending_slot():
    run = TrainingRun.objects.create(trigger="t")
    assert run.finish(TrainingRun.Status.FAILED, error="boom") is run
    assert run.status == TrainingRun.Status.FAILED and run.error == "boom"
    assert run.pending is None and run.finished_at is not None
    assert runs.finish(runs.request_training(trigger="t", broker_check=False, enqueue=False),
                       TrainingRun.Status.SUCCEEDED).pending is None
