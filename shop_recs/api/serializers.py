"""Serializers of the API: products as the widget shows them, recommendations with
their provenance (run, source, bundle), events, and staff views of runs and bundles.

Product ids are strings in the API: the product model is the host's, and its primary
key need not be an integer.
"""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from shop_recs.models import Bundle, Interaction, TrainingRun
from shop_recs.products import get_adapter

ANONYMOUS_KINDS = (Interaction.Kind.VIEW, Interaction.Kind.WIDGET_IMPRESSION,
                   Interaction.Kind.WIDGET_CLICK)
PRODUCT_ID_MAX_LENGTH = 64
MAX_CART_PRODUCTS = 50
LIMIT_MAX = 100  # the schema's bound; SHOP_RECS["MAX_LIMIT"] clamps further


class ProductSerializer(serializers.Serializer):
    """A product as a widget shows it, read through the product adapter."""

    id = serializers.CharField()
    name = serializers.CharField()
    price = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    currency = serializers.CharField(allow_null=True)
    url = serializers.CharField(allow_blank=True)
    image_url = serializers.CharField(allow_blank=True)
    category = serializers.CharField(allow_blank=True)
    in_stock = serializers.BooleanField()

    def to_representation(self, product):
        return product_data(product)


def product_data(product):
    """:class:`ProductSerializer`'s representation, without a serializer instance (building
    one costs more than the dict)."""
    adapter = get_adapter()
    price = adapter.price(product)
    return {
        "id": str(product.pk),
        "name": adapter.name(product),
        "price": None if price is None else f"{price:.2f}",
        "currency": adapter.get(product, "currency"),
        "url": adapter.url(product),
        "image_url": str(adapter.get(product, "image_url") or ""),
        "category": str(adapter.get(product, "category") or ""),
        "in_stock": bool(adapter.get(product, "in_stock")),
    }


class RecommendedItemSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    product = ProductSerializer()
    source = serializers.ChoiceField(
        choices=["bundle", "model", "fallback", "history"],
        help_text=_("bundle: a reviewed bundle; model: the serving run's FBT list; "
                    "fallback: co-occurrence or popular in the category; history: bought "
                    "before by this visitor (the run's returning-visitor policy)."))
    method = serializers.CharField(
        help_text=_("The bundle's source, the run's shipped model, cooccurrence or popular; "
                    "content: a list chosen from the product's name and category because it "
                    "has no orders yet (evidence.explanation says so)."))
    score = serializers.FloatField()
    run = serializers.IntegerField(allow_null=True, help_text=_("Training run of the row."))
    bundle = serializers.IntegerField(allow_null=True)
    evidence = serializers.DictField(help_text=_("e.g. orders_together, lift, confidence."))
    attribution = serializers.CharField(
        help_text=_("Signed token to send with clicks, cart adds and purchases."))


class RecommendationsSerializer(serializers.Serializer):
    product = ProductSerializer(allow_null=True)
    run = serializers.IntegerField(allow_null=True)
    bundle = serializers.IntegerField(allow_null=True,
                                      help_text=_("Bundle shown whole, if any."))
    discount_percent = serializers.DecimalField(max_digits=4, decimal_places=1,
                                                allow_null=True)
    personalised = serializers.BooleanField()
    items = RecommendedItemSerializer(many=True)
    exposure = serializers.CharField(allow_blank=True, default="", help_text=_(
        "In an A/B experiment: a signed token to post to the exposure endpoint when these "
        "items are shown (even when there are none: the \"no widget\" arm). Else empty."))

    def to_representation(self, data):
        """The declared fields, written out: DRF's per-field dispatch over the nested items
        cost more than the rest of an uncached answer. ``tests/test_api.py`` compares it
        with the generic representation."""
        product = product_data
        discount = data["discount_percent"]
        return {
            "product": None if data["product"] is None else product(data["product"]),
            "run": _int_or_none(data["run"]),
            "bundle": _int_or_none(data["bundle"]),
            "discount_percent": None if discount is None else _DISCOUNT.to_representation(discount),
            "personalised": bool(data["personalised"]),
            "items": [{
                "rank": int(item["rank"]), "product": product(item["product"]),
                "source": str(item["source"]), "method": str(item["method"]),
                "score": float(item["score"]), "run": _int_or_none(item["run"]),
                "bundle": _int_or_none(item["bundle"]),
                "evidence": {str(key): value for key, value in item["evidence"].items()},
                "attribution": str(item["attribution"]),
            } for item in data["items"]],
            "exposure": str(data.get("exposure") or ""),
        }


