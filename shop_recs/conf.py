"""The ``SHOP_RECS`` settings dict: documented defaults, lazy cached access.

Usage::

    from shop_recs.conf import recs_settings
    recs_settings.IMPORT_CHUNK_SIZE

Values are read from ``settings.SHOP_RECS`` on first access and re-read whenever a
test changes settings (``override_settings``). Unknown keys are reported by the
``shop_recs.E001`` system check rather than raised here, so a typo never stops a
page from rendering. The product model itself is chosen by the top-level setting
``SHOP_RECS_PRODUCT_MODEL`` (like ``AUTH_USER_MODEL``), because migrations read it.
"""

from django.conf import settings
from django.core.signals import setting_changed

DEFAULT_PRODUCT_MODEL = "shop_recs.Product"

DEFAULTS = {
    # Currency given to products created by the order import when the file has none.
    "DEFAULT_CURRENCY": "USD",
    # Dotted path of the class that reads product fields; see shop_recs.products.
    "PRODUCT_ADAPTER": "shop_recs.products.ProductAdapter",
    # Overrides of the adapter's field names, e.g. {"name": "title", "in_stock": None}.
    "PRODUCT_FIELDS": {},
    # URL name of the host's product page (called with the product's pk) when the
    # product model has no get_absolute_url().
    "PRODUCT_URL_NAME": None,
    # Lines per database transaction in shop_recs_import_orders.
    "IMPORT_CHUNK_SIZE": 50_000,
    # Product ids the import drops as fees or postage (added to the built-in UCI list).
    "NON_PRODUCT_CODES": (),
    # Salt of the keyed hash that turns session keys and customer ids into visitor ids.
    "VISITOR_ID_SALT": "shop_recs.visitor",
    # Training: the Celery queue GPU workers consume, the device, and the time budget.
    "TRAINING_QUEUE": "shop_recs.gpu",
    "DEVICE": "auto",
    "TIME_BUDGET_S": 150,
    # Training processes (data-parallel, torch.distributed): 1; a number (gloo processes on a
    # CPU worker, one per GPU on a CUDA worker - at most its device count); or "auto" (one per
    # CUDA device of the worker, 1 without). See README "Deploying at scale".
    "TRAINING_PROCESSES": 1,
    # Celery soft/hard time limits of a training task; keep them below the broker's
    # visibility timeout (Redis: 3600 s by default) so a running task is not redelivered.
    "TRAINING_SOFT_TIME_LIMIT": 1800,
    "TRAINING_TIME_LIMIT": 2100,
    # Deliveries of one run before it is failed (a worker killed mid-run is one delivery).
    "TRAINING_MAX_ATTEMPTS": 3,
    # Where checkpoints are written (safetensors + JSON manifest); None = MEDIA_ROOT/shop_recs_artifacts.
    "ARTIFACT_DIR": None,
    # Published per product: complements in the FBT list, and proposed bundles.
    "FBT_TOP_K": 10,
    "BUNDLES_PER_PRODUCT": 3,
    "BUNDLE_SIZE": 3,
    # A rejected or approved bundle is proposed again only when the number of orders
    # containing it grew by this factor.
    "REPROPOSE_EVIDENCE_GROWTH": 2.0,
    # Only approved bundles reach customers. False also serves proposed bundles (never
    # rejected or retired ones); the admin still records every decision.
    "REQUIRE_APPROVAL": True,
    # FBT lists of a run that passes the gate: "auto" serves them at once; "approval"
    # waits until staff press "Serve this run" on the run's admin page.
    "FBT_PUBLISHING": "auto",
    # Highest bundle discount, in percent, that staff may set in the admin.
    "MAX_BUNDLE_DISCOUNT": 30,
    # A product created between runs gets a list scored from its content (name, category,
    # price) by a task on TRAINING_QUEUE soon after it is saved; False: at the next run.
    "NEW_PRODUCT_LISTS": True,
    # --- Serving: widgets and API (shop_recs.ranking, shop_recs.api) ---
    # After a product's bundles and FBT list, its stored fallback list (shop_recs.fallbacks:
    # bought together in recent orders, then its category's bestsellers); False: nothing.
    "FALLBACK": True,
    # Candidates per product (before stock and cart filters); the fallback lists' length.
    "CANDIDATES": 30,
    # Most recent orders of a product read to compute its co-occurrence fallback.
    "FALLBACK_ORDERS": 500,
    # Most recent purchase lines counted for the "popular in the same category" fallback.
    "POPULAR_LINES": 20_000,
    # Re-rank with the visitor's past purchases (demote owned, boost related) when known.
    "PERSONALISE": True,
    # Seconds a candidate list or answer stays cached (invalidation clears it sooner).
    "CACHE_TIMEOUT": 600,
    # Cache alias of the serving cache and of the event de-duplication keys.
    "CACHE_ALIAS": "default",
    # The FBT widget on a cache miss: "render" computes it inline (every page shows it, also
    # without JavaScript); "defer" renders an empty placeholder that widget.js fills from
    # shop_recs' fragment URL, so that the page never waits for a miss (shoppers without
    # JavaScript then see the widget only once its answer is cached).
    "WIDGET_ON_MISS": "render",
    # Items a widget shows by default, and the most one widget or API call may ask for.
    "WIDGET_LIMIT": 3,
    "MAX_LIMIT": 20,
    # The host's cart: URL name "Add all to cart" posts to (None: no form), field names.
    "CART_URL_NAME": None,
    "CART_FIELDS": {"product": "product", "quantity": "quantity", "widget": "widget",
                    "bundle": "bundle", "run": "run", "token": "attribution"},  # nosec B105 # a field name
    # Seconds a signed attribution token (widget, bundle, run) stays valid.
    "ATTRIBUTION_MAX_AGE": 7 * 24 * 3600,
    # Analytics (shop_recs.analytics): a purchase line carrying a widget's attribution counts
    # for the widget when the same visitor clicked or added that product from that widget at
    # most this many days before the order.
    "ATTRIBUTION_WINDOW_DAYS": 7,
    # Events API: most events per request, largest request body in bytes, and the window
    # (seconds) in which identical anonymous events are stored once (0: no de-duplication).
    "EVENTS_MAX_BATCH": 500,
    "MAX_BODY_BYTES": 256 * 1024,
    "EVENT_DEDUP_WINDOW": 60,
    # API throttle rates by scope ("number/period"; None: unthrottled).
    "THROTTLE_RATES": {"shop_recs.read": "1200/min", "shop_recs.events": "120/min",
                       "shop_recs.staff": "600/min"},
    # --- Learning (shop_recs.ml.protocol, the same for training runs and the benchmark) ---
    # Epochs at most; early stopping on validation and TIME_BUDGET_S usually end sooner.
    "EPOCHS": 40,
    # Grids tuned on validation: EASE's L2 weight, item-kNN's neighbours, and the learned
    # model's weight when blended with the best baseline ("inf": the model alone).
    "EASE_LAMBDAS": (3, 10, 30, 100, 300, 1000, 3000, 10000),
    "KNN_KS": (20, 50, 200),
    "BLEND_WEIGHTS": (0, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, "inf"),
    # EASE lambda of the model's item-item prior; None: the lambda EASE was tuned to.
    "PRIOR_LAMBDA": None,
    # Catalogue limits: orders a product needs to be evaluated and published (every active
    # product is in the model's catalogue regardless), and the largest catalogue that gets
    # the dense item-item prior (n x n floats, three while training).
    "MIN_PRODUCT_ORDERS": 2,
    "MAX_PRIOR_ITEMS": 8000,
    # The gate ships a more complex candidate only when the lower end of the paired-bootstrap
    # interval (this confidence) of its validation gain exceeds GATE_MIN_GAIN (0.01 = 1 %).
    "GATE_CONFIDENCE": 0.95,
    "GATE_MIN_GAIN": 0.0,
    # Also refit the winner on train + validation and score it on test (one more fit; the
    # gate never reads it). "auto": unless a network ships above 8,000 products, where that
    # fit takes the whole TIME_BUDGET_S.
    "EVALUATE_REFIT": "auto",
    # Optional pretrained sentence encoder read by the model's content tower (issue 17): a
    # sentence-transformers model name or a local folder (pip install "shop-recs[text]").
    # Products are embedded once on the training worker (name + description), cached under
    # ARTIFACT_DIR/text-cache by a hash of model and text. None: off.
    "TEXT_ENCODER": None,
}

