"""Training jobs: extract -> train -> evaluate -> gate -> publish, one function per job.

``run_training(run_id)`` is what the Celery task calls. It is idempotent by run id: a
finished run is left alone, and a run redelivered after its worker died starts over
(up to ``TRAINING_MAX_ATTEMPTS`` lost deliveries; a retry the task schedules itself after a
database error is not one). Publishing is one transaction, so the previously active run keeps
serving until the new rows are all written.

Failures: data the learning core cannot learn from (:class:`~shop_recs.ml.types.DataError`,
``data.NotEnoughData``) fails the run with a message for the shop; database errors propagate
so that the task retries; anything else is a bug or an environment problem: the run fails
with the exception's name and the exception is raised again, so the worker logs it.

``run.timings`` holds stages that do not overlap (seconds); their sum is the run's total.
"""

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from shop_recs import data, fallbacks, publish
from shop_recs.conf import recs_settings
from shop_recs.ml.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from shop_recs.ml.distributed import resolve_processes
from shop_recs.ml.protocol import (SETTINGS, ConfigError, configure, fit_shop,
                                   get_default_config)
from shop_recs.ml.text import LazyEncoder, TextEncoderError, embed_products
from shop_recs.ml.train import resolve_device
from shop_recs.ml.types import DataError
from shop_recs.models import TrainingRun

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0


class RunProgress:
    """Writes training progress to the run row, at most every few seconds."""

    def __init__(self, run):
        self.run = run
        self.last = 0.0
        self.curve = {"evaluate": {"loss": [], "val_metric": []}, "refit": {"loss": []}}

    def __call__(self, stage, report):
        if report.kind == "epoch":
            self.curve.setdefault(stage, {"loss": []})["loss"].append(round(float(report.loss), 5))
            if stage == "evaluate":
                self.curve[stage]["val_metric"].append(
                    None if report.val_metric is None else round(float(report.val_metric), 5))
        now = time.monotonic()
        if report.kind != "epoch" and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        evaluate = self.curve["evaluate"]
        progress = {"stage": stage, "epoch": report.epoch,
                    "percent": round(100 * float(report.fraction), 1),
                    "examples_per_s": round(float(report.examples_per_s)),
                    "loss": evaluate["loss"], "val_metric": evaluate["val_metric"],
                    "refit_loss": self.curve["refit"]["loss"]}
        TrainingRun.objects.filter(pk=self.run.pk).update(progress=progress,
                                                          heartbeat_at=timezone.now())


def _with_text_vectors(run, extract):
    """The catalogue's attributes with the pretrained text encoder's vectors of each product's
    name and description when ``TEXT_ENCODER`` is set (cached under the artifact folder).

    An encoder that cannot be loaded does not stop the run: it trains without the vectors
    and the run's config says why.
    """
    name = recs_settings.TEXT_ENCODER
    if not name:
        return extract.attrs
    try:
        vecs = embed_products(list(extract.attrs.names), data.product_descriptions(extract.pks),
                              LazyEncoder(str(name)), artifact_root() / "text-cache")
        note = {"model": str(name), "dim": int(vecs.shape[1])}
        attrs = dataclasses.replace(extract.attrs, text_vectors=vecs)
    except TextEncoderError as exc:
        logger.warning("run %s trains without the text encoder: %s", run.pk, exc)
        note, attrs = {"model": str(name), "error": str(exc)}, extract.attrs
    run.refresh_from_db(fields=["config"])
    run.config = {**(run.config or {}), "text_encoder": note}
    TrainingRun.objects.filter(pk=run.pk).update(config=run.config)
    return attrs


def artifact_root():
    """``SHOP_RECS["ARTIFACT_DIR"]``, else ``MEDIA_ROOT/shop_recs_artifacts`` (check E005)."""
    if recs_settings.ARTIFACT_DIR:
        return Path(recs_settings.ARTIFACT_DIR)
    if not settings.MEDIA_ROOT:
        raise ImproperlyConfigured("set SHOP_RECS['ARTIFACT_DIR'] (or MEDIA_ROOT) to a folder "
                                   "for model checkpoints")
    return Path(settings.MEDIA_ROOT) / "shop_recs_artifacts"


