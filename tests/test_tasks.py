"""tasks: thin wrappers that pass ids (and the retry count) to the pipeline."""

import pytest

from shop_recs import pipeline, tasks
from shop_recs.models import TrainingRun

pytestmark = pytest.mark.django_db


def test_training_task_passes_its_id_and_retry_count(monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline, "run_training",
                        lambda run_id, task_id="", retries=0: calls.append(
                            (run_id, task_id, retries)) or "succeeded")
    result = tasks.train_bundle_model.apply(args=(7,), task_id="abc", retries=2)
    assert result.get() == "succeeded" and calls == [(7, "abc", 2)]


def test_training_task_retries_on_database_errors():
    opts = tasks.train_bundle_model
    from django.db import OperationalError
    assert OperationalError in opts.autoretry_for and opts.acks_late
    assert opts.reject_on_worker_lost


def test_retrain_queues_one_run_or_returns_the_pending_one(monkeypatch):
    monkeypatch.setattr("shop_recs.runs._enqueue", lambda run_id: None)
    first = tasks.retrain.apply().get()
    again = tasks.retrain.apply().get()
    assert first == again and TrainingRun.objects.get().trigger == "schedule"
