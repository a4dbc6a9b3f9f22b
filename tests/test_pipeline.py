"""The training pipeline end to end on SQLite/PostgreSQL with a tiny planted-signal shop."""

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone

from shop_recs import pipeline
from shop_recs.ingest import record_order
from shop_recs.models import Bundle, Interaction, Product, Recommendation, TrainingRun
from shop_recs.ml.checkpoint import load_checkpoint
from shop_recs.runs import TrainingAlreadyPending, finish, request_training
from tests.factories import FAST, artifacts, planted_shop  # noqa: F401 (artifacts: a fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifacts")]


def train(**config):
    run = request_training(trigger="test", config={**FAST, **config}, broker_check=False,
                           enqueue=False)
    status = pipeline.run_training(run.pk)
    run.refresh_from_db()
    return run, status


def test_a_run_publishes_fbt_lists_and_bundles_with_provenance(artifacts):
    products = planted_shop()
    unsold = Product.objects.create(sku="ZZ", name="Kettle spoon", price="3.00", category="odd")
    run, status = train()
    assert status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.is_active and run.pending is None and run.finished_at
    assert run.counts["orders"] == 400 and run.counts["fbt_rows"] > 0
    assert run.counts["products"] == 30 and run.counts["catalogue"] == 31
    assert run.gate["chosen"] and "validation served NDCG@10 (mean of cart and product page)" in (
        run.gate["reason"])
    # the gate's paired-bootstrap intervals are on the run, for the run page
    comparisons = run.gate["comparisons"]
    assert [c["candidate"] for c in comparisons][0] == "bundle_model"
    assert all(c["interval"][0] <= c["gain"] <= c["interval"][1] for c in comparisons)
    assert "bundle_model" in run.metrics["validation"] and "ease" in run.metrics["test"]
    for row in ("shipped", "shipped_refit"):
        assert run.metrics["test"][row]["choice"] == run.gate["chosen"]
        assert 0 < run.metrics["test"][row]["anchor_ndcg10"] <= 1
    assert run.config["fit"]["train.epochs"] == 3 and run.config["fit"]["blend_weights"][-1] == (
        "inf")
    # the returning-visitor policy the widget will apply, decided on validation
    assert run.serving_policy["mode"] in ("off", "boost", "demote")
    assert run.serving_policy == run.metrics["serving_policy"] and "policy" in run.timings
    # a product nobody bought is in the model's catalogue: it gets a list from its content
    # only (tests/test_newproducts.py), and is in no other product's list
    assert set(Recommendation.objects.filter(run=run, product=unsold).values_list(
        "source", flat=True)) == {"content"}
    assert not Recommendation.objects.filter(run=run, recommended=unsold).exists()
    assert run.progress["loss"]
    # stages that do not overlap, so the run page's sum is the run's total
    assert {"extract", "baselines", "model", "refit", "search", "publish"} <= set(run.timings)
    assert not {"total", "fit"} & set(run.timings)
    assert sum(run.timings.values()) <= (run.finished_at - run.started_at).total_seconds() + 1
    # The planted pair: P01 is P00's first complement.
    first = Recommendation.objects.filter(run=run, product=products[0]).order_by("rank").first()
    assert first.recommended == products[1] and first.source == run.gate["chosen"]
    assert first.evidence["orders_together"] > 100 and first.evidence["lift"] > 1
    bundle = Bundle.objects.filter(anchor=products[0]).first()
    assert bundle.status == Bundle.Status.PROPOSED and bundle.run == run
    assert products[1].pk in set(bundle.items.values_list("product", flat=True))
    assert bundle.evidence["orders_with_all"] >= 2 and "bought together in" in bundle.evidence[
        "explanation"]
    weights = Path(run.artifact_path) / "model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == run.artifact_sha256
    _, index, manifest = load_checkpoint(run.artifact_path)  # verifies the checksum
    assert str(unsold.pk) in index and len(index) == 31
    assert manifest["metrics"]["shipped_refit"] == run.metrics["test"]["shipped_refit"]
    assert manifest["extra"] == {"run": run.pk, "shipped": run.gate["chosen"],
                                 "model_is_shipped": "bundle_model" in run.gate["chosen"]}
    assert [p.name for p in artifacts.iterdir()] == [f"run-{run.pk}"]


def test_next_run_takes_over_and_respects_review_decisions():
    planted_shop()
    first, _ = train()
    rejected = Bundle.objects.filter(run=first).first()
    rejected.status = Bundle.Status.REJECTED
    rejected.save()
    second, status = train()
    assert status == TrainingRun.Status.SUCCEEDED
    first.refresh_from_db()
    assert second.is_active and not first.is_active
    assert TrainingRun.objects.filter(is_active=True).count() == 1
    # The rejected bundle is not proposed again (its evidence did not grow).
    assert Bundle.objects.filter(signature=rejected.signature).count() == 1
    assert Bundle.objects.filter(status=Bundle.Status.PROPOSED, run=first).count() == 0


