"""Lists for new products: their label, their explanation, and queueing them on creation.

Every training run publishes lists for active products with no or few orders, scored from
their name, category and price (``shop_recs.publish``, ``shop_recs.ml.newproducts``). They are
``Recommendation`` rows of the run whose ``source`` is :data:`SOURCE` and whose evidence says
how they were found (``basis``: ``model`` or ``borrowed``; ``similar_to``: the most similar
product with orders) and carries :data:`EXPLANATION`.

A product created between runs gets its list from the ``shop_recs.publish_new_products``
task on the training queue, without waiting for the next run. Debounce: creating products
queues at most one task per transaction commit (``post_save`` with ``created``, on commit),
and while one task is queued and not started, later commits queue none (a cache flag,
:data:`QUEUED_KEY`): the task publishes every product that the serving run has no list for,
so an import of 10k products loads the model once or a few times, never 10k times.
``SHOP_RECS["NEW_PRODUCT_LISTS"] = False`` turns the task (not the run's lists) off.

Web-side module: no torch, no model code (the task body is ``publish.publish_new_products``).
"""

import logging

from django.db import router, transaction
from django.db.models.signals import post_save
from django.utils.translation import gettext, gettext_noop

from shop_recs.conf import recs_settings
from shop_recs.products import get_product_model

logger = logging.getLogger(__name__)

SOURCE = "content"  # Recommendation.source of lists scored from product content
TASK_NAME = "shop_recs.publish_new_products"  # shop_recs.tasks.publish_new_products
QUEUED_KEY = "shop_recs:newproducts:queued"
# Seconds the task waits after the first commit (a burst of creations joins it) and the most
# a queued flag lives (a task lost with its broker must not block the next creations).
DEBOUNCE_S = 5
QUEUED_TTL_S = 600
# Stored in the source language, translated where shown (explanation()).
EXPLANATION = gettext_noop("Chosen from the product's name and category; it has no orders yet")
LABEL = gettext_noop("from product content")


def explanation(evidence):
    """The translated explanation of a content list's row (None for other rows)."""
    if (evidence or {}).get("basis") is None or "explanation" not in evidence:
        return None
    return gettext(evidence["explanation"])


def evidence(basis, similar_to=None, similarity=0.0, how=None):
    """The evidence stored on a content row (JSON): how it was found, and why."""
    out = {"basis": basis, "explanation": EXPLANATION, "orders": 0}
    if similar_to is not None:
        out["similar_to"] = str(similar_to)
        out["similarity"] = round(float(similarity), 3)
    if how and how != basis:
        out["from"] = how  # borrowed from the similar product, or its category's bestsellers
    return out


def _cache():
    from django.core.cache import caches  # noqa: PLC0415

    return caches[recs_settings.CACHE_ALIAS]


def _send():
    """Queue one task unless one is already waiting; a cache that is down queues anyway."""
    from celery import current_app  # noqa: PLC0415 (the host project configures the app)

    try:
        if not _cache().add(QUEUED_KEY, 1, QUEUED_TTL_S):
            return False
    except Exception:  # noqa: BLE001 (any cache error: better two tasks than none)
        logger.warning("cache unavailable: queueing a new-product task anyway", exc_info=True)
    try:
        current_app.send_task(TASK_NAME, queue=recs_settings.TRAINING_QUEUE,
                              countdown=DEBOUNCE_S, retry=False)
    except Exception:  # noqa: BLE001 (a broker error must not fail the product's save)
        # the flag stays (QUEUED_TTL_S): the next saves do not wait on a broker that is down
        logger.warning("could not queue new-product lists; the next run publishes them",
                       exc_info=True)
        return False
    return True


def task_started():
    """Called by the task first: commits from now on queue a new task."""
    try:
        _cache().delete(QUEUED_KEY)
    except Exception:  # noqa: BLE001
        logger.warning("cache unavailable: could not clear %s", QUEUED_KEY, exc_info=True)


def queue_new_products(using=None):
    """Queue the new-product task once the current transaction commits (once per commit)."""
    if not recs_settings.NEW_PRODUCT_LISTS:
        return
    connection = transaction.get_connection(using)
    pending = getattr(connection, "run_on_commit", None) or ()
    if connection.in_atomic_block and any(entry[1] is _send for entry in pending):
        return  # this transaction already queues one
    transaction.on_commit(_send, using=using)


def product_created(sender, instance, created=False, raw=False, using=None, **kwargs):
    """``post_save`` of the product model: a new product gets a list soon."""
    if created and not raw:
        queue_new_products(using or router.db_for_write(sender))


def connect_receivers():
    """Connected by ``ShopRecsConfig.ready()``."""
    post_save.connect(product_created, sender=get_product_model(),
                      dispatch_uid="shop_recs.newproducts.created")


__all__ = ["SOURCE", "EXPLANATION", "LABEL", "explanation", "evidence", "queue_new_products",
           "product_created", "connect_receivers", "task_started"]
