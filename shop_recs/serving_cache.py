"""The serving cache: candidate lists, finished answers and what invalidates them.

``shop_recs.ranking`` computes recommendations; this module remembers them and forgets
them at the right time. Candidate lists are keyed by a *generation* that
``run_activated``, ``bundles_changed``, fallback refreshes, Bundle and BundleItem saves and
``SHOP_RECS`` changes bump. A finished answer (API body, widget HTML) records the cache
values it depends on, read with it in one ``get_many`` on every hit (one round trip):

- the generation;
- the *version token* of the shard of each of its anchors. Anchors are hashed into
  ``SHARDS`` shards. Saving or deleting a product deletes the tokens of its own shard and of
  the shards of every anchor whose stored lists (any run's FBT rows, the fallback lists,
  the bundles) hold it: one query per save, so that a price, stock or active change
  shows on the next request wherever the product is shown or was left out, and a restocked
  product comes back. A change of more than ``MAX_CHANGED`` products at once starts a new
  generation instead.

The cache holds at most ``SHARDS`` tokens and the generation, plus two entries per anchor
set served (its candidate list and its answer; a widget and the API answer separately), so
Django's default ``LocMemCache`` (300 entries) keeps the answers of the busiest products
and culls the tail, whose answers are cheap to compute (``ranking.compute_candidates``: one
indexed query). An evicted token or generation only makes answers miss.
``QuerySet.update()`` and raw SQL send no signal: call :func:`products_changed` after them.

A visitor with a session or a login sees the shared answer once ``ranking.has_history``
said they have no purchases; that is remembered (one key per identity, read in the same
``get_many``) until a purchase of theirs is saved or recorded through ``ingest``.

Every function here survives a cache that is down (it logs and behaves as a miss).
"""

import contextvars
import hashlib
import logging
import secrets
import uuid
from functools import lru_cache, partial

from django.core.cache import caches
from django.core.signals import request_finished, request_started, setting_changed
from django.db import DatabaseError, router, transaction
from django.db.models.signals import post_delete, post_save, pre_delete

from shop_recs.conf import recs_settings
from shop_recs.models import (Bundle, BundleItem, FallbackRecommendation, Interaction,
                              Recommendation)
from shop_recs.signals import bundles_changed, run_activated

logger = logging.getLogger(__name__)

GENERATION_KEY = "shop_recs:ranking:generation"
VERSION_PREFIX = "shop_recs:pv:"
# Shards of the anchors' version tokens: a product save invalidates the answers of the
# anchors that share a shard with it or with an anchor whose lists hold it.
SHARDS = 64
MAX_CHANGED = 1000  # products changed at once past which a new generation is cheaper
# The generation counts two kinds of change: an invalidation adds 1, a change of the A/B
# experiments' plans adds PLANS_STEP. Its plans part (:func:`plans_part`) moves only when
# the plans do, so a process keeps the plans it read across new runs and bundle decisions
# (``analytics.experiments.plans``) without reading anything more. Counters start at random
# below COUNTER_START: one that was evicted comes back with another plans part (2**38
# possible) and another value.
PLANS_STEP = 2**24
COUNTER_START = 2**62
ANSWER_PREFIX = "shop_recs:answer:"
NO_HISTORY_PREFIX = "shop_recs:nohistory:"


def _cache():
    return caches[recs_settings.CACHE_ALIAS]


def _counter(cache, key):
    """The counter ``key``, started at a random value when missing: one that was evicted
    never comes back with a value that old keys and answers still carry."""
    value = cache.get(key)
    if value is None:
        cache.add(key, secrets.randbelow(COUNTER_START) + 1, None)
        value = cache.get(key)
    return value


# What an answer lookup that missed read of the values the answer depends on:
# ``(anchors, {key: value})``. The computation that follows (``ranking.recommend``) takes
# it (:func:`take_read`) and tracks the answer and finds its candidate lists with those
# values, without reading them again; they were read before the computation, as tracking
# needs. Taken once, and emptied when a request starts and ends.
_read = contextvars.ContextVar("shop_recs_answer_read", default=None)


