"""Who may call what: the public read endpoints, event senders and staff reviewers."""

from rest_framework.permissions import BasePermission

REVIEW_PERMISSION = "shop_recs.review_bundle"  # the admin's review permission too
RECORD_PERMISSION = "shop_recs.add_interaction"


class IsReviewer(BasePermission):
    """Staff (or a service account) holding ``shop_recs.review_bundle``."""

    message = "You need the shop_recs.review_bundle permission."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_active
                    and user.has_perm(REVIEW_PERMISSION))


def can_record_trusted_events(user):
    """Purchases and cart adds come from server-side code or service/staff credentials."""
    return bool(user and user.is_authenticated and user.is_active
                and user.has_perm(RECORD_PERMISSION))
