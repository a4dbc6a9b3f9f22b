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
}

# (minimum, maximum) of numeric settings, checked by shop_recs.E002.
RANGES = {
    "IMPORT_CHUNK_SIZE": (100, 1_000_000),
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
        from shop_recs import products  # noqa: PLC0415 (avoids a cycle at import)

        products.get_adapter.cache_clear()


setting_changed.connect(reload_recs_settings)
