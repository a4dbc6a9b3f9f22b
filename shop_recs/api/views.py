"""Views of the API: thin wrappers over ``shop_recs.ranking``, ``shop_recs.ingest`` and
``shop_recs.review``. Every view states its permission and throttle classes.

Errors are JSON: 400 with field errors for malformed ids and bodies, 404 for unknown
products, 413 for bodies over ``SHOP_RECS["MAX_BODY_BYTES"]``, 429 when throttled.
"""

from django.db import connections, models, transaction
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch
from django.http import HttpResponse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from shop_recs import ranking, review
from shop_recs.analytics import experiments
from shop_recs.api import hot_path
from shop_recs.api import serializers as api
from shop_recs.api.pagination import StaffPagination
from shop_recs.api.parsers import LimitedJSONParser
from shop_recs.api.permissions import IsReviewer, can_record_trusted_events
from shop_recs.api.schema import SchemaGenerator
from shop_recs.api.throttling import EventsThrottle, ReadThrottle, StaffThrottle
from shop_recs.attribution import read_token, token_maker
from shop_recs.conf import recs_settings
from shop_recs.ingest import pseudonymise, record_events
from shop_recs.models import Bundle, BundleItem, TrainingRun
from shop_recs.products import get_adapter

API_WIDGET = "api"
JSON_RENDERER = JSONRenderer()
PRODUCT_ID = OpenApiParameter("product_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                              description="The product's primary key.")
ERROR = OpenApiResponse(OpenApiTypes.OBJECT, description="JSON error, with field errors on 400.")
PUBLIC_ERRORS = {400: ERROR, 404: ERROR, 429: ERROR}
BODY_ERRORS = {400: ERROR, 413: ERROR, 415: ERROR, 429: ERROR}
STAFF_ERRORS = {401: ERROR, 403: ERROR, 429: ERROR}


def parse_product_id(raw, field="product"):
    """The product model's pk value for ``raw``, or a 400 naming ``field``."""
    pk_field = get_adapter().model._meta.pk
    if (type(raw) is str and len(raw) < 10 and raw.isdigit() and raw.isascii()
            and pk_field.get_internal_type() in ("AutoField", "BigAutoField", "IntegerField",
                                                 "BigIntegerField", "PositiveIntegerField",
                                                 "PositiveBigIntegerField")):
        return int(raw)  # the common case: a plain id within every integer range
    error = serializers.ValidationError({field: [_("Not a valid product id.")]})
    if raw is None or len(str(raw)) > api.PRODUCT_ID_MAX_LENGTH:
        raise error
    try:
        value = pk_field.to_python(str(raw).strip())
    except (DjangoValidationError, ValueError, TypeError):
        raise error from None
    if isinstance(pk_field, models.IntegerField):
        low, high = connections["default"].ops.integer_field_range(pk_field.get_internal_type())
        if (low is not None and value < low) or (high is not None and value > high):
            raise error
    if value in (None, ""):
        raise error
    return value


def present(result, *, widget=API_WIDGET, anchor=True, assigned=None):
    """The response body of a :class:`ranking.Recommendations` (``assigned``: the
    visitor's experiment arm, whose *no widget* shows no items)."""
    exposure = assigned.exposure if assigned is not None and result else ""
    if assigned is not None and assigned.hides_widget:
        result = ranking.Recommendations(result.anchors, [])
    elif assigned is not None:
        result = assigned.adjust(result)  # a discount arm's bundle discount
    bundle = result.bundle
    token = token_maker(widget)
    return {
        "exposure": exposure,
        "product": result.anchors[0] if anchor and result.anchors else None,
        "run": result.run,
        "bundle": bundle,
        "discount_percent": result.bundles[bundle]["discount_percent"] if bundle else None,
        "personalised": result.personalised,
        "items": [{
            "rank": rank, "product": item.product, "source": item.source,
            "method": item.method, "score": item.score, "run": item.run,
            "bundle": item.bundle, "evidence": item.evidence,
            "attribution": token(item.bundle, item.run),
        } for rank, item in enumerate(result.items, 1)],
    }


def visitor_of(request):
    """A pseudonymous visitor id: the session's when it has one, else the client's."""
    session = getattr(request._request, "session", None)
    if session is not None and session.session_key:
        return pseudonymise("session", session.session_key)
    client = (f"{request.META.get('REMOTE_ADDR', '')}"
              f"\x1f{request.META.get('HTTP_USER_AGENT', '')[:200]}")
    return pseudonymise("client", client)


class PublicView(generics.GenericAPIView):
    permission_classes = [AllowAny]
    throttle_classes = [ReadThrottle]


@extend_schema(tags=["recommendations"], parameters=[PRODUCT_ID, api.LimitSerializer],
               responses={200: api.RecommendationsSerializer, **PUBLIC_ERRORS})
class FrequentlyBoughtTogetherView(PublicView):
    """Bundles, then the serving run's FBT list, then fallbacks, for one product.

    The body for visitors without purchase history is cached whole (see
    ``ranking.shared_answer``): a warm call is one cache read, plus one query for a
    visitor with a session or a login not seen lately (do they have history?).
    """

    serializer_class = api.RecommendationsSerializer

    def dispatch(self, request, *args, **kwargs):
        # A plain JSON GET skips DRF's dispatch (``shop_recs.api.hot_path`` says when).
        response = hot_path.answer(self, request, lambda params: self.answer(
            request, kwargs.get("product_id"), params, JSON_RENDERER))
        return response if response is not None else super().dispatch(request, *args,
                                                                       **kwargs)

    def check_throttles(self, request):
        if not hot_path.counted(request):  # the hot path counted it and then met an error
            super().check_throttles(request)

    @staticmethod
    def limit(params):
        raw = params.get("limit")
        if raw is None:
            return None
        if raw.isdigit() and raw.isascii() and len(raw) <= 3 and 1 <= int(raw) <= api.LIMIT_MAX:
            return int(raw)
        query = api.LimitSerializer(data=params)  # the 400 with field errors
        query.is_valid(raise_exception=True)
        return query.validated_data.get("limit")

    def get(self, request, product_id):
        error = hot_path.take_error(request)
        if error is not None:
            raise error
        renderer, media_type = request.accepted_renderer, request.accepted_media_type
        # Plain JSON is cached rendered; anything else (the browsable API, ``indent``) as
        # data, rendered per request.
        rendered = isinstance(renderer, JSONRenderer) and media_type == renderer.media_type
        payload = self.answer(request, product_id, request.query_params,
                              renderer if rendered else None)
        if not rendered:
            return Response(payload)
        charset = f"; charset={renderer.charset}" if renderer.charset else ""
        return HttpResponse(payload, content_type=f"{renderer.media_type}{charset}")

    def answer(self, request, product_id, params, renderer=None):
        """The body for ``product_id``: rendered by ``renderer`` (a JSON renderer, with its
        own media type), else data. ``request``: Django's or DRF's (the visitor)."""
        pk = parse_product_id(product_id)
        limit = ranking.clamp_limit(self.limit(params))
        visitor = ranking.visitor_for(request)
        kind = type(renderer)
        parts = ("api-fbt", pk, limit, get_language(),
                 f"{kind.__module__}.{kind.__qualname__}" if renderer is not None else "data")
        payload, assigned, parts = experiments.shared_answer(experiments.API, parts, [pk],
                                                             visitor)
        if payload is None:
            try:
                result = ranking.recommend([pk], limit=limit, visitor=visitor, track=True,
                                           **(assigned.recommend_kwargs() if assigned else {}))
            except LookupError:
                raise NotFound(_("No such product.")) from None
            payload = api.RecommendationsSerializer(present(result, assigned=assigned)).data
            if renderer is not None:
                payload = renderer.render(payload, renderer.media_type,
                                          self.get_renderer_context())
            ranking.store_answer(parts, result, payload)
        return payload


@extend_schema(tags=["recommendations"], parameters=[PRODUCT_ID],
               responses={200: api.ProductBundlesSerializer, **PUBLIC_ERRORS})
class ProductBundlesView(PublicView):
    """The bundles customers may buy around one product (all items available)."""

    serializer_class = api.ProductBundlesSerializer

    def get(self, request, product_id):
        pk = parse_product_id(product_id)
        adapter = get_adapter()
        anchor = adapter.model._default_manager.filter(pk=pk).first()
        if anchor is None or not adapter.get(anchor, "is_active"):
            raise NotFound(_("No such product."))
        statuses = [Bundle.Status.APPROVED]
        if not recs_settings.REQUIRE_APPROVAL:
            statuses.append(Bundle.Status.PROPOSED)
        items = BundleItem.objects.select_related("product").order_by("position")
        bundles = []
        for bundle in (Bundle.objects.filter(anchor_id=anchor.pk, status__in=statuses)
                       .order_by("status", "-score", "pk")
                       .prefetch_related(Prefetch("items", queryset=items))):
            products = [item.product for item in bundle.items.all()]
            if products and all(self.available(adapter, p) for p in products):
                bundles.append({"id": bundle.pk, "source": bundle.source,
                                "run": bundle.run_id, "score": bundle.score,
                                # What the cart charges this visitor (a discount arm's).
                                "discount_percent": experiments.bundle_discount(request,
                                                                                bundle),
                                "evidence": bundle.evidence or {}, "items": products})
        return Response(self.get_serializer({"product": anchor, "bundles": bundles}).data)

    @staticmethod
    def available(adapter, product):
        return bool(adapter.get(product, "is_active") and adapter.get(product, "in_stock"))


@extend_schema(tags=["recommendations"], request=api.CartCompleteSerializer,
               responses={200: api.RecommendationsSerializer, **BODY_ERRORS})
class CartCompleteView(PublicView):
    """Products that complete a cart; unknown or inactive cart products are ignored."""

    serializer_class = api.CartCompleteSerializer
    parser_classes = [LimitedJSONParser]

    def post(self, request):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        pks = [parse_product_id(raw, "products") for raw in body.validated_data["products"]]
        result = ranking.recommend(pks, limit=body.validated_data.get("limit"), strict=False,
                                   visitor=ranking.visitor_for(request))
        data = present(result, widget="api-cart", anchor=False)
        return Response(api.RecommendationsSerializer(data).data)


@extend_schema(tags=["events"], request=api.EventBatchSerializer,
               responses={201: api.EventResultSerializer, 403: ERROR, **BODY_ERRORS})
class EventsView(generics.GenericAPIView):
    """Record a batch of events. Anonymous senders: views, impressions and clicks only;
    purchases and cart adds need the ``shop_recs.add_interaction`` permission."""

    serializer_class = api.EventBatchSerializer
    permission_classes = [AllowAny]
    throttle_classes = [EventsThrottle]
    parser_classes = [LimitedJSONParser]

    def get_serializer(self, *args, **kwargs):
        kwargs.setdefault("max_events", recs_settings.EVENTS_MAX_BATCH)
        return super().get_serializer(*args, **kwargs)

    def post(self, request):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        events = body.validated_data["events"]
        trusted = can_record_trusted_events(request.user)
        if not trusted and any(e["kind"] not in api.ANONYMOUS_KINDS for e in events):
            raise PermissionDenied(_("Only views, widget impressions and widget clicks may "
                                     "be sent without service or staff credentials."))
        errors, pks = {}, []
        for index, event in enumerate(events):
            try:
                pks.append(parse_product_id(event["product"]))
            except serializers.ValidationError as exc:
                errors[index] = exc.detail
                pks.append(None)
        model = get_adapter().model
        found = {str(p.pk): p for p in model._default_manager.filter(
            pk__in=[pk for pk in pks if pk is not None])}
        rows = []
        for index, (event, pk) in enumerate(zip(events, pks)):
            product = found.get(str(pk)) if pk is not None else None
            if product is None:
                errors.setdefault(index, {"product": [_("Unknown product.")]})
                continue
            attribution = read_token(event.get("attribution"))
            row = {"kind": event["kind"], "product": product,
                   "quantity": event.get("quantity") or 1,
                   **(attribution.as_event_fields() if attribution else {})}
            if trusted:
                row.update(order_id=event.get("order_id", ""),
                           unit_price=event.get("unit_price"), timestamp=event.get("timestamp"))
            rows.append(row)
        if errors:
            raise serializers.ValidationError({"events": errors})
        user = request.user if request.user.is_authenticated else None
        with transaction.atomic():
            stored, duplicates = record_events(
                rows, user=user, visitor_id=visitor_of(request),
                dedupe_window=None if trusted else recs_settings.EVENT_DEDUP_WINDOW)
        result = api.EventResultSerializer({"stored": stored, "duplicates": duplicates})
        return Response(result.data, status=status.HTTP_201_CREATED)


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema of this API (only shop_recs' endpoints)."""

    permission_classes = [AllowAny]
    throttle_classes = [ReadThrottle]
    urlconf = "shop_recs.urls"
    generator_class = SchemaGenerator  # works without the host's DEFAULT_SCHEMA_CLASS
    custom_settings = {
        "TITLE": "shop_recs API",
        "DESCRIPTION": "Frequently bought together, bundles, events and staff review.",
        "VERSION": "1",
        # Two models have a "status" field with different choices.
        "ENUM_NAME_OVERRIDES": {
            "RunStatusEnum": TrainingRun.Status.choices,
            "BundleStatusEnum": Bundle.Status.choices,
        },
    }

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


@extend_schema(exclude=True)
class NotFoundView(generics.GenericAPIView):
    """A JSON 404 for any other path under the API."""

    permission_classes = [AllowAny]
    throttle_classes = [ReadThrottle]

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise NotFound()

    get = post = put = patch = delete = head = options = http_method_not_allowed
