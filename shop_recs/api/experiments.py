"""The exposure endpoint of A/B experiments: ``POST {"token": "..."}`` → 204.

``widget.js`` posts a widget's ``data-exposure`` token here when the widget (or the empty
spot of the *no widget* arm) is seen; an API client posts the ``exposure`` token of an answer
when it shows that answer. The server records the visitor's first exposure only when the
token is valid and its arm is the one this visitor is assigned to (see
``shop_recs.analytics.experiments.log_exposure``); any other token is answered the same way,
so that the endpoint tells a visitor nothing about other arms.
"""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from shop_recs import ranking
from shop_recs.analytics import experiments
from shop_recs.api.parsers import LimitedJSONParser
from shop_recs.api.throttling import EventsThrottle
from shop_recs.api.views import BODY_ERRORS


class ExposureSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=300, help_text=_(
        "The ``exposure`` token of an answer, or a widget's ``data-exposure``."))


@extend_schema(tags=["events"], request=ExposureSerializer, responses={204: None, **BODY_ERRORS})
class ExposureView(generics.GenericAPIView):
    """Record that this visitor saw their experiment arm (idempotent)."""

    serializer_class = ExposureSerializer
    permission_classes = [AllowAny]
    throttle_classes = [EventsThrottle]
    parser_classes = [LimitedJSONParser]

    def post(self, request):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        experiments.log_exposure(body.validated_data["token"], ranking.visitor_for(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
