"""Staff endpoint: ``POST privacy/erase/`` erases one shopper's data (``shop_recs.privacy``).

Allowed to superusers and to staff holding ``shop_recs.delete_interaction``. The body names the
shopper (``user_id``, ``username``, ``customer_id``, ``session_key`` and/or ``visitor_id``);
the answer holds counts only, never the identifiers.
"""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from shop_recs import privacy
from shop_recs.api.parsers import LimitedJSONParser
from shop_recs.api.throttling import StaffThrottle

ERASE_PERMISSION = "shop_recs.delete_interaction"
ERROR = OpenApiResponse(OpenApiTypes.OBJECT, description="JSON error, with field errors on 400.")


class CanEraseShopperData(BasePermission):
    """Superusers, and staff members holding ``shop_recs.delete_interaction``."""

    message = "You need to be staff with the shop_recs.delete_interaction permission."

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        return bool(user.is_superuser or (user.is_staff and user.has_perm(ERASE_PERMISSION)))


class ErasureRequestSerializer(serializers.Serializer):
    user_id = serializers.CharField(required=False, max_length=64,
                                    help_text="Primary key of the user account.")
    username = serializers.CharField(required=False, max_length=150)
    customer_id = serializers.CharField(required=False, max_length=255,
                                        help_text="The shop's own customer number.")
    session_key = serializers.CharField(required=False, max_length=64)
    visitor_id = serializers.RegexField(r"^[0-9a-f]{1,64}$", required=False,
                                        help_text="A stored visitor id (keyed hash).")
    retire_runs = serializers.BooleanField(
        required=False, default=False,
        help_text="Also take a serving run trained on erased data off serving.")

    def validate(self, attrs):
        if not any(attrs.get(name) for name in ("user_id", "username", "customer_id",
                                                  "session_key", "visitor_id")):
            raise serializers.ValidationError(
                _("Give user_id, username, customer_id, session_key or visitor_id."))
        if attrs.get("user_id") and attrs.get("username"):
            raise serializers.ValidationError(_("Give user_id or username, not both."))
        attrs["user"] = self._user(attrs)
        return attrs

    @staticmethod
    def _user(attrs):
        model = get_user_model()
        field, value = (("user_id", attrs["user_id"]) if attrs.get("user_id")
                        else ("username", attrs.get("username")))
        if not value:
            return None
        try:
            if field == "user_id":
                return model._default_manager.get(pk=model._meta.pk.to_python(value))
            return model._default_manager.get_by_natural_key(value)
        except (model.DoesNotExist, DjangoValidationError, ValueError, TypeError, OverflowError):
            raise serializers.ValidationError({field: [_("No such user.")]}) from None


class RetireResultSerializer(serializers.Serializer):
    flagged = serializers.ListField(child=serializers.IntegerField())
    retired = serializers.IntegerField(allow_null=True)
    activated = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()


class ErasureResultSerializer(serializers.Serializer):
    interactions = serializers.IntegerField(help_text="Interactions deleted.")
    purchases = serializers.IntegerField(help_text="Of which purchases that training reads.")
    pseudonyms = serializers.IntegerField(help_text="Visitor ids whose rows were deleted.")
    runs_flagged = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Training runs that had read the erased purchases.")
    erased_at = serializers.DateTimeField()
    retire = RetireResultSerializer(allow_null=True)


@extend_schema(tags=["staff"], request=ErasureRequestSerializer,
               responses={200: ErasureResultSerializer, 400: ERROR, 401: ERROR, 403: ERROR,
                          413: ERROR, 415: ERROR, 429: ERROR})
class EraseView(generics.GenericAPIView):
    """Erase a shopper's interactions and pseudonyms; flag (and optionally retire) runs."""

    serializer_class = ErasureRequestSerializer
    permission_classes = [CanEraseShopperData]
    throttle_classes = [StaffThrottle]
    parser_classes = [LimitedJSONParser]

    def post(self, request):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        report = privacy.erase_user(user=data["user"], customer_id=data.get("customer_id"),
                                    session_key=data.get("session_key"),
                                    visitor_id=data.get("visitor_id"), actor=request.user)
        retire = (privacy.retire_runs_with_erased_data(user=request.user).as_dict()
                  if data["retire_runs"] else None)
        return Response(ErasureResultSerializer({**report.as_dict(), "retire": retire}).data)
