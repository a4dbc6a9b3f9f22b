"""Celery tasks of shop_recs: thin wrappers that take ids and call ``pipeline``.

Routing, time limits and retries are set where the task is queued
(``shop_recs.runs.request_training``). Run a training worker with::

    celery -A yourproject worker -Q shop_recs.gpu -c 1 --prefetch-multiplier 1

``publish_new_products`` (lists for products created between runs) runs on the same queue.
The pipeline (and torch) is imported inside the task body only, so web processes that
import this module to queue work never load torch.
"""

from celery import shared_task
from celery.contrib.django.task import DjangoTask
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError


@shared_task(
    base=DjangoTask,
    bind=True,
    name="shop_recs.train_bundle_model",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError, BrokerError),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def train_bundle_model(self, run_id):
    """Train, evaluate, gate and publish training run ``run_id`` (idempotent by id)."""
    from shop_recs import pipeline  # noqa: PLC0415 (keeps torch out of web processes)

    # the retry count tells a retry after a database error from a redelivery (pipeline._claim)
    return pipeline.run_training(run_id, task_id=self.request.id or "",
                                 retries=self.request.retries or 0)


@shared_task(base=DjangoTask, name="shop_recs.retrain")
def retrain():
    """Periodic retraining (django-celery-beat): queue a run unless one is pending."""
    from shop_recs.runs import TrainingAlreadyPending, request_training  # noqa: PLC0415

    try:
        return request_training(trigger="schedule", broker_check=False).pk
    except TrainingAlreadyPending as exc:
        return exc.run.pk


@shared_task(
    base=DjangoTask,
    name="shop_recs.refresh_fallbacks",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    max_retries=3,
)
def refresh_fallbacks():
    """Recompute the stored fallback lists from the orders (scheduled daily; cheap)."""
    from shop_recs import fallbacks  # noqa: PLC0415

    return fallbacks.refresh()


@shared_task(
    base=DjangoTask,
    name="shop_recs.rollup_analytics",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    max_retries=3,
)
def rollup_analytics():
    """Recompute the analytics roll-ups of the days not final yet (scheduled hourly; each
    day is replaced whole, so a retry or a second worker does no harm)."""
    from shop_recs.analytics import rollups  # noqa: PLC0415

    return rollups.rollup_pending()


@shared_task(
    base=DjangoTask,
    name="shop_recs.publish_new_products",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    max_retries=3,
)
def publish_new_products(pks=None):
    """Lists for products created since the serving run, scored from their content by its
    checkpoint (queued by ``shop_recs.newproducts`` on product creation, on the training
    queue). ``pks`` None: every product the serving run has no list for."""
    from shop_recs import content_lists, newproducts  # noqa: PLC0415 (torch: worker only)
    from shop_recs.conf import recs_settings  # noqa: PLC0415

    newproducts.task_started()  # creations committed from now on queue another task
    if not recs_settings.NEW_PRODUCT_LISTS:
        return None
    return content_lists.publish_new_products(pks)