# (minimum, maximum) of numeric settings, checked by shop_recs.E002.
RANGES = {
    "IMPORT_CHUNK_SIZE": (100, 1_000_000),
    "TIME_BUDGET_S": (1, 86_400),
    "TRAINING_SOFT_TIME_LIMIT": (10, 86_400),
    "TRAINING_TIME_LIMIT": (10, 86_400),
    "TRAINING_MAX_ATTEMPTS": (1, 20),
    "FBT_TOP_K": (1, 100),
    "BUNDLES_PER_PRODUCT": (0, 20),
    "BUNDLE_SIZE": (2, 4),
    "REPROPOSE_EVIDENCE_GROWTH": (1, 100),
    "MAX_BUNDLE_DISCOUNT": (0, 90),
    # Serving
    "CANDIDATES": (1, 200),
    "FALLBACK_ORDERS": (1, 100_000),
    "POPULAR_LINES": (1, 10_000_000),
    "CACHE_TIMEOUT": (0, 7 * 24 * 3600),
    "WIDGET_LIMIT": (1, 20),
    "MAX_LIMIT": (1, 100),
    "ATTRIBUTION_MAX_AGE": (60, 365 * 24 * 3600),
    "ATTRIBUTION_WINDOW_DAYS": (1, 365),
    "EVENTS_MAX_BATCH": (1, 10_000),
    "MAX_BODY_BYTES": (1024, 64 * 1024 * 1024),
    "EVENT_DEDUP_WINDOW": (0, 86_400),
    # --- Learning ---
    "EPOCHS": (1, 1000),
    "MIN_PRODUCT_ORDERS": (1, 1000),
    "MAX_PRIOR_ITEMS": (0, 50_000),
    "GATE_CONFIDENCE": (0.5, 0.999),
    "GATE_MIN_GAIN": (0, 1),
}


