"""What a reviewer sees of a bundle: products with thumbnail and price, totals, evidence.

``BundleCard(bundle)`` reads product fields only through the product adapter and
expects ``bundle.items`` to be prefetched with their products (see
:func:`bundle_queryset`), so a page of cards costs a fixed number of queries.
"""

from decimal import ROUND_HALF_UP, Decimal

from django.db.models import FloatField, IntegerField, Prefetch
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils.html import format_html, format_html_join

from shop_recs.formats import money
from shop_recs.models import Bundle, BundleItem
from shop_recs.products import get_adapter, get_product_model
from shop_recs.review import explanation
from shop_recs.templatetags.shop_recs import initials, placeholder_tone

CENT = Decimal("0.01")
PRODUCT_KEYS = ("name", "price", "currency", "image_url", "category", "in_stock", "is_active")


def product_relations(prefix):
    """``select_related`` paths for product fields the adapter reads through relations."""
    paths = set()
    for key in PRODUCT_KEYS:
        path = get_adapter().fields.get(key)
        if path and "__" in path:
            paths.add(prefix + path.rsplit("__", 1)[0])
    return sorted(paths)


def bundle_queryset(queryset=None):
    """Bundles with everything a card shows, in a constant number of queries.

    Anchors are prefetched, not joined: an INNER JOIN lets SQLite's planner start from
    the products and sort every bundle for a page of 25 (seconds on a million bundles);
    with only LEFT JOINs the bundle table leads and the (score, id) index orders it.
    """
    products = get_product_model()._default_manager.select_related(*product_relations(""))
    items = BundleItem.objects.select_related(
        "product", *product_relations("product__")).order_by("position", "pk")
    queryset = Bundle.objects.all() if queryset is None else queryset
    return queryset.select_related("run", "reviewed_by").prefetch_related(
        Prefetch("anchor", queryset=products), Prefetch("items", queryset=items)).annotate(
        evidence_orders=Cast(KeyTextTransform("orders_with_all", "evidence"), IntegerField()),
        evidence_lift=Cast(KeyTextTransform("lift", "evidence"), FloatField()),
    )


class ProductView:
    """The adapter's view of one product, for templates."""

    def __init__(self, product):
        adapter = get_adapter()
        self.product = product
        self.pk = product.pk
        self.name = adapter.name(product)
        self.price = adapter.price(product)
        self.currency = adapter.get(product, "currency") or ""
        self.image_url = adapter.get(product, "image_url") or ""
        self.category = adapter.get(product, "category") or ""
        self.available = bool(adapter.get(product, "in_stock")
                              and adapter.get(product, "is_active"))
        self.url = adapter.url(product)

    @property
    def price_display(self):
        return money(self.price, self.currency)

    def thumbnail(self, size=40):
        """The product's image, or a coloured tile with its initials (as the shop shows it)."""
        if not self.image_url:
            # A stable tone per product, so neighbouring tiles differ.
            tone = placeholder_tone(get_adapter().sku(self.product))
            return format_html('<span class="shop-recs-thumb shop-recs-thumb--none '
                               'shop-recs-tone-{}" style="width:{}px;height:{}px" '
                               'aria-hidden="true">{}</span>', tone, size, size,
                               initials(self.name))
        return format_html('<img class="shop-recs-thumb" src="{}" alt="" width="{}" height="{}" '
                           'loading="lazy">', self.image_url, size, size)


class BundleCard:
    """A bundle with its products, totals and one-line evidence."""

    def __init__(self, bundle):
        self.bundle = bundle
        self.anchor = ProductView(bundle.anchor)
        self.items = [ProductView(item.product) for item in bundle.items.all()]
        self.products = [self.anchor, *self.items]
        self.currency = self.anchor.currency
        prices = [p.price for p in self.products]
        self.total = None if None in prices else sum(prices, Decimal(0))
        self.discount = Decimal(bundle.discount_percent or 0)
        self.discounted_total = None if self.total is None else (
            self.total * (100 - self.discount) / 100).quantize(CENT, ROUND_HALF_UP)
        evidence = bundle.evidence or {}
        self.orders_with_all = evidence.get("orders_with_all")
        self.lift = evidence.get("lift")
        self.model_score = evidence.get("model_score", bundle.score)
        self.explanation = explanation(evidence)
        self.unavailable = [p for p in self.products if not p.available]

    @property
    def total_display(self):
        return money(self.total, self.currency)

    @property
    def discounted_display(self):
        return money(self.discounted_total, self.currency)

    def products_html(self):
        """Anchor, then "+ item" lines, each with thumbnail, name and price."""
        def line(prefix, product):
            flag = "" if product.available else " (unavailable)"
            return (prefix, product.thumbnail(32), product.name, product.price_display, flag)

        rows = [line("", self.anchor)] + [line("+", p) for p in self.items]
        return format_html('<ul class="shop-recs-bundle">{}</ul>', format_html_join(
            "", '<li><span class="shop-recs-plus" aria-hidden="true">{}</span>{}'
                '<span class="shop-recs-name">{}</span> '
                '<span class="shop-recs-price">{}<strong>{}</strong></span></li>', rows))