_DISCOUNT = serializers.DecimalField(max_digits=4, decimal_places=1)


def _int_or_none(value):
    return None if value is None else int(value)


class LimitSerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=LIMIT_MAX, required=False)


class CartCompleteSerializer(serializers.Serializer):
    products = serializers.ListField(
        child=serializers.CharField(max_length=PRODUCT_ID_MAX_LENGTH),
        max_length=MAX_CART_PRODUCTS, allow_empty=True,
        help_text=_("Ids of the products in the cart."))
    limit = serializers.IntegerField(min_value=1, max_value=LIMIT_MAX, required=False)


class PublicBundleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    source = serializers.CharField()
    run = serializers.IntegerField(allow_null=True)
    score = serializers.FloatField(allow_null=True)
    discount_percent = serializers.DecimalField(max_digits=4, decimal_places=1)
    evidence = serializers.DictField()
    items = ProductSerializer(many=True)


class ProductBundlesSerializer(serializers.Serializer):
    product = ProductSerializer()
    bundles = PublicBundleSerializer(many=True)


class EventSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Interaction.Kind.choices)
    product = serializers.CharField(max_length=PRODUCT_ID_MAX_LENGTH)
    attribution = serializers.CharField(max_length=500, required=False, allow_blank=True)
    quantity = serializers.IntegerField(min_value=1, max_value=999, required=False)
    order_id = serializers.CharField(max_length=64, required=False, allow_blank=True,
                                     help_text=_("Purchases only (trusted senders)."))
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=3, min_value=0,
                                          required=False, allow_null=True)
    timestamp = serializers.DateTimeField(required=False,
                                          help_text=_("Trusted senders only."))

    def validate(self, attrs):
        if attrs["kind"] == Interaction.Kind.PURCHASE and not attrs.get("order_id", "").strip():
            raise serializers.ValidationError({"order_id": [_("A purchase needs an order id.")]})
        return attrs


class EventBatchSerializer(serializers.Serializer):
    events = EventSerializer(many=True, allow_empty=False)

    def __init__(self, *args, max_events=500, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_events = max_events

    def validate_events(self, events):
        if len(events) > self.max_events:
            raise serializers.ValidationError(
                _("At most %(n)d events per request.") % {"n": self.max_events})
        return events


class EventResultSerializer(serializers.Serializer):
    stored = serializers.IntegerField()
    duplicates = serializers.IntegerField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class RunSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = ["id", "status", "is_active", "trigger", "shipped_model", "device",
                  "data_cutoff", "created_at", "started_at", "finished_at"]


class RunDetailSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = [*RunSerializer.Meta.fields, "config", "counts", "progress", "metrics", "gate",
                  "timings", "artifact_sha256", "error", "attempts"]


class StaffBundleSerializer(serializers.ModelSerializer):
    anchor = ProductSerializer()
    items = serializers.SerializerMethodField()
    reviewed_by = serializers.SerializerMethodField()

    class Meta:
        model = Bundle
        fields = ["id", "anchor", "items", "status", "source", "run", "score", "evidence",
                  "discount_percent", "created_at", "reviewed_at", "reviewed_by"]

    @extend_schema_field(ProductSerializer(many=True))
    def get_items(self, bundle):
        return ProductSerializer([item.product for item in bundle.items.all()], many=True).data

    def get_reviewed_by(self, bundle) -> str | None:
        user = bundle.reviewed_by
        return None if user is None else user.get_username()


class DecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["approve", "reject", "retire"])
    changed = serializers.BooleanField()
    bundle = StaffBundleSerializer()
