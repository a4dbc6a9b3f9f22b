"""System checks for shop_recs (ids ``shop_recs.E0xx`` / ``W0xx``), each with a hint.

* E001 unknown key in ``SHOP_RECS``
* E002 a value of the wrong type or out of range
* E003 ``SHOP_RECS_PRODUCT_MODEL`` is malformed or not installed
* E004 the product field map names fields the product model does not have
* E005 no folder for model checkpoints (``ARTIFACT_DIR`` and ``MEDIA_ROOT`` unset)
* W001 torch is not installed (training cannot run; serving still works)
* W020 the serving cache is per process while ``DEBUG`` is off (saves elsewhere go unseen)
* W021 the serving cache holds fewer entries than the catalogue's answers need
"""

import importlib.util

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from shop_recs.conf import CHOICES, DEFAULTS, RANGES, recs_settings


@checks.register()
def check_settings(app_configs=None, **kwargs):
    errors = []
    user = getattr(settings, "SHOP_RECS", {})
    if not isinstance(user, dict):
        return [checks.Error("SHOP_RECS must be a dict.", id="shop_recs.E002",
                             hint="Set SHOP_RECS = {...} in your settings.")]
    for key in sorted(set(user) - set(DEFAULTS)):
        errors.append(checks.Error(
            f"Unknown setting SHOP_RECS[{key!r}].",
            hint=f"Valid keys: {', '.join(sorted(DEFAULTS))}.",
            obj="SHOP_RECS", id="shop_recs.E001",
        ))
    for key, (low, high) in RANGES.items():
        value = user.get(key, DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            errors.append(checks.Error(
                f"SHOP_RECS[{key!r}] is {value!r}; it must be a number from {low} to {high}.",
                hint=f"Remove it to use the default ({DEFAULTS[key]!r}).",
                obj="SHOP_RECS", id="shop_recs.E002",
            ))
    for key, allowed in CHOICES.items():
        value = user.get(key, DEFAULTS[key])
        if value not in allowed:
            errors.append(checks.Error(
                f"SHOP_RECS[{key!r}] is {value!r}; it must be one of {', '.join(allowed)}.",
                hint=f"Remove it to use the default ({DEFAULTS[key]!r}).",
                obj="SHOP_RECS", id="shop_recs.E002",
            ))
    if not isinstance(user.get("PRODUCT_FIELDS", {}), dict):
        errors.append(checks.Error(
            "SHOP_RECS['PRODUCT_FIELDS'] must be a dict of field names.",
            hint='For example {"name": "title", "in_stock": None}.',
            obj="SHOP_RECS", id="shop_recs.E002",
        ))
    return errors


@checks.register(checks.Tags.models)
def check_product_model(app_configs=None, **kwargs):
    try:
        adapter_class = import_string(recs_settings.PRODUCT_ADAPTER)
    except ImportError as exc:
        return [checks.Error(
            f"SHOP_RECS['PRODUCT_ADAPTER'] cannot be imported: {exc}",
            hint="Give the dotted path of a ProductAdapter subclass.",
            obj="SHOP_RECS", id="shop_recs.E003",
        )]
    try:
        adapter = adapter_class(overrides=recs_settings.PRODUCT_FIELDS or {})
    except (ImproperlyConfigured, TypeError, AttributeError) as exc:
        return [checks.Error(
            str(exc),
            hint="SHOP_RECS_PRODUCT_MODEL must name an installed model as 'app_label.Model', "
                 "and PRODUCT_FIELDS may only override the adapter's keys.",
            obj="SHOP_RECS_PRODUCT_MODEL", id="shop_recs.E003",
        )]
    missing = adapter.field_errors()
    if missing:
        return [checks.Error(
            f"The product model {adapter.model._meta.label} has no field for: "
            f"{', '.join(missing)}.",
            hint="Map each key to a field of your product model in SHOP_RECS['PRODUCT_FIELDS'], "
                 "or to None when the model has no such field.",
            obj=adapter.model, id="shop_recs.E004",
        )]
    return []


@checks.register()
def check_artifact_dir(app_configs=None, **kwargs):
    if recs_settings.ARTIFACT_DIR or settings.MEDIA_ROOT:
        return []
    return [checks.Error(
        "shop_recs has nowhere to write model checkpoints.",
        hint="Set SHOP_RECS['ARTIFACT_DIR'] to a folder (shared storage when workers run on "
             "several machines), or set MEDIA_ROOT.",
        obj="SHOP_RECS", id="shop_recs.E005",
    )]


@checks.register()
def check_torch(app_configs=None, **kwargs):
    if importlib.util.find_spec("torch") is None:
        return [checks.Warning(
            "torch is not installed: training runs cannot start on this machine.",
            hint="Install torch on the machines that run the training worker; "
                 "web processes serve recommendations without it.",
            id="shop_recs.W001",
        )]
    return []


PER_PROCESS_CACHES = ("django.core.cache.backends.locmem.LocMemCache",)
COUNTED_CACHES = PER_PROCESS_CACHES + ("django.core.cache.backends.filebased.FileBasedCache",
                                       "django.core.cache.backends.db.DatabaseCache")


def _serving_cache_config():
    return settings.CACHES.get(recs_settings.CACHE_ALIAS) or {}


@checks.register(checks.Tags.caches)
def check_cache_is_shared(app_configs=None, **kwargs):
    """A per-process cache in production: a product saved in the admin, a worker or an
    import invalidates that process's answers only; the others serve stale ones."""
    backend = _serving_cache_config().get("BACKEND", "")
    if settings.DEBUG or backend not in PER_PROCESS_CACHES or not recs_settings.CACHE_TIMEOUT:
        return []
    return [checks.Warning(
        f"The shop_recs serving cache ({recs_settings.CACHE_ALIAS!r}) is {backend}, one copy per "
        f"process: a price, stock or bundle change made in another process (the admin, the "
        f"training worker, an import) reaches this process's widgets only after "
        f"SHOP_RECS['CACHE_TIMEOUT'] ({recs_settings.CACHE_TIMEOUT} s).",
        hint="Use a shared cache (Redis or Memcached) for SHOP_RECS['CACHE_ALIAS'] when several "
             "processes serve the shop, or set SHOP_RECS['CACHE_TIMEOUT'] = 0.",
        obj="SHOP_RECS", id="shop_recs.W020",
    )]


def answer_entries_needed(products):
    """Cache entries for every product's answers: its candidate list, its widget and its
    API answer, plus the version tokens and the generation."""
    from shop_recs.serving_cache import SHARDS  # noqa: PLC0415

    return 3 * products + SHARDS + 1


@checks.register(checks.Tags.caches)
def check_cache_size(app_configs=None, **kwargs):
    """A cache with an entry limit smaller than the catalogue's answers culls itself and
    serves most product pages cold. Counts the active products (one query)."""
    config = _serving_cache_config()
    if config.get("BACKEND") not in COUNTED_CACHES or not recs_settings.CACHE_TIMEOUT:
        return []
    limit = int((config.get("OPTIONS") or {}).get("MAX_ENTRIES", 300))
    from shop_recs.products import get_adapter  # noqa: PLC0415 (products imports conf)

    try:
        adapter = get_adapter()
        active = adapter.model._default_manager.filter(adapter.available_q()).count()
    except Exception:  # noqa: BLE001 (no table yet, bad field map: other checks say so)
        return []
    needed = answer_entries_needed(active)
    if limit >= needed:
        return []
    return [checks.Warning(
        f"The shop_recs serving cache ({recs_settings.CACHE_ALIAS!r}) keeps {limit:,} entries; "
        f"the answers of {active:,} active products need about {needed:,}.",
        hint=f"Set CACHES[{recs_settings.CACHE_ALIAS!r}]['OPTIONS']['MAX_ENTRIES'] to at least "
             f"{needed:,}, or use Redis. Answers that do not fit are computed per request "
             f"(one indexed query): correct, only slower.",
        obj="SHOP_RECS", id="shop_recs.W021",
    )]
