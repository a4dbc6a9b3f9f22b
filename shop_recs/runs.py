"""Starting training runs safely, from the admin, a command, the API or a schedule.

Usage::

    from shop_recs.runs import request_training, BrokerUnavailable, TrainingAlreadyPending
    run = request_training(trigger="admin", user=request.user)

A run row is created and the Celery task queued once the transaction commits. At most
one run is queued or running per database (``TrainingRun.pending`` is unique), so two
simultaneous requests give one run. No torch here: web processes import this module.
"""

import logging
from datetime import timedelta
from functools import partial

from django.db import IntegrityError, transaction
from django.utils import timezone

from shop_recs.conf import recs_settings
from shop_recs.models import TrainingRun

logger = logging.getLogger(__name__)

TRAIN_TASK = "shop_recs.train_bundle_model"  # the name shop_recs.tasks registers


class TrainingAlreadyPending(Exception):
    """Another run is queued or running; it is available as ``.run``."""

    def __init__(self, run):
        super().__init__(f"training run {run.pk} is already {run.status}")
        self.run = run


class BrokerUnavailable(Exception):
    """The Celery broker cannot be reached, so no run could be queued."""


def check_broker(timeout=3):
    """Raise :class:`BrokerUnavailable` unless the Celery broker accepts a connection."""
    from celery import current_app  # noqa: PLC0415 (the host project configures the app)

    try:
        with current_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # kombu raises transport-specific errors
        raise BrokerUnavailable(
            f"the task broker is unreachable ({exc.__class__.__name__}: {exc}); "
            "no training run was queued"
        ) from exc


def finish(run, status, **fields):
    """Mark ``run`` finished with ``status``; see :meth:`TrainingRun.finish`."""
    return run.finish(status, **fields)


def reap_stale_runs(now=None):
    """Fail runs whose worker went away: no progress for longer than the hard time limit."""
    now = now or timezone.now()
    stale_after = timedelta(seconds=recs_settings.TRAINING_TIME_LIMIT + 60)
    reaped = []
    for run in TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING):
        last = run.heartbeat_at or run.started_at or run.created_at
        if last < now - stale_after:
            reaped.append(finish(run, TrainingRun.Status.FAILED, error=(
                f"no progress since {last:%Y-%m-%d %H:%M:%S %Z}: the worker was lost "
                f"(killed or out of memory) and the run was not redelivered")))
    for run in reaped:
        logger.warning("training run %s failed: %s", run.pk, run.error)
    return reaped


def abandon_unfinished_runs(reason):
    """Fail every queued or running run with ``reason``. Only for when no worker can be
    running them (e.g. a single-worker set-up that is starting up): a run that a worker
    still holds would be finished twice."""
    unfinished = TrainingRun.objects.filter(
        status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING])
    abandoned = [finish(run, TrainingRun.Status.FAILED, error=reason) for run in unfinished]
    for run in abandoned:
        logger.warning("training run %s abandoned: %s", run.pk, reason)
    return abandoned


def _enqueue(run_id):
    # Sent by name, not imported: shop_recs.tasks imports this module (the retrain task), and
    # the worker applies the task's own options (acks_late, retries) to the message.
    from celery import current_app  # noqa: PLC0415 (the host project configures the app)

    try:
        result = current_app.send_task(
            TRAIN_TASK, (run_id,), queue=recs_settings.TRAINING_QUEUE,
            soft_time_limit=recs_settings.TRAINING_SOFT_TIME_LIMIT,
            time_limit=recs_settings.TRAINING_TIME_LIMIT, retry=False,
        )
    except Exception as exc:
        logger.exception("could not queue training run %s", run_id)
        run = TrainingRun.objects.get(pk=run_id)
        finish(run, TrainingRun.Status.FAILED,
               error=f"could not be queued: the task broker is unreachable ({exc})")
        return
    TrainingRun.objects.filter(pk=run_id).update(task_id=result.id or "")


def request_training(*, trigger, user=None, config=None, broker_check=True, enqueue=True):
    """Create a queued run and queue its task on commit; return the run.

    Raises :class:`TrainingAlreadyPending` when a run is already queued or running and
    :class:`BrokerUnavailable` when the broker is down (nothing is created then). With
    ``enqueue=False`` the caller runs ``pipeline.run_training`` itself.
    """
    reap_stale_runs()
    pending = TrainingRun.objects.filter(pending=True).first()
    if pending:
        raise TrainingAlreadyPending(pending)
    if broker_check:
        check_broker()
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(trigger=trigger, requested_by=user,
                                             config=config or {})
            if enqueue:
                transaction.on_commit(partial(_enqueue, run.pk))
    except IntegrityError:
        # A simultaneous request created its run first. That run may already have been
        # finished (e.g. failed when its task could not be queued): never raise
        # DoesNotExist here, which would be a server error in the admin.
        other = TrainingRun.objects.filter(pending=True).first() or TrainingRun.objects.latest()
        raise TrainingAlreadyPending(other) from None
    return run
