"""One small adapter between shop_recs and the shop's product model.

shop_recs never assumes the product model's field names or that its primary key is an
integer. Everything it needs (name, price, URL, image, stock, active flag, category)
is read here. Shops with other field names set ``SHOP_RECS["PRODUCT_FIELDS"]``::

    SHOP_RECS_PRODUCT_MODEL = "catalogue.Item"
    SHOP_RECS = {"PRODUCT_FIELDS": {"sku": "code", "name": "title", "in_stock": None}}

A field mapped to ``None`` does not exist on the model and its default is used
(``in_stock`` and ``is_active`` default to true). Lookups may follow single-valued
relations (``"category": "category__name"`` through a ForeignKey), never many-valued
ones (a ManyToMany or a reverse ForeignKey such as ``stockrecords__price``): the
queries that read them join with ``select_related``, which cannot follow those.
``manage.py check`` resolves every path as the queries will (``shop_recs.E004``/``E006``).
For anything more (stock kept in another table, prices from a pricing service),
subclass :class:`ProductAdapter` and point ``SHOP_RECS["PRODUCT_ADAPTER"]`` at it;
``shop_recs.contrib.oscar.adapter.OscarProductAdapter`` is a worked example.
"""

import functools
from decimal import Decimal

from django.apps import apps
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models
from django.db.models import Q
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse
from django.utils.module_loading import import_string
from django.utils.translation import get_language

from shop_recs.conf import DEFAULT_PRODUCT_MODEL, product_model_label, recs_settings


class ProductAdapter:
    """Reads and writes the product fields shop_recs needs, through a field map."""

    fields = {
        "sku": "sku",
        "name": "name",
        "description": "description",
        "price": "price",
        "currency": "currency",
        "image_url": "image_url",
        "category": "category",
        "in_stock": "in_stock",
        "is_active": "is_active",
    }
    defaults = {
        "sku": None,
        "name": "",
        "description": "",
        "price": None,
        "currency": None,
        "image_url": "",
        "category": "",
        "in_stock": True,
        "is_active": True,
    }

    def __init__(self, model=None, overrides=None):
        self.model = model or get_product_model()
        unknown = set(overrides or {}) - set(self.fields)
        if unknown:
            raise ImproperlyConfigured(
                f"SHOP_RECS['PRODUCT_FIELDS'] has unknown key(s): {', '.join(sorted(unknown))}"
            )
        self.fields = {**self.fields, **(overrides or {})}

    # Value types each key needs, for the checks (a key absent here takes any value).
    value_types = {
        "price": (models.DecimalField, models.FloatField, models.IntegerField),
        "in_stock": (models.BooleanField,),
        "is_active": (models.BooleanField,),
    }

    def field_errors(self):
        """Names in the field map that the product model does not have."""
        return [f"{key} -> {path}" for key, path, problem in self.field_problems()
                if problem == "missing"]

    def field_problems(self):
        """``(key, path, problem)`` for each mapped path the queries cannot use.

        ``problem`` is ``"missing"`` (no such field), ``"many"`` (the path crosses a
        many-valued relation, which ``select_related`` and a per-product value cannot
        follow), ``"relation"`` (the path ends on a relation, not a value), ``"type"``
        (the field cannot hold what the key needs, e.g. a text field for ``in_stock``)
        or ``"nested"`` (``sku`` must be a field of the product model itself).
        """
        problems = []
        for key, path in self.fields.items():
            if path is None:
                continue
            problem = self._path_problem(key, path)
            if problem:
                problems.append((key, path, problem))
        return problems

    def _path_problem(self, key, path):
        model, field = self.model, None
        parts = path.split("__")
        if key == "sku" and len(parts) > 1:
            return "nested"
        for position, part in enumerate(parts):
            try:
                field = model._meta.get_field(part)
            except FieldDoesNotExist:
                return "missing"
            last = position == len(parts) - 1
            if field.is_relation:
                if field.many_to_many or field.one_to_many:
                    return "many"
                if last:
                    return "relation"
                model = field.related_model
        expected = self.value_types.get(key)
        if expected and not isinstance(field, expected):
            return "type"
        return None

    def get(self, product, key):
        path = self.fields[key]
        if path is None:
            value = self.defaults[key]
            return recs_settings.DEFAULT_CURRENCY if key == "currency" else value
        value = product
        for part in path.split("__"):
            value = getattr(value, part, None)
            if value is None:
                return self.defaults[key]
        return value

    def sku(self, product):
        return str(self.get(product, "sku") if self.fields["sku"] else product.pk)

    def name(self, product):
        return str(self.get(product, "name"))

    def price(self, product):
        value = self.get(product, "price")
        return None if value is None else Decimal(value)

    def url(self, product):
        if hasattr(product, "get_absolute_url"):
            return product.get_absolute_url()
        if recs_settings.PRODUCT_URL_NAME:
            url = vars(product).get(URL_ATTR)  # reversed by prepare() for this answer
            return url if url is not None else _reversed(recs_settings.PRODUCT_URL_NAME,
                                                         product.pk)
        return ""

    def prepare(self, products):
        """Load, for the ``products`` an answer shows, what reading them needs from other
        tables, in a few queries for all of them rather than a few per product (an answer
        is rendered from these instances; see the Oscar adapter). Here: their URLs, with the
        URLconf, script prefix and language read once for all of them."""
        name = recs_settings.PRODUCT_URL_NAME
        if not name:
            return
        context = _url_context()
        for product in products:
            if product is not None and not hasattr(product, "get_absolute_url"):
                vars(product)[URL_ATTR] = _reversed(name, product.pk, context)

    def available_q(self):
        """Q object selecting products that may be recommended (active and in stock)."""
        q = Q()
        for key in ("is_active", "in_stock"):
            if self.fields[key]:
                q &= Q(**{self.fields[key]: True})
        return q

    def maybe_available(self, product):
        """Whether ``product`` may pass :meth:`available_q` and the price filter, judged
        from its loaded fields only (no query): a field behind a relation or deferred
        counts as available."""
        loaded = vars(product)
        for key in ("is_active", "in_stock", "price"):
            path = self.fields[key]
            if path and "__" not in path and path in loaded:
                value = loaded[path]
                if value is None or (key != "price" and not value):
                    return False
        return True

    def lookup_field(self):
        """The field that holds the shop's product code (the primary key when unmapped)."""
        return self.fields["sku"] or "pk"

    def new_product(self, sku, name, price, category="", *, hidden=False):
        """An unsaved product for the order import (only with ``create_products``).

        ``hidden`` products are not offered to shoppers (``is_active`` and ``in_stock``
        false where the model has such fields): the import creates them only so that the history of
        products the shop no longer sells can train the model. Override this for a
        host model that needs more to be valid (a slug, a product class, a stock record);
        return None to skip a product.
        """
        values = {"sku": sku, "name": name, "price": price, "category": category,
                  "currency": recs_settings.DEFAULT_CURRENCY}
        if hidden:  # a product the shop does not sell: neither active nor in stock
            values["is_active"] = values["in_stock"] = False
        kwargs = {self.fields[k]: v for k, v in values.items()
                  if self.fields.get(k) and "__" not in self.fields[k]}
        return self.model(**kwargs)

    def save_new_products(self, products):
        """Store the products made by :meth:`new_product` (one bulk insert by default);
        override when creating a product needs more rows (Oscar's stock records)."""
        self.model._default_manager.bulk_create(products, batch_size=500)
        return products

    def is_own_model(self):
        """Whether the products are shop_recs' own ``Product`` (no host catalogue)."""
        return self.model._meta.label == DEFAULT_PRODUCT_MODEL

    def writable(self, key):
        """Model field name to update for ``key`` during import, or None."""
        path = self.fields.get(key)
        return path if path and "__" not in path else None


