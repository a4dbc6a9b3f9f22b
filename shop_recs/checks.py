"""System checks for shop_recs (ids ``shop_recs.E0xx`` / ``W0xx``), each with a hint.

* E001 unknown key in ``SHOP_RECS``
* E002 a value of the wrong type or out of range
* E003 ``SHOP_RECS_PRODUCT_MODEL`` is malformed or not installed
* E004 the product field map names fields the product model does not have
* E005 no folder for model checkpoints (``ARTIFACT_DIR`` and ``MEDIA_ROOT`` unset)
* E006 a product field path the queries cannot use: it crosses a many-valued relation
  (``stockrecords__price``, ``categories__name``), ends on a relation, or names a field
  of the wrong type (``in_stock`` on a text field)
* W001 torch is not installed (training cannot run; serving still works)
* W010 ``CART_URL_NAME`` cannot take the widget's "Add all to cart" form (it cannot be
  reversed without arguments, or its view does not accept POST)
* W020 the serving cache is per process while ``DEBUG`` is off (saves elsewhere go unseen)
* W021 the serving cache holds fewer entries than the catalogue's answers need
* E030 two experiments run (or are paused) on the same placement at once (``--database``)
* E031 a running experiment has fewer than two arms or an arm without its training run
"""

import importlib.util

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.utils.module_loading import import_string

from shop_recs.conf import CHOICES, DEFAULTS, MAX_TRAINING_PROCESSES, RANGES, recs_settings


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
    processes = user.get("TRAINING_PROCESSES", DEFAULTS["TRAINING_PROCESSES"])
    if processes != "auto" and (isinstance(processes, bool) or not isinstance(processes, int)
                                or not 1 <= processes <= MAX_TRAINING_PROCESSES):
        errors.append(checks.Error(
            f"SHOP_RECS['TRAINING_PROCESSES'] is {processes!r}; it must be a whole number from 1 "
            f"to {MAX_TRAINING_PROCESSES} or 'auto'.",
            hint="1 trains in the worker's process; 'auto' uses one process per CUDA device.",
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
    problems = adapter.field_problems()
    errors = []
    missing = [f"{key} -> {path}" for key, path, problem in problems if problem == "missing"]
    if missing:
        errors.append(checks.Error(
            f"The product model {adapter.model._meta.label} has no field for: "
            f"{', '.join(missing)}.",
            hint="Map each key to a field of your product model in SHOP_RECS['PRODUCT_FIELDS'], "
                 "or to None when the model has no such field.",
            obj=adapter.model, id="shop_recs.E004",
        ))
    for key, path, problem in problems:
        if problem in PATH_PROBLEMS:
            errors.append(checks.Error(
                f"SHOP_RECS['PRODUCT_FIELDS'][{key!r}] = {path!r}: {PATH_PROBLEMS[problem]}",
                hint=PATH_HINT, obj=adapter.model, id="shop_recs.E006",
            ))
    return errors


PATH_PROBLEMS = {
    "many": "the path crosses a many-valued relation (a ManyToMany or reverse ForeignKey); "
            "a product has several such values and the queries cannot join them.",
    "relation": "the path ends on a relation, not a value; follow it to a field "
                "(for example 'category__name').",
    "type": "the field has the wrong type for this key (price: a number, in_stock and "
            "is_active: a BooleanField).",
    "nested": "the product code must be a field of the product model itself.",
}
PATH_HINT = ("Map the key to a single-valued field, or to None, and read values kept "
             "elsewhere (stock records, several categories) in a ProductAdapter subclass "
             "named by SHOP_RECS['PRODUCT_ADAPTER']. On django-oscar, use "
             "shop_recs.contrib.oscar (see the README).")


@checks.register(checks.Tags.urls)
def check_cart_url(app_configs=None, **kwargs):
    """The widget's form posts every ticked product to ``reverse(CART_URL_NAME)``."""
    name = recs_settings.CART_URL_NAME
    if not name:
        return []
    try:
        url = reverse(name)
    except NoReverseMatch:
        return [checks.Warning(
            f"SHOP_RECS['CART_URL_NAME'] = {name!r} cannot be reversed without arguments: "
            "the widgets leave their 'Add all to cart' form out.",
            hint="Name a view that takes one POST with every ticked product (field "
                 "CART_FIELDS['product'], repeated). On django-oscar use "
                 "'shop_recs_oscar:basket-add-all', not 'basket:add' (one product by pk).",
            obj="SHOP_RECS", id="shop_recs.W010",
        )]
    try:
        match = resolve(url)
    except Resolver404:  # reversed but not resolvable: a urlconf quirk, leave it be
        return []
    view_class = getattr(match.func, "view_class", None)
    if view_class is not None and "post" not in {
            m for m in view_class.http_method_names if hasattr(view_class, m)}:
        return [checks.Warning(
            f"SHOP_RECS['CART_URL_NAME'] = {name!r} ({url}) does not accept POST: the "
            "widgets' 'Add all to cart' form would fail.",
            hint="Name the view that adds products to the cart on POST.",
            obj="SHOP_RECS", id="shop_recs.W010",
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
    API answer, plus the version tokens, the generation, and the experiments' plans and
    their counter."""
    from shop_recs.serving_cache import SHARDS  # noqa: PLC0415

    return 3 * products + SHARDS + 3


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


@checks.register(checks.Tags.database)
def check_experiments(app_configs=None, databases=None, **kwargs):
    """Overlapping experiments and broken arms (asks the database: ``check --database``)."""
    if not databases:
        return []
    from shop_recs.analytics import experiments  # noqa: PLC0415 (models are loaded by now)
    from shop_recs.models import Experiment  # noqa: PLC0415

    errors = []
    try:
        held = list(Experiment.objects.filter(status__in=[Experiment.Status.RUNNING,
                                                          Experiment.Status.PAUSED])
                    .prefetch_related("arms__run").order_by("placement", "pk"))
    except Exception:  # noqa: BLE001 (no table yet: migrate first)
        return []
    by_placement = {}
    for experiment in held:
        by_placement.setdefault(experiment.placement, []).append(experiment)
        problems = experiments.arm_problems(list(experiment.arms.all()))
        if problems and experiment.status == Experiment.Status.RUNNING:
            errors.append(checks.Error(
                f"Experiment {experiment.name!r} runs with broken arms: {' '.join(problems)}",
                hint="Pause it in the admin, fix its arms, and resume it.",
                obj=experiment, id="shop_recs.E031"))
    for placement, group in by_placement.items():
        if len(group) > 1:
            errors.append(checks.Error(
                f"{len(group)} experiments hold the {group[0].get_placement_display()} at once: "
                f"{', '.join(repr(e.name) for e in group)}. Visitors get the arms of the "
                f"oldest only and the others' results mean nothing.",
                hint="Stop all but one of them in the admin (Experiments).",
                obj=group[-1], id="shop_recs.E030"))
    return errors
