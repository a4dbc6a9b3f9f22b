"""The serving cache: candidate lists, finished answers and what invalidates them.

``shop_recs.ranking`` computes recommendations; this module remembers them and forgets
them at the right time. Candidate lists are keyed by a *generation* that
``run_activated``, ``bundles_changed``, fallback refreshes, Bundle and BundleItem saves and
``SHOP_RECS`` changes bump. A finished answer (API body, widget HTML) records the cache
values it depends on, checked together on every hit (two ``get_many``: the answer, then
what it names):

- the generation;
- the *version token* of the shard of every product it shows (anchors and items) and of
  every candidate it left out ahead of them (inactive, out of stock). Products are hashed
  into ``SHARDS`` shards; saving or deleting a product deletes its shard's token, so a
  price, stock or active change shows on the next request, and a restocked product that an
  answer left out comes back.

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

import hashlib
import logging
import secrets
import uuid
from functools import partial

from django.core.cache import caches
from django.core.signals import setting_changed
from django.db import router, transaction
from django.db.models.signals import post_delete, post_save

from shop_recs.conf import recs_settings
from shop_recs.models import Bundle, BundleItem, Interaction
from shop_recs.signals import bundles_changed, run_activated

logger = logging.getLogger(__name__)

GENERATION_KEY = "shop_recs:ranking:generation"
VERSION_PREFIX = "shop_recs:pv:"
# Shards of the product version tokens: a product save invalidates the answers that show
# (or left out) a product of its shard, about 6 / SHARDS of them for a 3-item widget.
SHARDS = 64
ANSWER_PREFIX = "shop_recs:answer:"
NO_HISTORY_PREFIX = "shop_recs:nohistory:"


def _cache():
    return caches[recs_settings.CACHE_ALIAS]


def _counter(cache, key):
    """The counter ``key``, started at a random value when missing: one that was evicted
    never comes back with a value that old keys and answers still carry."""
    value = cache.get(key)
    if value is None:
        cache.add(key, secrets.randbelow(2**48) + 1, None)
        value = cache.get(key)
    return value


def current_generation(cache):
    return _counter(cache, GENERATION_KEY)


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


def begin_tracking():
    """The generation an answer starts from, read before anything else so that an
    invalidation during the computation leaves it invalid. None when answers are not
    cached or the cache is down."""
    if answer_timeout() <= 0:
        return None
    try:
        return {GENERATION_KEY: _counter(_cache(), GENERATION_KEY)}
    except Exception:  # noqa: BLE001
        logger.warning("shop_recs cache unavailable; answer not tracked", exc_info=True)
        return None


def _product_versions(pks):
    """``{version key: token}`` of the shards of ``pks``; a shard without a token gets one.

    Read before the products are fetched: a save from then on deletes the token, so an
    answer built from what the fetch returns cannot outlive a change it did not see.
    """
    try:
        cache = _cache()
        keys = list(dict.fromkeys(_version_key(pk) for pk in pks))
        found = cache.get_many(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            for key in missing:  # add, not set: never replace a token another request holds
                cache.add(key, uuid.uuid4().hex[:16], None)
            found.update(cache.get_many(missing))
            if len(found) < len(keys):
                return None  # evicted at once: do not store the answer
        return found
    except Exception:  # noqa: BLE001
        logger.warning("shop_recs cache unavailable; answer not tracked", exc_info=True)
        return None


def track_answer(stamp, versions, shown, hidden):
    """What an answer showing ``shown`` (anchors and items) and leaving out ``hidden``
    (candidates filtered out ahead of the last item shown) depends on. None: do not store
    the answer."""
    if stamp is None or versions is None:
        return None
    keys = {_version_key(pk) for pk in [*shown, *hidden]}
    return {**stamp, **{key: token for key, token in versions.items() if key in keys}}


def answer_key(parts):
    text = "\x1f".join(str(p) for p in parts)
    digest = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    return f"{ANSWER_PREFIX}{digest}"


def lookup_answer(parts, also=(), values=None):
    """``(payload, found, generation)``: the payload stored for ``parts`` if still valid
    (else None), those of the keys ``also`` that the cache holds and the answer's
    generation. With ``values`` (a dict), the cache's values of its keys are read with the
    answer and put in it (a key it lacks maps to None). Two ``get_many``: the answer (with
    ``values``' keys), then the generation and shard tokens it names (with ``also``).
    Reading all 64 shard tokens with the answer instead measured slower on Redis (2.42×
    the trivial view warm, against 2.2× for two round trips on loopback). Never raises."""
    extra = list(values or ())
    if values is not None:
        values.update(dict.fromkeys(extra))
    if answer_timeout() <= 0:
        return None, (), None
    try:
        cache = _cache()
        stored = answer_key(parts)
        first = cache.get_many([stored, *extra])
        if values is not None:
            values.update({key: first.get(key) for key in extra})
        entry = first.get(stored)
        if entry is None:
            return None, (), None
        depends, payload = entry
        found = cache.get_many([*depends, *also])
        if any(found.get(key) != value for key, value in depends.items()):
            return None, (), None  # invalidated (or something it depends on was evicted)
        return payload, [key for key in also if key in found], depends[GENERATION_KEY]
    except Exception:  # noqa: BLE001
        logger.warning("shop_recs cache unavailable; answer not cached", exc_info=True)
        return None, (), None


def cached_answer(parts):
    """The payload stored for ``parts`` if still valid, else None (never raises)."""
    return lookup_answer(parts)[0]


def store_answer(parts, result, payload):
    """Cache ``payload``, built from ``result`` (``recommend(..., track=True)``), for
    visitors without history. Personalised results are never stored."""
    if result.personalised or not result.versions or answer_timeout() <= 0:
        return
    try:
        _cache().set(answer_key(parts), (result.versions, payload), answer_timeout())
    except Exception:  # noqa: BLE001
        logger.warning("could not cache a shop_recs answer", exc_info=True)


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

def _bump(cache, key):
    try:
        cache.incr(key)
    except ValueError:
        pass  # missing: nothing can match it; the next reader starts a new one


def invalidate(**kwargs):
    """Forget every cached candidate list and answer (a new generation)."""
    try:
        _bump(_cache(), GENERATION_KEY)
    except Exception:  # noqa: BLE001 (a cache that is down holds nothing stale)
        logger.warning("could not invalidate the shop_recs cache", exc_info=True)


def _forget(pks):
    """New tokens for the shards of ``pks``: the answers that depend on them miss."""
    try:
        _cache().delete_many(list(dict.fromkeys(_version_key(pk) for pk in pks)))
    except Exception:  # noqa: BLE001
        logger.warning("could not invalidate shop_recs answers", exc_info=True)


def _changed(pks, using):
    # Now, so that the saving request sees it, and again after the commit, so that no
    # request reading the rows before the commit leaves an answer behind.
    _forget(pks)
    transaction.on_commit(partial(_forget, pks), using=using)


def products_changed(pks):
    """Forget the answers that show or left out any of ``pks`` (after an ``update()``, a
    stock change stored elsewhere, or an import that sends no signals)."""
    from shop_recs.products import get_product_model  # noqa: PLC0415

    _changed(list(pks), router.db_for_write(get_product_model()))


def product_saved(sender, instance, using=None, **kwargs):
    """``post_save``/``post_delete`` of the product model: no query."""
    _changed([instance.pk], using)


def settings_changed(*, setting, **kwargs):
    if setting in ("SHOP_RECS", "SHOP_RECS_PRODUCT_MODEL", "LANGUAGE_CODE"):
        invalidate()


def connect_receivers():
    """Invalidate on new runs, bundle decisions, bundle and product edits, purchases
    (idempotent)."""
    from shop_recs.products import get_product_model  # noqa: PLC0415

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
    for signal in (post_save, post_delete):
        signal.connect(product_saved, sender=product,
                       dispatch_uid=f"shop_recs.ranking.product.{signal is post_save}")