def get_product_model():
    """The product model chosen by ``SHOP_RECS_PRODUCT_MODEL``."""
    label = product_model_label()
    try:
        return apps.get_model(label, require_ready=False)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"SHOP_RECS_PRODUCT_MODEL must be of the form 'app_label.model_name', not {label!r}"
        ) from exc
    except LookupError as exc:
        raise ImproperlyConfigured(
            f"SHOP_RECS_PRODUCT_MODEL refers to model {label!r} that has not been installed"
        ) from exc


# ``PRODUCT_URL_NAME`` reversed with a pk is a function of the URLconf, the script prefix,
# the language (``i18n_patterns``) and the pk alone: remembered per process, since
# ``reverse`` costs more than the rest of a product's entry in an answer.
_URLS = {}
_URLS_MAX = 20_000


URL_ATTR = "_shop_recs_url"


def _url_context():
    # Each is a context-local read (asgiref): read once per answer, not once per product.
    return settings.ROOT_URLCONF, get_urlconf(), get_script_prefix(), get_language()


def _reversed(name, pk, context=None):
    key = (*(context or _url_context()), name, pk)
    url = _URLS.get(key)
    if url is None:
        try:
            url = reverse(name, args=[pk])
        except NoReverseMatch:
            url = ""
        if len(_URLS) >= _URLS_MAX:
            _URLS.clear()
        _URLS[key] = url
    return url


@functools.cache
def get_adapter():
    """The configured :class:`ProductAdapter`, built once per settings."""
    adapter_class = import_string(recs_settings.PRODUCT_ADAPTER)
    return adapter_class(overrides=recs_settings.PRODUCT_FIELDS)


def _settings_changed(*, setting, **kwargs):
    _URLS.clear()  # a test's URLconf may reuse a module name with other patterns
    if setting in ("SHOP_RECS", "SHOP_RECS_PRODUCT_MODEL"):
        get_adapter.cache_clear()


setting_changed.connect(_settings_changed, dispatch_uid="shop_recs.products.adapter")