def _claim(run_id, task_id, retries=0):
    """Mark the run running; None when there is nothing to do (finished or gone).

    ``retries`` is the task's retry count. A retry the task scheduled after a database error
    arrives with a higher count than the run has seen and is not an attempt; a message
    redelivered because its worker was lost arrives with the same count and is one.
    """
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.is_finished:
            logger.info("training run %s: nothing to do (%s)", run_id,
                        "missing" if run is None else run.status)
            return None
        config = run.config or {}
        retried = run.attempts > 0 and retries > int(config.get("task_retries", 0))
        if not retried and run.attempts >= recs_settings.TRAINING_MAX_ATTEMPTS:
            run.finish(TrainingRun.Status.FAILED, error=(
                f"delivered {run.attempts} times without finishing: the worker was lost each "
                f"time (killed, or out of memory?)"))
            return None
        run.status = TrainingRun.Status.RUNNING
        if retried:
            logger.info("training run %s: retry %d after a database error", run_id, retries)
            run.config = {**config, "task_retries": retries}
        else:
            run.attempts += 1
        run.task_id = task_id or run.task_id
        run.started_at = run.heartbeat_at = timezone.now()
        run.error = ""
        run.save(update_fields=["status", "attempts", "task_id", "started_at", "heartbeat_at",
                                "error", "config"])
        return run


# run.config key (set by the command, the admin, the API) -> protocol setting
RUN_CONFIG = {"time_budget_s": "train.time_budget_s", "epochs": "train.epochs",
              "device": "train.device", "seed": "seed"}


def fit_overrides(run=None):
    """The protocol settings of a run: SHOP_RECS, then the run's own ``config``."""
    overrides = {path: getattr(recs_settings, key) for key, path in SETTINGS.items()}
    for key, path in RUN_CONFIG.items():
        if key in ((run.config or {}) if run is not None else {}):
            overrides[path] = run.config[key]
    # data-parallel training: this worker's share of TRAINING_PROCESSES ("auto": its GPUs);
    # the processes are started and supervised inside this task (shop_recs.ml.distributed)
    try:
        overrides["train.processes"] = resolve_processes(
            recs_settings.TRAINING_PROCESSES, overrides.get("train.device", "auto"))
    except ValueError as exc:  # a bad value (shop_recs.E002 says so at start-up)
        raise ConfigError(str(exc)) from None
    return overrides


def _fit_config(run):
    """(protocol config, its overrides as JSON) of ``run``; raises ConfigError."""
    overrides = fit_overrides(run)
    cfg = configure(get_default_config(), overrides)
    as_json = {k: [str(x) if isinstance(x, float) and not np.isfinite(x) else x for x in v]
               if isinstance(v, (list, tuple)) else v for k, v in overrides.items()}
    return cfg, as_json


def _previous_model(run):
    """The serving run's checkpoint as (scorer, index) for a warm start, or None."""
    previous = TrainingRun.objects.filter(is_active=True).exclude(pk=run.pk).first()
    if previous is None or not previous.artifact_path:
        return None
    if "erased_data" in (previous.config or {}):  # shop_recs.privacy flagged it
        logger.info("run %s: no warm start from run %s, which saw erased data", run.pk,
                    previous.pk)
        return None
    try:
        scorer, index, _ = load_checkpoint(previous.artifact_path)
    except CheckpointError as exc:
        logger.warning("run %s: no warm start from run %s (%s)", run.pk, previous.pk, exc)
        return None
    TrainingRun.objects.filter(pk=run.pk).update(
        config={**(run.config or {}), "warm_start_from": previous.pk})
    return scorer, index


def _save_artifact(run, fitted, cutoff):
    """Write the checkpoint into a temporary folder, then rename it into place.

    The neural model is saved even when the gate shipped a baseline: the next run
    warm-starts from it.
    """
    root = artifact_root()
    final = root / f"run-{run.pk}"
    tmp = root / f".run-{run.pk}.tmp{os.getpid()}"
    for leftover in root.glob(f".run-{run.pk}.tmp*"):  # from attempts that were killed
        shutil.rmtree(leftover, ignore_errors=True)
    manifest = save_checkpoint(tmp, fitted.trained, fitted.trained_index,
                               data_cutoff=int(cutoff.timestamp()),
                               # the saved model is refit on every order, so no test figure
                               # is its own: shipped_refit is the same recipe without the test
                               # period, shipped the winner as trained on the split
                               metrics={k: v for k, v in fitted.metrics["test"].items()
                                        if k in ("shipped", "shipped_refit")},
                               extra={"run": run.pk, "shipped": fitted.choice,
                                      "model_is_shipped": fitted.model is not None})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return str(final), manifest["weights_sha256"]