def forget_request_reads(**kwargs):
    _read.set(None)


def take_read(anchor_pks):
    """The values the lookup that just missed read for ``anchor_pks``, or ``{}``."""
    read = _read.get()
    _read.set(None)
    if read is None or read[0] != tuple(anchor_pks):
        return {}
    return read[1]


def current_generation(cache, read=None):
    generation = (read or {}).get(GENERATION_KEY)
    return generation if generation is not None else _counter(cache, GENERATION_KEY)


def candidates_cached(anchor_pks, generation=None):
    """Whether the candidate lists of ``anchor_pks`` are in the cache (no query)."""
    try:
        cache = _cache()
        if generation is None:
            generation = cache.get(GENERATION_KEY, 0)
        return cache.has_key(cache_key(anchor_pks, generation))
    except Exception:  # noqa: BLE001
        return False


def cache_key(anchor_pks, generation):
    text = "\x1f".join(sorted(str(pk) for pk in anchor_pks))
    digest = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    return f"shop_recs:candidates:v2:{generation}:{digest}"  # v2: with the run's policy


# Finished answers ---------------------------------------------------------------------

@lru_cache(maxsize=65536)
def _shard(pk):
    """Stable across processes (unlike ``hash``): the same shard in every web worker."""
    digest = hashlib.blake2b(str(pk).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % SHARDS


def _version_key(pk):
    return f"{VERSION_PREFIX}{_shard(pk)}"


def answer_timeout():
    """Seconds an answer stays cached: CACHE_TIMEOUT, but well inside the lifetime of
    the signed attribution tokens it carries. 0 turns answer caching off."""
    return min(recs_settings.CACHE_TIMEOUT, recs_settings.ATTRIBUTION_MAX_AGE // 2)


def answer_keys(anchor_pks):
    """The cache keys an answer for ``anchor_pks`` depends on: the generation and the
    version tokens of the anchors' shards."""
    return [GENERATION_KEY, *dict.fromkeys(_version_key(pk) for pk in anchor_pks)]


def begin_tracking(anchor_pks, read=None):
    """``{key: value}`` of :func:`answer_keys`, read before anything else so that a change
    during the computation leaves the answer invalid (a missing value is started: a
    counter at a random value, a token). None when answers are not cached, the cache is
    down or it evicted a value at once: the answer is then not stored."""
    if answer_timeout() <= 0:
        return None
    try:
        keys = answer_keys(anchor_pks)
        if read and all(read.get(key) is not None for key in keys):
            return {key: read[key] for key in keys}  # what the lookup read (take_read)
        cache = _cache()
        found = cache.get_many(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            for key in missing:  # add, not set: never replace a value another request holds
                cache.add(key, secrets.randbelow(COUNTER_START) + 1 if key == GENERATION_KEY
                          else uuid.uuid4().hex[:16], None)
            found.update(cache.get_many(missing))
            if len(found) < len(keys):
                return None
        return found
    except Exception:  # noqa: BLE001
        logger.warning("shop_recs cache unavailable; answer not tracked", exc_info=True)
        return None


@lru_cache(maxsize=8192)
def answer_key(parts):
    """The cache key of the answer for ``parts`` (a tuple of str-able values)."""
    text = "\x1f".join(str(p) for p in parts)
    digest = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    return f"{ANSWER_PREFIX}{digest}"


def lookup_answer(parts, anchor_pks, also=(), values=None):
    """``(payload, found, generation)``: the payload stored for ``parts`` (an answer for
    ``anchor_pks``) if still valid (else None), those of the keys ``also`` that the cache
    holds and the current generation. With ``values`` (a dict), the cache's values of its
    keys are read too and put in it (a key it lacks maps to None). One ``get_many``: the
    answer, what it depends on (:func:`answer_keys`, known before reading it), ``also`` and
    ``values``' keys. Never raises."""
    extra = list(values or ())
    if values is not None:
        values.update(dict.fromkeys(extra))
    if answer_timeout() <= 0:
        return None, (), None
    _read.set(None)
    try:
        stored = answer_key(parts)
        needs = answer_keys(anchor_pks)
        found = _cache().get_many(list(dict.fromkeys([stored, *needs, *also, *extra])))
    except Exception:  # noqa: BLE001
        logger.warning("shop_recs cache unavailable; answer not cached", exc_info=True)
        return None, (), None
    if values is not None:
        values.update({key: found.get(key) for key in extra})
    entry = found.get(stored)
    # None: invalidated, or a value it depends on was evicted
    if entry is None or any(found.get(key) != value for key, value in entry[0].items()):
        _read.set((tuple(anchor_pks), {key: found[key] for key in needs if key in found}))
        return None, (), found.get(GENERATION_KEY)
    depends, payload = entry
    return payload, [key for key in also if key in found], depends[GENERATION_KEY]


def cached_answer(parts, anchor_pks):
    """The payload stored for ``parts`` (an answer for ``anchor_pks``) if still valid,
    else None (never raises)."""
    return lookup_answer(parts, anchor_pks)[0]


def store_answer(parts, result, payload):
    """Cache ``payload``, built from ``result`` (``recommend(..., track=True)``), for
    visitors without history, with the candidate lists the computation left to write
    (``result.pending``): one ``set_many`` (one round trip) when their timeouts agree, as
    they do by default. Personalised results are never stored (their lists are)."""
    timeout = answer_timeout()
    if result.personalised or not result.versions or timeout <= 0:
        store_pending(result.pending)
        return
    entries = {answer_key(parts): (result.versions, payload)}
    if result.pending and timeout == recs_settings.CACHE_TIMEOUT:
        entries = {**result.pending, **entries}
    else:
        store_pending(result.pending)
    try:
        _cache().set_many(entries, timeout)
    except Exception:  # noqa: BLE001
        logger.warning("could not cache a shop_recs answer", exc_info=True)


def store_pending(pending):
    """Write the candidate lists a computation left to write (``ranking.cached_candidates``
    with ``pending``)."""
    if not pending:
        return
    try:
        _cache().set_many(pending, recs_settings.CACHE_TIMEOUT)
    except Exception:  # noqa: BLE001
        logger.warning("could not cache recommendations", exc_info=True)


# Visitors known to have no purchase history (shown the shared answer) ------------------

def no_history_keys(user_id, visitor_id):
    """One key per identity that ``ranking.has_history`` looks purchases up by."""
    keys = [] if user_id is None else [f"{NO_HISTORY_PREFIX}u:{user_id}"]
    if visitor_id:
        keys.append(f"{NO_HISTORY_PREFIX}v:{visitor_id}")
    return keys


def remember_no_history(keys):
    """After ``has_history`` said no: spares the query while an answer lives."""
    try:
        _cache().set_many(dict.fromkeys(keys, 1), answer_timeout())
    except Exception:  # noqa: BLE001
        logger.warning("shop_recs cache unavailable", exc_info=True)


def _forget_no_history(keys):
    try:
        _cache().delete_many(keys)
    except Exception:  # noqa: BLE001
        logger.warning("could not forget shop_recs visitors", exc_info=True)


def purchases_recorded(user_id, visitor_id, using=None):
    """The visitor has purchases now: personalised answers from the next request on
    (now, and again after the commit, as for products)."""
    keys = no_history_keys(user_id, visitor_id)
    if keys:
        _forget_no_history(keys)
        transaction.on_commit(partial(_forget_no_history, keys), using=using)


def interaction_saved(sender, instance, using=None, **kwargs):
    if instance.kind == Interaction.Kind.PURCHASE:
        purchases_recorded(instance.user_id, instance.visitor_id, using)


# Invalidation -------------------------------------------------------------------------

def plans_part(generation):
    """The part of a generation that only a change of the experiments' plans moves."""
    return generation // PLANS_STEP


def _bump(cache, key, delta=1):
    try:
        cache.incr(key, delta)
    except ValueError:
        pass  # missing: nothing can match it; the next reader starts a new one


def invalidate(plans=False, **kwargs):
    """Forget every cached candidate list and answer (a new generation); ``plans``: the
    experiments' plans changed too (see ``PLANS_STEP``)."""
    try:
        _bump(_cache(), GENERATION_KEY, PLANS_STEP if plans is True else 1)
    except Exception:  # noqa: BLE001 (a cache that is down holds nothing stale)
        logger.warning("could not invalidate the shop_recs cache", exc_info=True)


def _forget(keys):
    """New tokens for these shards: the answers that depend on them miss."""
    try:
        _cache().delete_many(keys)
    except Exception:  # noqa: BLE001
        logger.warning("could not invalidate shop_recs answers", exc_info=True)


def _listing(pks, using):
    """The anchors whose stored lists hold any of ``pks``: any run's FBT rows (an
    experiment may serve another run than the active one), the fallback lists and the
    bundles. One query (indexed lookups by the recommended product)."""
    parts = [model.objects.using(using).filter(**{f"{field}__in": pks}).order_by()
             .values_list(anchor, flat=True)
             for model, field, anchor in ((Recommendation, "recommended", "product_id"),
                                          (FallbackRecommendation, "recommended", "product_id"),
                                          (BundleItem, "product", "bundle__anchor_id"))]
    return set(parts[0].union(*parts[1:]))


def _changed(pks, using):
    """Forget the answers that show ``pks`` or left them out: now, so that the saving
    request sees it, and again after the commit, so that no request reading the rows
    before the commit leaves an answer behind."""
    if len(pks) > MAX_CHANGED:
        invalidate()
        transaction.on_commit(invalidate, using=using)
        return
    try:
        anchors = _listing(pks, using)
    except DatabaseError:  # lists unreadable: forget every answer rather than a stale one
        logger.warning("could not read the lists holding changed products", exc_info=True)
        invalidate()
        transaction.on_commit(invalidate, using=using)
        return
    keys = list(dict.fromkeys(_version_key(pk) for pk in [*pks, *anchors]))
    _forget(keys)
    transaction.on_commit(partial(_forget, keys), using=using)


def products_changed(pks):
    """Forget the answers that show or left out any of ``pks`` (after an ``update()``, a
    stock change stored elsewhere, or an import that sends no signals)."""
    from shop_recs.products import get_product_model  # noqa: PLC0415

    _changed(list(pks), router.db_for_write(get_product_model()))


def product_saved(sender, instance, using=None, **kwargs):
    """``post_save``/``pre_delete`` of the product model (before a delete, while the lists
    that hold the product still do): one query."""
    _changed([instance.pk], using)


def settings_changed(*, setting, **kwargs):
    if setting in ("SHOP_RECS", "SHOP_RECS_PRODUCT_MODEL", "LANGUAGE_CODE"):
        invalidate()


def connect_receivers():
    """Invalidate on new runs, bundle decisions, bundle and product edits, purchases
    (idempotent)."""
    from shop_recs.products import get_product_model  # noqa: PLC0415

    for signal in (request_started, request_finished):
        signal.connect(forget_request_reads,
                       dispatch_uid=f"shop_recs.ranking.request.{signal is request_started}")
    run_activated.connect(invalidate, dispatch_uid="shop_recs.ranking.run")
    bundles_changed.connect(invalidate, dispatch_uid="shop_recs.ranking.bundles")
    setting_changed.connect(settings_changed, dispatch_uid="shop_recs.ranking.settings")
    for model in (Bundle, BundleItem):
        for signal in (post_save, post_delete):
            signal.connect(invalidate, sender=model,
                           dispatch_uid=f"shop_recs.ranking.{model.__name__}.{signal is post_save}")
    post_save.connect(interaction_saved, sender=Interaction,
                      dispatch_uid="shop_recs.ranking.interaction")
    product = get_product_model()
    for signal in (post_save, pre_delete):
        signal.connect(product_saved, sender=product,
                       dispatch_uid=f"shop_recs.ranking.product.{signal is post_save}")
