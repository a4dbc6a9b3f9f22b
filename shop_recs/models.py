"""Models of shop_recs: the default catalogue and the interactions learned from.

``Product`` is swappable: a shop with its own product table sets
``SHOP_RECS_PRODUCT_MODEL = "app_label.Model"`` before the first migration, the way
``AUTH_USER_MODEL`` works, and the default table is never created. Every reference to a
product goes through ``settings.SHOP_RECS_PRODUCT_MODEL`` (see ``conf.product_model_label``)
and every field read goes through ``shop_recs.products.ProductAdapter``.
"""

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone
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
            # A visitor's purchases (personalisation): both equalities in one index, so
            # that a planner without statistics (SQLite) does not pick the kind index.
            models.Index(fields=["visitor_id", "kind", "timestamp"],
                         name="shop_recs_visitor_kind_ts"),
            models.Index(fields=["user", "kind", "timestamp"], name="shop_recs_user_kind_ts"),
            # Admin changelist: newest first, the widget and source filters (admin/paging.py).
            models.Index(fields=["timestamp", "id"], name="shop_recs_ts_id"),
            models.Index(fields=["widget", "timestamp"], name="shop_recs_widget_ts"),
            models.Index(fields=["source", "timestamp"], name="shop_recs_source_ts"),
            # Review queue: revenue per product read from the index alone (review.py).
            models.Index(fields=["kind", "product", "quantity", "unit_price"],
                         name="shop_recs_purchase_value"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} of {self.product_id} at {self.timestamp:%Y-%m-%d %H:%M}"


class TrainingRun(models.Model):
    """One training job: extract baskets, train, evaluate against baselines, gate, publish.

    At most one run is queued or running per database: ``pending`` is ``True`` only
    then, and is unique (NULLs are not), so a second request cannot create another.
    Exactly one succeeded run is ``is_active``: the one whose rows customers see.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("cancelled")

    status = models.CharField(_("status"), max_length=10, choices=Status.choices,
                              default=Status.QUEUED)
    pending = models.BooleanField(_("queued or running"), null=True, default=True, unique=True,
                                  editable=False)
    is_active = models.BooleanField(_("serving"), default=False)
    trigger = models.CharField(_("started by"), max_length=40, blank=True,
                               help_text=_("admin, command, schedule or api"))
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                     null=True, blank=True, related_name="+",
                                     verbose_name=_("requested by"))
    config = models.JSONField(_("configuration"), default=dict, blank=True)
    device = models.CharField(_("device"), max_length=40, blank=True)
    data_cutoff = models.DateTimeField(_("data cutoff"), null=True, blank=True)
    counts = models.JSONField(_("data counts"), default=dict, blank=True)
    progress = models.JSONField(_("progress"), default=dict, blank=True)
    metrics = models.JSONField(_("metrics"), default=dict, blank=True)
    gate = models.JSONField(_("gate decision"), default=dict, blank=True)
    shipped_model = models.CharField(_("shipped model"), max_length=60, blank=True)
    # How the widget treats what a returning visitor bought before (shop_recs.ml.policy):
    # {"mode": "off" | "boost" | "demote", "weight", "half_life", "top_k", validation figures}.
    serving_policy = models.JSONField(_("returning-visitor policy"), default=dict, blank=True)
    timings = models.JSONField(_("timings (s)"), default=dict, blank=True)
    artifact_path = models.CharField(_("artifact path"), max_length=500, blank=True)
    artifact_sha256 = models.CharField(_("artifact sha256"), max_length=64, blank=True)
    error = models.TextField(_("error"), blank=True)
    task_id = models.CharField(_("Celery task id"), max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(_("last progress"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"
        verbose_name = _("training run")
        verbose_name_plural = _("training runs")
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=models.Q(is_active=True),
                                    name="shop_recs_one_active_run"),
        ]
        permissions = [("start_training", _("Can start training runs"))]

    def __str__(self):
        return f"Run {self.pk} ({self.get_status_display()})"

    @property
    def is_finished(self):
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED)

    def finish(self, status, **fields):
        """Mark this run finished with ``status`` (and ``fields``), freeing the one-pending-run
        slot; the row is updated in one query and this instance refreshed."""
        type(self).objects.filter(pk=self.pk).update(status=status, pending=None,
                                                     finished_at=timezone.now(), **fields)
        self.refresh_from_db()
        return self


class Recommendation(models.Model):
    """One entry of a product's published "frequently bought together" list."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="recommendations",
                            verbose_name=_("training run"))
    product = models.ForeignKey(product_model_label(), on_delete=models.CASCADE, related_name="+",
                                verbose_name=_("product"))
    recommended = models.ForeignKey(product_model_label(), on_delete=models.CASCADE,
                                    related_name="+", verbose_name=_("recommended product"))
    rank = models.PositiveSmallIntegerField(_("rank"))
    score = models.FloatField(_("score"))
    source = models.CharField(_("source"), max_length=40)
    evidence = models.JSONField(_("evidence"), default=dict, blank=True)

    class Meta:
        ordering = ["product", "rank"]
        verbose_name = _("recommendation")
        verbose_name_plural = _("recommendations")
        constraints = [
            models.UniqueConstraint(fields=["run", "product", "rank"], name="shop_recs_fbt_rank"),
        ]
        indexes = [models.Index(fields=["product", "run", "rank"], name="shop_recs_fbt_lookup"),
                   # "In the FBT list of something the visitor bought" (personalisation).
                   models.Index(fields=["recommended", "product"], name="shop_recs_fbt_reverse")]

    def __str__(self):
        return f"{self.product_id} → {self.recommended_id} (#{self.rank})"