# TRAINING_PROCESSES: a whole number in this range, or "auto" (checked by shop_recs.E002).
MAX_TRAINING_PROCESSES = 64

# Allowed values of string settings, checked by shop_recs.E002.
CHOICES = {
    "DEVICE": ("auto", "cpu", "cuda"),
    "FBT_PUBLISHING": ("auto", "approval"),
    "WIDGET_ON_MISS": ("render", "defer"),
}


def product_model_label():
    """The ``app_label.ModelName`` of the product model (read when models load)."""
    return getattr(settings, "SHOP_RECS_PRODUCT_MODEL", DEFAULT_PRODUCT_MODEL)


class RecsSettings:
    """Attribute access to ``settings.SHOP_RECS`` merged over ``DEFAULTS``."""

    def __init__(self, defaults=None):
        self.defaults = defaults or DEFAULTS
        self._cached = set()
        self._user_settings = None

    @property
    def user_settings(self):
        if self._user_settings is None:
            self._user_settings = getattr(settings, "SHOP_RECS", {}) or {}
        return self._user_settings

    def __getattr__(self, attr):
        if attr not in self.defaults:
            raise AttributeError(f"Invalid SHOP_RECS setting: {attr!r}")
        value = self.user_settings.get(attr, self.defaults[attr])
        self._cached.add(attr)
        setattr(self, attr, value)
        return value

    def reload(self):
        for attr in self._cached:
            delattr(self, attr)
        self._cached.clear()
        self._user_settings = None


recs_settings = RecsSettings()


def reload_recs_settings(*, setting, **kwargs):
    if setting in ("SHOP_RECS", "SHOP_RECS_PRODUCT_MODEL"):
        recs_settings.reload()


setting_changed.connect(reload_recs_settings)
