"""URLs of shop_recs (namespace ``shop_recs``): the REST API under ``api/shop-recs/v1/``.

A host includes them at its root, next to its own URLs::

    urlpatterns = [
        ...
        path("", include("shop_recs.urls")),
    ]

which serves ``/api/shop-recs/v1/products/<id>/frequently-bought-together/`` and the
schema at ``/api/shop-recs/v1/schema/``; reverse with ``reverse("shop_recs:api-fbt",
args=[pk])``. The widgets' beacon finds the events endpoint by its name, ``api-events``;
a widget deferred on a cache miss (``WIDGET_ON_MISS = "defer"``) is fetched from
``shop-recs/widgets/fbt/`` (``widget-fbt``, :mod:`shop_recs.fragments`).
"""

from django.urls import include, path

from shop_recs import fragments

app_name = "shop_recs"

urlpatterns = [
    path("api/shop-recs/v1/", include("shop_recs.api.urls")),
    path("shop-recs/widgets/fbt/", fragments.frequently_bought_together, name="widget-fbt"),
]
