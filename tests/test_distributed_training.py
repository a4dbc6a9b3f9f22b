"""TRAINING_PROCESSES end to end: the Celery task trains in 2 gloo processes it supervises.

The data-parallel machinery itself (sharding, equal results, failures, no leftover processes)
is tested without Django in tests/ml/test_distributed.py.
"""

import logging

import pytest

from shop_recs import pipeline, tasks
from shop_recs.models import TrainingRun
from shop_recs.runs import request_training
from tests.factories import planted_shop

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    settings.SHOP_RECS = {**settings.SHOP_RECS, "ARTIFACT_DIR": str(tmp_path / "artifacts"),
                          "FBT_TOP_K": 5, "EVALUATE_REFIT": False}


def test_the_setting_reaches_the_training_config(settings):
    run = request_training(trigger="t", config={"device": "cpu"}, broker_check=False,
                           enqueue=False)
    assert pipeline._fit_config(run)[0].train.processes == 1  # the default: in the worker
    for value, processes in ((3, 3), ("auto", 1)):  # auto: one per GPU, and there is none
        settings.SHOP_RECS = {**settings.SHOP_RECS, "TRAINING_PROCESSES": value}
        cfg, as_json = pipeline._fit_config(run)
        assert cfg.train.processes == processes and as_json["train.processes"] == processes


def test_a_bad_value_fails_the_run_with_a_message(settings):
    planted_shop(n_orders=40)
    settings.SHOP_RECS = {**settings.SHOP_RECS, "TRAINING_PROCESSES": 0}
    run = request_training(trigger="t", config={"device": "cpu"}, broker_check=False,
                           enqueue=False)
    assert pipeline.run_training(run.pk) == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert run.error == ("invalid training settings: TRAINING_PROCESSES must be a whole number "
                         ">= 1 or 'auto', not 0")


def test_the_task_trains_in_two_processes_and_publishes(settings, caplog):
    planted_shop()
    settings.SHOP_RECS = {**settings.SHOP_RECS, "TRAINING_PROCESSES": 2}
    run = request_training(trigger="t", config={"time_budget_s": 30, "epochs": 2,
                                                "device": "cpu"},
                           broker_check=False, enqueue=False)
    with caplog.at_level(logging.INFO, logger="shop_recs.ml.distributed"):
        status = tasks.train_bundle_model.apply(args=(run.pk,)).get()
    run.refresh_from_db()
    assert status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.config["fit"]["train.processes"] == 2 and run.counts["fbt_rows"] > 0
    assert "data-parallel training: 2 gloo processes" in caplog.text
    # the supervisor passed the ranks' progress on to the run: one loss per epoch
    assert len(run.progress["loss"]) == 2 and len(run.progress["val_metric"]) == 2
