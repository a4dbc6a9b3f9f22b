"""The product adapter of a django-oscar catalogue.

Oscar keeps prices and stock in stock records and decides what a shopper pays and
whether a product can be bought through its pricing *strategy*
(``partner.strategy.Selector``). This adapter asks the strategy, never a field:

* price: the strategy's price (incl. tax when the strategy knows the tax);
* currency: the strategy's price currency;
* in stock: ``availability.is_available_to_buy``;
* category: the name of the product's first category; image: its primary image.

The strategy is the current request's (``request.strategy``, set by Oscar's
``BasketMiddleware``) when :class:`~shop_recs.contrib.oscar.middleware.StrategyMiddleware`
is installed after it, and ``Selector().strategy()`` (Oscar's default, the same for
every visitor) otherwise; the cached widget HTML is shared by visitors without history,
so a shop whose prices differ per visitor sets ``SHOP_RECS["CACHE_TIMEOUT"] = 0``.

The database filter (:meth:`OscarProductAdapter.available_q`) mirrors Oscar's default
strategy (public, a priced stock record, stock left unless the product class does not
track stock), so that a product sold out is left out by the query itself; a shop with a
different availability rule overrides it.
"""

import contextvars
from decimal import Decimal

from django.db.models import Exists, F, OuterRef, Q, prefetch_related_objects
from django.db.models.functions import Coalesce
from django.utils.text import slugify
from oscar.core.loading import get_class, get_model

from shop_recs.products import ProductAdapter

# The strategy of the request being served (set by middleware.StrategyMiddleware).
current_strategy = contextvars.ContextVar("shop_recs_oscar_strategy", default=None)
current_request = contextvars.ContextVar("shop_recs_oscar_request", default=None)
INFO_ATTR = "_shop_recs_purchase_info"
IMPORTED_CLASS = "Imported from past orders"


class OscarProductAdapter(ProductAdapter):
    """Reads Oscar's ``catalogue.Product`` through Oscar's pricing strategy."""

    fields = {
        "sku": "upc",
        "name": "title",
        "description": "description",
        "price": None,
        "currency": None,
        "image_url": None,
        "category": None,
        "in_stock": None,
        "is_active": "is_public",
    }
    strategy_keys = ("price", "currency", "in_stock")

    def __init__(self, model=None, overrides=None):
        super().__init__(model or get_model("catalogue", "Product"), overrides)
        self._default_strategy = None

    # --- what the strategy says ---------------------------------------------------

    def strategy(self):
        strategy = current_strategy.get()
        if strategy is None:
            if self._default_strategy is None:
                self._default_strategy = get_class("partner.strategy", "Selector")().strategy()
            strategy = self._default_strategy
        return strategy

    def purchase_info(self, product):
        """Oscar's ``PurchaseInfo`` of ``product``, kept on the instance for this request."""
        info = getattr(product, INFO_ATTR, None)
        if info is None:
            strategy = self.strategy()
            info = (strategy.fetch_for_parent(product) if product.is_parent
                    else strategy.fetch_for_product(product))
            setattr(product, INFO_ATTR, info)
        return info

    def get(self, product, key):
        if key in self.strategy_keys and self.fields[key] is None:
            info = self.purchase_info(product)
            if key == "in_stock":
                return bool(info.availability.is_available_to_buy)
            if not info.price.exists:
                return None
            if key == "currency":
                return info.price.currency
            return info.price.incl_tax if info.price.is_tax_known else info.price.excl_tax
        if key == "image_url" and self.fields[key] is None:
            return self.image_url(product)
        if key == "category" and self.fields[key] is None:
            # In Python: ``all()`` is what ``prepare`` loaded; an ``order_by`` would query.
            categories = sorted(product.categories.all(), key=lambda c: c.path)
            return categories[0].name if categories else ""
        return super().get(product, key)

    # What the strategy, ``primary_image`` and the category read, loaded for all the
    # products of an answer at once (Oscar's ``base_queryset`` prefetches the same way).
    related = ("product_class", "parent__product_class", "stockrecords", "images",
               "parent__images", "categories")

    def prepare(self, products):
        prefetch_related_objects([p for p in products if p is not None], *self.related)

    def price(self, product):
        value = self.get(product, "price")
        return None if value is None else Decimal(value)

    def image_url(self, product):
        image = product.primary_image()
        original = getattr(image, "original", None)  # a dict when the product has none
        return original.url if original else ""

    def url(self, product):
        return product.get_absolute_url()

    # --- what the queries filter on -------------------------------------------------

    def available_q(self):
        """Public products that Oscar's default strategy would sell: a priced stock record
        with stock left (or a product class that does not track stock)."""
        StockRecord = get_model("partner", "StockRecord")
        sellable = StockRecord.objects.filter(
            product=OuterRef("pk"), price__isnull=False,
        ).filter(
            Q(product__product_class__track_stock=False)
            | Q(product__parent__product_class__track_stock=False)
            | Q(num_in_stock__gt=Coalesce(F("num_allocated"), 0))
        )
        return Q(is_public=True) & ~Q(structure="parent") & Q(Exists(sellable))

    def maybe_available(self, product):
        return bool(getattr(product, "is_public", True))

    # --- products created by the order import (only with --create-products) ----------

    def new_product(self, sku, name, price, category="", *, hidden=False):
        """A hidden standalone product of the "Imported from past orders" class, with a
        slug: valid for Oscar's pages and search, never offered (no stock record)."""
        ProductClass = get_model("catalogue", "ProductClass")
        product_class, _ = ProductClass.objects.get_or_create(
            name=IMPORTED_CLASS, defaults={"requires_shipping": True, "track_stock": True})
        title = (name or sku)[:255]
        return self.model(upc=sku, title=title, slug=slugify(title)[:128] or slugify(sku),
                          structure="standalone", product_class=product_class,
                          is_public=not hidden, is_discountable=True)

    def save_new_products(self, products):
        # One save() each: Oscar's Product.save() fills what a bulk insert would not.
        for product in products:
            product.save()
        return products
