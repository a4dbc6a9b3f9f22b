"""URL patterns of the API (mounted under ``api/shop-recs/v1/`` by ``shop_recs.urls``).

Names (namespace ``shop_recs``): ``api-fbt``, ``api-bundles``, ``api-cart-complete``,
``api-events``, ``api-exposure``, ``api-runs``, ``api-run``, ``api-run-activate``, ``api-staff-bundles``,
``api-staff-bundle``, ``api-bundle-approve``, ``api-bundle-reject``,
``api-bundle-retire``, ``api-privacy-erase`` and ``api-schema``.
"""

from django.urls import path, re_path, register_converter

from shop_recs import review
from shop_recs.api.schema import spectacular_decorators

with spectacular_decorators():  # the schema works whatever the host's DEFAULT_SCHEMA_CLASS
    from shop_recs.api import experiments, privacy, staff, views


class IdConverter:
    """Any whole number, so that a negative or huge id gets the API's JSON 404."""

    regex = "-?[0-9]{1,30}"

    def to_python(self, value):
        return int(value)

    def to_url(self, value):
        return str(value)


register_converter(IdConverter, "shop_recs_id")

urlpatterns = [
    path("products/<str:product_id>/frequently-bought-together/",
         views.FrequentlyBoughtTogetherView.as_view(), name="api-fbt"),
    path("products/<str:product_id>/bundles/", views.ProductBundlesView.as_view(),
         name="api-bundles"),
    path("cart/complete/", views.CartCompleteView.as_view(), name="api-cart-complete"),
    path("events/", views.EventsView.as_view(), name="api-events"),
    path("experiments/exposure/", experiments.ExposureView.as_view(), name="api-exposure"),
    path("runs/", staff.RunListView.as_view(), name="api-runs"),
    path("runs/<shop_recs_id:pk>/", staff.RunDetailView.as_view(), name="api-run"),
    path("runs/<shop_recs_id:pk>/activate/", staff.RunActivateView.as_view(), name="api-run-activate"),
    path("bundles/", staff.BundleListView.as_view(), name="api-staff-bundles"),
    path("bundles/<shop_recs_id:pk>/", staff.BundleDetailView.as_view(), name="api-staff-bundle"),
    path("bundles/<shop_recs_id:pk>/approve/",
         staff.BundleDecisionView.as_view(decision=review.APPROVE), name="api-bundle-approve"),
    path("bundles/<shop_recs_id:pk>/reject/",
         staff.BundleDecisionView.as_view(decision=review.REJECT), name="api-bundle-reject"),
    path("bundles/<shop_recs_id:pk>/retire/",
         staff.BundleDecisionView.as_view(decision=review.RETIRE), name="api-bundle-retire"),
    path("privacy/erase/", privacy.EraseView.as_view(), name="api-privacy-erase"),
    path("schema/", views.SchemaView.as_view(), name="api-schema"),
    # Anything else under the API answers a JSON 404, not the site's HTML page.
    re_path(r"^", views.NotFoundView.as_view()),
]