def test_no_orders_fails_with_a_message():
    run, status = train()
    assert status == TrainingRun.Status.FAILED and run.pending is None
    assert "not enough data" in run.error and "found 0 order" in run.error


def test_one_product_only_fails_with_a_message():
    products = planted_shop(n_orders=10)
    Interaction.objects.exclude(product=products[0]).delete()
    run, _ = train()
    assert run.status == TrainingRun.Status.FAILED and "1 product" in run.error


def test_too_few_orders_to_split_fails_with_a_message_not_an_exception():
    planted_shop(n_orders=4)
    run, status = train()
    assert status == TrainingRun.Status.FAILED and run.pending is None
    assert run.error.startswith("cannot train on this data: too few orders (4)")


def test_bad_learning_settings_fail_the_run_with_a_message(settings):
    planted_shop(n_orders=40)
    settings.SHOP_RECS = {**settings.SHOP_RECS, "EASE_LAMBDAS": []}
    run, status = train()
    assert status == TrainingRun.Status.FAILED
    assert run.error.startswith("invalid training settings: ease_lambdas must be a non-empty")


def test_learning_settings_reach_the_protocol(settings):
    settings.SHOP_RECS = {**settings.SHOP_RECS, "EPOCHS": 7, "GATE_CONFIDENCE": 0.8,
                          "BLEND_WEIGHTS": [0, 1, "inf"], "MIN_PRODUCT_ORDERS": 3}
    run = request_training(trigger="t", config={"time_budget_s": 9, "seed": 4},
                           broker_check=False, enqueue=False)
    cfg, as_json = pipeline._fit_config(run)
    assert (cfg.train.epochs, cfg.gate.confidence, cfg.min_orders) == (7, 0.8, 3)
    assert cfg.blend_weights == (0, 1, float("inf")) and as_json["blend_weights"][-1] == "inf"
    assert cfg.train.time_budget_s == 9 and cfg.seed == 4  # the run's own config wins


