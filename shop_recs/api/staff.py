"""Staff endpoints: training runs and bundles (list, detail, decisions).

Behind ``shop_recs.review_bundle``, the permission the admin's review screens use, and
through ``shop_recs.review`` so the admin log and cache invalidation happen the same way.
"""

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from shop_recs import review
from shop_recs.api import serializers as api
from shop_recs.api.pagination import StaffPagination
from shop_recs.api.permissions import IsReviewer
from shop_recs.api.throttling import StaffThrottle
from shop_recs.api.views import ERROR, STAFF_ERRORS
from shop_recs.models import Bundle, BundleItem, TrainingRun

CONFLICT = {409: ERROR}


def _int_param(request, name):
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: [_("A whole number is required.")]}) from None
    if not 0 < value < 2**63:
        raise ValidationError({name: [_("Out of range.")]})
    return value


class StaffView(generics.GenericAPIView):
    permission_classes = [IsReviewer]
    throttle_classes = [StaffThrottle]
    pagination_class = StaffPagination

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication and permission first
        pk = kwargs.get("pk")
        if pk is not None and not 0 < pk < 2**63:
            raise NotFound()


@extend_schema(tags=["staff"], parameters=[
    OpenApiParameter("status", enum=TrainingRun.Status.values, required=False)],
    responses={200: api.RunSerializer(many=True), 400: ERROR, 404: ERROR, **STAFF_ERRORS})
class RunListView(StaffView, generics.ListAPIView):
    serializer_class = api.RunSerializer

    def get_queryset(self):
        runs = TrainingRun.objects.order_by("-created_at", "-pk")
        wanted = self.request.query_params.get("status")
        if wanted:
            if wanted not in TrainingRun.Status.values:
                raise ValidationError({"status": [_("Unknown status.")]})
            runs = runs.filter(status=wanted)
        return runs


@extend_schema(tags=["staff"], responses={200: api.RunDetailSerializer, 404: ERROR,
                                          **STAFF_ERRORS})
class RunDetailView(StaffView, generics.RetrieveAPIView):
    serializer_class = api.RunDetailSerializer
    queryset = TrainingRun.objects.all()


@extend_schema(tags=["staff"], request=None,
               responses={200: api.RunDetailSerializer, 404: ERROR, **CONFLICT, **STAFF_ERRORS})
class RunActivateView(StaffView):
    """Serve this succeeded run's FBT lists (publish by hand, or roll back)."""

    serializer_class = api.RunDetailSerializer
    queryset = TrainingRun.objects.all()

    def post(self, request, pk):
        run = get_object_or_404(TrainingRun, pk=pk)
        try:
            review.activate_run(run, request.user)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(run).data)


def staff_bundles():
    items = BundleItem.objects.select_related("product").order_by("position")
    # Newest first by key (keys grow with creation): an index scan, where ordering by
    # created_at sorted every bundle for each page.
    return (Bundle.objects.select_related("anchor", "reviewed_by")
            .prefetch_related(Prefetch("items", queryset=items)).order_by("-pk"))


@extend_schema(tags=["staff"], parameters=[
    OpenApiParameter("status", enum=Bundle.Status.values, required=False),
    OpenApiParameter("run", int, required=False),
    OpenApiParameter("anchor", str, required=False, description="Anchor product id.")],
    responses={200: api.StaffBundleSerializer(many=True), 400: ERROR, 404: ERROR,
               **STAFF_ERRORS})
class BundleListView(StaffView, generics.ListAPIView):
    serializer_class = api.StaffBundleSerializer

    def get_queryset(self):
        from shop_recs.api.views import parse_product_id  # noqa: PLC0415

        bundles = staff_bundles()
        params = self.request.query_params
        if params.get("status"):
            if params["status"] not in Bundle.Status.values:
                raise ValidationError({"status": [_("Unknown status.")]})
            bundles = bundles.filter(status=params["status"])
        run = _int_param(self.request, "run")
        if run is not None:
            bundles = bundles.filter(run_id=run)
        if params.get("anchor"):
            bundles = bundles.filter(anchor_id=parse_product_id(params["anchor"], "anchor"))
        return bundles


@extend_schema(tags=["staff"], responses={200: api.StaffBundleSerializer, 404: ERROR,
                                          **STAFF_ERRORS})
class BundleDetailView(StaffView, generics.RetrieveAPIView):
    serializer_class = api.StaffBundleSerializer

    def get_queryset(self):
        return staff_bundles()


class BundleDecisionView(StaffView):
    """Approve, reject or retire one bundle (409 when its status does not allow it)."""

    serializer_class = api.DecisionSerializer
    decision = None

    @extend_schema(tags=["staff"], request=None,
                   responses={200: api.DecisionSerializer, 404: ERROR, **CONFLICT,
                              **STAFF_ERRORS})
    def post(self, request, pk):
        bundle = get_object_or_404(Bundle, pk=pk)
        result = review.decide([bundle], self.decision, request.user)
        if not result.changed:
            return Response(
                {"detail": _("A %(status)s bundle cannot be %(decision)s.") % {
                    "status": bundle.get_status_display(),
                    "decision": {"approve": _("approved"), "reject": _("rejected"),
                                 "retire": _("retired")}[self.decision]}},
                status=status.HTTP_409_CONFLICT)
        bundle = staff_bundles().get(pk=pk)
        return Response(self.get_serializer(
            {"decision": self.decision, "changed": True, "bundle": bundle}).data)