def bundle_signature(anchor_pk, item_pks):
    """Order-free key of a set of products: a reviewed set is recognised in later runs."""
    keys = sorted(str(pk) for pk in [anchor_pk, *item_pks])
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


class Bundle(models.Model):
    """A set of products offered together around an anchor product, reviewed by staff."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", _("proposed")
        APPROVED = "approved", _("approved")
        REJECTED = "rejected", _("rejected")
        RETIRED = "retired", _("retired")

    class Source(models.TextChoices):
        MODEL = "model", _("learned model")
        BASELINE = "baseline", _("baseline")
        MANUAL = "manual", _("staff")

    anchor = models.ForeignKey(product_model_label(), on_delete=models.CASCADE, related_name="+",
                               verbose_name=_("anchor product"))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices,
                              default=Status.PROPOSED, db_index=True)
    source = models.CharField(_("source"), max_length=10, choices=Source.choices,
                              default=Source.MODEL)
    run = models.ForeignKey(TrainingRun, on_delete=models.SET_NULL, null=True, blank=True,
                            related_name="bundles", verbose_name=_("proposed by run"))
    score = models.FloatField(_("model score"), null=True, blank=True)
    evidence = models.JSONField(_("evidence"), default=dict, blank=True)
    # bundle_signature() of anchor + items: a rejected set is recognised in later runs.
    signature = models.CharField(_("signature"), max_length=64, db_index=True)
    discount_percent = models.DecimalField(_("discount (%)"), max_digits=4, decimal_places=1,
                                           default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    reviewed_at = models.DateTimeField(_("reviewed"), null=True, blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                    null=True, blank=True, related_name="+",
                                    verbose_name=_("reviewed by"))

    class Meta:
        ordering = ["anchor", "-score"]
        verbose_name = _("bundle")
        verbose_name_plural = _("bundles")
        permissions = [("review_bundle", _("Can approve, reject and retire bundles"))]
        indexes = [
            # Admin: the changelist's default order (best score first), also per status
            # and per run, and the anchors with proposals (review queue).
            models.Index(fields=["score", "id"], name="shop_recs_bundle_score"),
            models.Index(fields=["status", "score", "id"], name="shop_recs_bundle_st_score"),
            models.Index(fields=["run", "score", "id"], name="shop_recs_bundle_run_score"),
            models.Index(fields=["status", "anchor", "score"], name="shop_recs_bundle_st_anchor"),
        ]

    def __str__(self):
        return f"Bundle {self.pk} around {self.anchor_id} ({self.get_status_display()})"


class BundleItem(models.Model):
    """A product in a bundle, in display order (the anchor is not repeated here)."""

    bundle = models.ForeignKey(Bundle, on_delete=models.CASCADE, related_name="items",
                               verbose_name=_("bundle"))
    product = models.ForeignKey(product_model_label(), on_delete=models.CASCADE, related_name="+",
                                verbose_name=_("product"))
    position = models.PositiveSmallIntegerField(_("position"))

    class Meta:
        ordering = ["bundle", "position"]
        verbose_name = _("bundle item")
        verbose_name_plural = _("bundle items")
        constraints = [
            models.UniqueConstraint(fields=["bundle", "product"], name="shop_recs_bundle_product"),
        ]

    def __str__(self):
        return f"{self.product_id} at {self.position}"


class FallbackRecommendation(models.Model):
    """One entry of a product's stored fallback list, served after its bundles and FBT list.

    Products bought in the same recent orders (``cooccurrence``), then bestsellers of the
    product's category (``popular``). Computed from the stored orders after an import, by
    every training run and on schedule (``shop_recs.fallbacks.refresh``), and read with
    the same indexed query as the published lists: nothing is aggregated per request.
    """

    # Looked up by product through the (product, rank) unique constraint's index.
    product = models.ForeignKey(product_model_label(), on_delete=models.CASCADE, related_name="+",
                                db_index=False, verbose_name=_("product"))
    recommended = models.ForeignKey(product_model_label(), on_delete=models.CASCADE,
                                    related_name="+", verbose_name=_("recommended product"))
    rank = models.PositiveSmallIntegerField(_("rank"))
    score = models.FloatField(_("score"))
    method = models.CharField(_("method"), max_length=20)
    evidence = models.JSONField(_("evidence"), default=dict, blank=True)

    class Meta:
        ordering = ["product", "rank"]
        verbose_name = _("fallback recommendation")
        verbose_name_plural = _("fallback recommendations")
        constraints = [
            models.UniqueConstraint(fields=["product", "rank"], name="shop_recs_fallback_rank"),
        ]

    def __str__(self):
        return f"{self.product_id} → {self.recommended_id} (fallback #{self.rank})"


from shop_recs.analytics.models import ShopDayStat, WidgetDayStat  # noqa: E402,F401
from shop_recs.analytics.experiment_models import (  # noqa: E402,F401
    Arm, Experiment, ExperimentUnitDay, Exposure)
