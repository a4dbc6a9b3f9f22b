"""URLs of the host shop: shop_recs' API included the way the README says."""

from django.urls import include, path

urlpatterns = [
    path("", include("shop_recs.urls")),
]
