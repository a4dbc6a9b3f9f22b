"""Models of shop_recs: the default catalogue and the interactions learned from.

``Product`` is swappable: a shop with its own product table sets
``SHOP_RECS_PRODUCT_MODEL = "app_label.Model"`` before the first migration, the way
``AUTH_USER_MODEL`` works, and the default table is never created. Every reference to a
product goes through ``settings.SHOP_RECS_PRODUCT_MODEL`` (see ``conf.product_model_label``)
and every field read goes through ``shop_recs.products.ProductAdapter``.
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from shop_recs.conf import product_model_label
from shop_recs.managers import InteractionQuerySet


class Product(models.Model):
    """A product of a shop that has no catalogue of its own (and of the demo shop)."""

    sku = models.CharField(_("SKU"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=255)
    description = models.TextField(_("description"), blank=True)
    price = models.DecimalField(_("price"), max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    image_url = models.URLField(_("image URL"), max_length=500, blank=True)
    category = models.CharField(_("category"), max_length=128, blank=True, db_index=True)
    in_stock = models.BooleanField(_("in stock"), default=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        swappable = "SHOP_RECS_PRODUCT_MODEL"
        ordering = ["name"]
        verbose_name = _("product")
        verbose_name_plural = _("products")

    def __str__(self):
        return f"{self.name} ({self.sku})"


class Interaction(models.Model):
    """One thing a shopper did with a product: a view, a cart add, a purchase line, ...

    Purchases sharing an ``order_id`` form the baskets the model learns from.
    ``visitor_id`` is a keyed hash (see ``shop_recs.ingest.pseudonymise``), never a raw
    session key, customer number or IP address. ``widget``, ``bundle_ref`` and
    ``run_ref`` record which recommendation led to the interaction, if any.
    """

    class Kind(models.TextChoices):
        VIEW = "view", _("view")
        CART_ADD = "cart_add", _("added to cart")
        PURCHASE = "purchase", _("purchase")
        WIDGET_IMPRESSION = "widget_impression", _("widget impression")
        WIDGET_CLICK = "widget_click", _("widget click")
        BUNDLE_ADD_TO_CART = "bundle_add_to_cart", _("bundle added to cart")

    class Source(models.TextChoices):
        IMPORT = "import", _("bulk import")
        SERVER = "server", _("server-side code")
        API = "api", _("REST API")

    product = models.ForeignKey(
        product_model_label(), on_delete=models.CASCADE, related_name="+",
        verbose_name=_("product"),
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+", verbose_name=_("user"),
    )
    visitor_id = models.CharField(_("visitor id"), max_length=64, blank=True)
    order_id = models.CharField(_("order id"), max_length=64, blank=True)
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    unit_price = models.DecimalField(
        _("unit price"), max_digits=12, decimal_places=3, null=True, blank=True
    )
    timestamp = models.DateTimeField(_("timestamp"))
    source = models.CharField(
        _("source"), max_length=10, choices=Source.choices, default=Source.SERVER
    )
    widget = models.CharField(_("widget"), max_length=40, blank=True)
    bundle_ref = models.PositiveBigIntegerField(_("bundle"), null=True, blank=True)
    run_ref = models.PositiveBigIntegerField(_("training run"), null=True, blank=True)
    # Stable hash of an imported or recorded order line: re-imports add nothing.
    line_key = models.BigIntegerField(_("line key"), null=True, blank=True, unique=True)

    objects = InteractionQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp"]
        verbose_name = _("interaction")
        verbose_name_plural = _("interactions")
        indexes = [
            # Basket extraction: purchases up to a cutoff, grouped by order.
            models.Index(fields=["kind", "timestamp"], name="shop_recs_kind_ts"),
            models.Index(fields=["order_id", "kind"], name="shop_recs_order_kind"),
            models.Index(fields=["product", "kind"], name="shop_recs_product_kind"),
            models.Index(fields=["visitor_id", "timestamp"], name="shop_recs_visitor_ts"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} of {self.product_id} at {self.timestamp:%Y-%m-%d %H:%M}"