def run_training(run_id, task_id="", retries=0):
    """Train, evaluate, gate and publish run ``run_id``; returns the run's final status.

    ``retries``: the Celery task's retry count (see :func:`_claim`).
    """
    run = _claim(run_id, task_id, retries)
    if run is None:
        return None
    timings = {}
    try:
        started = time.monotonic()
        cutoff = timezone.now()
        extract = data.extract_baskets(cutoff=cutoff)
        timings["extract"] = round(time.monotonic() - started, 2)
        t0 = time.monotonic()
        cfg, settings_used = _fit_config(run)
        device = resolve_device(cfg.train.device)
        init_from = _previous_model(run) if (run.config or {}).get("warm_start", True) else None
        run.refresh_from_db(fields=["config"])
        TrainingRun.objects.filter(pk=run.pk).update(
            data_cutoff=cutoff, counts=extract.counts, device=str(device),
            config={**(run.config or {}), "fit": settings_used})
        timings["setup"] = round(time.monotonic() - t0, 2)  # settings, warm-start checkpoint
        t1 = time.monotonic()
        attrs = _with_text_vectors(run, extract)
        if attrs is not extract.attrs:  # embedding (or reading the cache) took this long
            timings["text_encoder"] = round(time.monotonic() - t1, 2)
        t1 = time.monotonic()
        fitted = fit_shop(extract.baskets, extract.index, attrs, cfg,
                          progress=RunProgress(run), init_from=init_from)
        # fit_shop's stages (baselines, model, refit, ...) cover the fit; what is left is setup
        timings.update({k: round(v, 2) for k, v in fitted.timings.items()})
        timings["fit_other"] = round(max(time.monotonic() - t1 - sum(fitted.timings.values()),
                                         0.0), 2)
        t2 = time.monotonic()
        path, sha = _save_artifact(run, fitted, cutoff)
        timings["artifact"] = round(time.monotonic() - t2, 2)
        pks = np.asarray(extract.pks, dtype=object)[extract.index.lookup(fitted.index.ids)]
        t3 = time.monotonic()
        rows = publish.build(fitted, list(pks))  # lists, bundles, and new products' lists
        timings["content"] = round(rows.content_s, 2)
        timings["search"] = round(time.monotonic() - t3 - rows.content_s, 2)
        run.refresh_from_db()
        run.metrics = fitted.metrics | {"split": fitted.split}
        run.serving_policy = fitted.metrics.get("serving_policy") or {}
        run.gate = {"chosen": fitted.choice, **fitted.gate}
        run.shipped_model = fitted.choice[:60]
        run.artifact_path, run.artifact_sha256 = path, sha
        t4 = time.monotonic()
        publish.activate(run, rows)
        timings["publish"] = round(time.monotonic() - t4, 2)
        t5 = time.monotonic()
        fallbacks.refresh(extract)
        timings["fallbacks"] = round(time.monotonic() - t5, 2)
        TrainingRun.objects.filter(pk=run.pk).update(timings=timings)
    except data.NotEnoughData as exc:
        run.finish(TrainingRun.Status.FAILED, error=f"not enough data: {exc}", timings=timings)
        return TrainingRun.Status.FAILED
    except DataError as exc:  # the learning core's checks: too few orders to split, ...
        run.finish(TrainingRun.Status.FAILED, error=f"cannot train on this data: {exc}",
                   timings=timings)
        return TrainingRun.Status.FAILED
    except ConfigError as exc:  # a SHOP_RECS learning setting or the run's config
        run.finish(TrainingRun.Status.FAILED, error=f"invalid training settings: {exc}",
                   timings=timings)
        return TrainingRun.Status.FAILED
    except (OperationalError, InterfaceError):
        # Transient database trouble: the task retries and claims the run again (that retry
        # is not counted as an attempt). The run cannot be written to now anyway.
        raise
    except Exception as exc:
        logger.exception("training run %s failed", run_id)
        run.finish(TrainingRun.Status.FAILED, error=f"{exc.__class__.__name__}: {exc}",
                   timings=timings)
        raise
    logger.info("training run %s succeeded: %s", run.pk, run.gate.get("reason"))
    return TrainingRun.Status.SUCCEEDED