def test_a_programming_error_fails_the_run_and_is_raised(monkeypatch):
    planted_shop(n_orders=60)

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")  # a numpy bug, say

    monkeypatch.setattr(pipeline, "fit_shop", broken)
    run = request_training(trigger="t", config=FAST, broker_check=False, enqueue=False)
    with pytest.raises(ValueError, match="broadcast"):
        pipeline.run_training(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and run.pending is None
    assert run.error == "ValueError: operands could not be broadcast together"
    assert "extract" in run.timings


def test_database_retries_do_not_use_up_attempts(monkeypatch, settings):
    settings.SHOP_RECS = {**settings.SHOP_RECS, "TRAINING_MAX_ATTEMPTS": 2}

    def blip(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(pipeline.data, "extract_baskets", blip)
    run = request_training(trigger="t", config=FAST, broker_check=False, enqueue=False)
    for retries in range(4):  # the first delivery, then three retries of the task
        with pytest.raises(OperationalError):
            pipeline.run_training(run.pk, retries=retries)
        run.refresh_from_db()
        assert run.status == TrainingRun.Status.RUNNING and run.attempts == 1
    with pytest.raises(OperationalError):  # retry 3 redelivered: its worker was lost
        pipeline.run_training(run.pk, retries=3)
    run.refresh_from_db()
    assert run.attempts == 2
    assert pipeline.run_training(run.pk, retries=3) is None  # lost twice: given up
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "delivered 2 times" in run.error


def test_only_one_pending_run_per_database():
    run = request_training(trigger="a", broker_check=False, enqueue=False)
    with pytest.raises(TrainingAlreadyPending) as caught:
        request_training(trigger="b", broker_check=False, enqueue=False)
    assert caught.value.run == run and TrainingRun.objects.count() == 1


def test_finished_runs_are_not_trained_again():
    planted_shop(n_orders=60)
    run, _ = train()
    finished = run.finished_at
    assert pipeline.run_training(run.pk) is None
    run.refresh_from_db()
    assert run.finished_at == finished and run.attempts == 1


def test_a_run_redelivered_too_often_fails_clearly(settings):
    run = request_training(trigger="t", broker_check=False, enqueue=False)
    TrainingRun.objects.filter(pk=run.pk).update(status="running", attempts=3)
    assert pipeline.run_training(run.pk) is None
    run.refresh_from_db()
    assert run.status == "failed" and "delivered 3 times" in run.error and run.pending is None


def test_a_run_warm_starts_from_the_serving_model_when_the_catalogue_grew():
    products = planted_shop()
    first, _ = train()
    assert first.artifact_path  # saved whichever candidate the gate shipped
    newcomer = Product.objects.create(sku="NEW", name="Gingham picnic hamper", price="9.00")
    for n in range(3):
        record_order(f"new-{n}", [{"product": newcomer}, {"product": products[5]}])
    second, status = train()
    assert status == TrainingRun.Status.SUCCEEDED, second.error
    assert second.config["warm_start_from"] == first.pk
    assert Recommendation.objects.filter(run=second, product=newcomer).exists()
    cold, _ = train(warm_start=False)
    assert "warm_start_from" not in cold.config
    # A run that saw data a customer asked to erase is never a starting point.
    TrainingRun.objects.filter(pk=cold.pk).update(config={**cold.config, "erased_data": {}})
    fresh, _ = train()
    assert "warm_start_from" not in fresh.config


def test_with_fbt_publishing_by_approval_a_new_run_waits_for_staff(settings):
    planted_shop(n_orders=120)
    first, _ = train()
    settings.SHOP_RECS = {**settings.SHOP_RECS, "FBT_PUBLISHING": "approval"}
    second, status = train()
    first.refresh_from_db()
    assert status == TrainingRun.Status.SUCCEEDED
    assert first.is_active and not second.is_active
    assert Recommendation.objects.filter(run=second).exists()  # ready to serve when approved


def test_runs_command_reports_and_reaps_lost_runs(capsys):
    run = request_training(trigger="t", broker_check=False, enqueue=False)
    long_ago = timezone.now() - timedelta(days=1)
    TrainingRun.objects.filter(pk=run.pk).update(status="running", heartbeat_at=long_ago,
                                                 started_at=long_ago)
    call_command("shop_recs_runs", "--json")
    out, err = capsys.readouterr()
    assert f"Run {run.pk} marked failed" in err
    (summary,) = json.loads(out)
    assert summary["status"] == "failed" and "worker was lost" in summary["error"]


def test_runs_command_abandons_unfinished_runs(capsys):
    done = request_training(trigger="t", broker_check=False, enqueue=False)
    finish(done, TrainingRun.Status.SUCCEEDED)
    running = request_training(trigger="t", broker_check=False, enqueue=False)
    TrainingRun.objects.filter(pk=running.pk).update(status="running", heartbeat_at=timezone.now())
    call_command("shop_recs_runs", "--json")  # recent progress: not reaped without --abandon
    running.refresh_from_db()
    assert running.status == "running"
    capsys.readouterr()

    call_command("shop_recs_runs", "--json", "--abandon")
    out, err = capsys.readouterr()
    assert f"Run {running.pk} marked failed" in err and f"Run {done.pk}" not in err
    running.refresh_from_db()
    done.refresh_from_db()
    assert running.status == "failed" and "abandoned" in running.error
    assert done.status == "succeeded"
    # the one-pending-run slot is free again
    assert request_training(trigger="t", broker_check=False, enqueue=False).status == "queued"


def test_a_run_reads_the_text_encoder_and_its_cache(artifacts, settings, tmp_path):
    """TEXT_ENCODER: every product's name and description embedded once on the worker,
    cached under the artifact folder, and read by the model's content tower."""
    from tests.ml.tiny_encoder import build_tiny_encoder

    from shop_recs.ml.text import product_text, text_keys

    folder = build_tiny_encoder(tmp_path / "encoder")
    settings.SHOP_RECS = {**settings.SHOP_RECS, "TEXT_ENCODER": str(folder)}
    products = planted_shop()
    Product.objects.filter(pk=products[0].pk).update(description="white ceramic teapot")
    run, status = train(epochs=1)
    assert status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.config["text_encoder"] == {"model": str(folder), "dim": 32}
    assert "text_encoder" in run.timings
    scorer = load_checkpoint(run.artifact_path)[0]
    assert scorer.model_config.text_dim == 32
    (cache,) = (artifacts / "text-cache").glob("text-*.npz")
    import numpy as np
    with np.load(cache) as stored:
        keys = set(stored["keys"].tolist())
    text = product_text(products[0].name, "white ceramic teapot")
    assert text_keys([text], str(folder))[0] in keys  # the description was read


def test_an_encoder_that_cannot_load_leaves_the_run_without_vectors(settings, tmp_path):
    settings.SHOP_RECS = {**settings.SHOP_RECS, "TEXT_ENCODER": str(tmp_path / "nowhere")}
    planted_shop()
    run = request_training(trigger="test", config=FAST, broker_check=False, enqueue=False)
    from shop_recs import data
    extract = data.extract_baskets(cutoff=timezone.now())
    assert pipeline._with_text_vectors(run, extract) is extract.attrs
    run.refresh_from_db()
    assert "does not exist" in run.config["text_encoder"]["error"]
    assert run.config["time_budget_s"] == 5  # what the run was asked for is kept
