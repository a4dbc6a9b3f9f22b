"""The serving cache: candidate lists, finished answers, product version tokens.

``shop_recs.ranking`` computes recommendations; this module remembers them and forgets
them at the right time. Candidate lists and finished answers (API bodies, widget HTML)
are keyed by a *generation* that ``run_activated``, ``bundles_changed``, Bundle and
BundleItem saves and ``SHOP_RECS`` changes bump. A finished answer also records the
version token of every product it depends on; saving or deleting a product gives it a
new token. ``QuerySet.update()`` and raw SQL send no signal: call
:func:`products_changed` after them. Every function here survives a cache that is down
(it logs and behaves as a miss).
"""

import hashlib
import logging
import uuid

from django.core.cache import caches
from django.core.signals import setting_changed
from django.db.models.signals import post_delete, post_save

from shop_recs.conf import recs_settings
from shop_recs.models import Bundle, BundleItem
from shop_recs.signals import bundles_changed, run_activated

logger = logging.getLogger(__name__)

GENERATION_KEY = "shop_recs:ranking:generation"
VERSION_PREFIX = "shop_recs:pv:"
ANSWER_PREFIX = "shop_recs:answer:"


def _cache():
    return caches[recs_settings.CACHE_ALIAS]


def _generation():
    try:
        return _cache().get(GENERATION_KEY, 0)
    except Exception:  # noqa: BLE001
        return None


def candidates_cached(anchor_pks):
    """Whether the candidate lists of ``anchor_pks`` are in the cache (no query)."""
    try:
        cache = _cache()
        return cache.has_key(cache_key(anchor_pks, cache.get(GENERATION_KEY, 0)))
    except Exception:  # noqa: BLE001
        return False


# Finished answers (API bodies, widget HTML) and product version tokens ---------------

def _version_key(pk):
    return f"{VERSION_PREFIX}{pk}"


def _product_versions(pks):
    """``{version key: token}`` of ``pks``; products without a token get a new one."""
    try:
        cache = _cache()
        keys = list(dict.fromkeys(_version_key(pk) for pk in pks))
        found = cache.get_many(keys)
        for key in keys:
            if key not in found:
                token = uuid.uuid4().hex[:16]
                found[key] = token if cache.add(key, token, None) else cache.get(key)
        return found
    except Exception:  # noqa: BLE001
        logger.warning("shop_recs cache unavailable; answer not tracked", exc_info=True)
        return None


def answer_timeout():
    """Seconds an answer stays cached: CACHE_TIMEOUT, but well inside the lifetime of
    the signed attribution tokens it carries. 0 turns answer caching off."""
    return min(recs_settings.CACHE_TIMEOUT, recs_settings.ATTRIBUTION_MAX_AGE // 2)


def answer_key(parts, generation):
    text = "\x1f".join(str(p) for p in parts)
    digest = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    return f"{ANSWER_PREFIX}{generation}:{digest}"


def cached_answer(parts):
    """The payload stored for ``parts`` if still valid, else None (never raises)."""
    if answer_timeout() <= 0:
        return None
    try:
        cache = _cache()
        entry = cache.get(answer_key(parts, cache.get(GENERATION_KEY, 0)))
        if entry is None:
            return None
        versions, payload = entry
        if versions and cache.get_many(list(versions)) != versions:
            return None  # a product changed (or its token was evicted)
        return payload
    except Exception:  # noqa: BLE001
        logger.warning("shop_recs cache unavailable; answer not cached", exc_info=True)
        return None


def store_answer(parts, result, payload):
    """Cache ``payload``, built from ``result`` (``recommend(..., track=True)``), for
    visitors without history. Personalised results are never stored."""
    if (result.personalised or result.versions is None or result.generation is None
            or answer_timeout() <= 0):
        return
    try:
        _cache().set(answer_key(parts, result.generation), (result.versions, payload),
                     answer_timeout())
    except Exception:  # noqa: BLE001
        logger.warning("could not cache a shop_recs answer", exc_info=True)


def cache_key(anchor_pks, generation):
    text = "\x1f".join(sorted(str(pk) for pk in anchor_pks))
    digest = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    return f"shop_recs:candidates:{generation}:{digest}"


# Invalidation -------------------------------------------------------------------------

def invalidate(**kwargs):
    """Forget every cached candidate list (a new generation of cache keys)."""
    try:
        cache = _cache()
        try:
            cache.incr(GENERATION_KEY)
        except ValueError:
            cache.set(GENERATION_KEY, 1, None)
    except Exception:  # noqa: BLE001 (a cache that is down holds nothing stale)
        logger.warning("could not invalidate the shop_recs cache", exc_info=True)


def products_changed(pks):
    """Forget the answers that show or filtered out any of ``pks`` (after an ``update()``
    or an import that sends no signals)."""
    try:
        _cache().delete_many([_version_key(pk) for pk in pks])
    except Exception:  # noqa: BLE001
        logger.warning("could not invalidate shop_recs answers", exc_info=True)


def product_saved(sender, instance, **kwargs):
    products_changed([instance.pk])


def settings_changed(*, setting, **kwargs):
    if setting in ("SHOP_RECS", "SHOP_RECS_PRODUCT_MODEL", "LANGUAGE_CODE"):
        invalidate()


def connect_receivers():
    """Invalidate on new runs, bundle decisions, bundle and product edits (idempotent)."""
    from shop_recs.products import get_product_model  # noqa: PLC0415

    run_activated.connect(invalidate, dispatch_uid="shop_recs.ranking.run")
    bundles_changed.connect(invalidate, dispatch_uid="shop_recs.ranking.bundles")
    setting_changed.connect(settings_changed, dispatch_uid="shop_recs.ranking.settings")
    for model in (Bundle, BundleItem):
        for signal in (post_save, post_delete):
            signal.connect(invalidate, sender=model,
                           dispatch_uid=f"shop_recs.ranking.{model.__name__}.{signal is post_save}")
    product = get_product_model()
    for signal in (post_save, post_delete):
        signal.connect(product_saved, sender=product,
                       dispatch_uid=f"shop_recs.ranking.product.{signal is post_save}")
