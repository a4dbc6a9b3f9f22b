"""A menu entry for Oscar's dashboard: the bundle review and the training runs.

Importable from settings (no models)::

    from shop_recs.contrib.oscar.dashboard import NAVIGATION as SHOP_RECS_NAVIGATION
    OSCAR_DASHBOARD_NAVIGATION = OSCAR_DASHBOARD_NAVIGATION + [SHOP_RECS_NAVIGATION]

The pages are shop_recs' admin screens (Django admin); the entries show to staff who
hold ``shop_recs.review_bundle`` (Oscar's default access rule only knows its own
dashboard views, hence ``access_fn``).
"""

from django.utils.translation import gettext_lazy as _


def can_review(user, url_name=None, url_args=None, url_kwargs=None):
    return bool(user.is_active and user.is_staff and user.has_perm("shop_recs.review_bundle"))


NAVIGATION = {
    "label": _("Recommendations"),
    "icon": "fas fa-layer-group",
    "access_fn": can_review,
    "children": [
        {"label": _("Bundle review"), "url_name": "admin:shop_recs_bundle_review_next",
         "access_fn": can_review},
        {"label": _("Bundles"), "url_name": "admin:shop_recs_bundle_changelist",
         "access_fn": can_review},
        {"label": _("Training runs"), "url_name": "admin:shop_recs_trainingrun_changelist",
         "access_fn": can_review},
    ],
}
