"""URLs of the demo project (``ROOT_URLCONF``): the admin and the storefront.

The storefront's URL names live in the ``shop_demo`` namespace:
``product_list``, ``product`` (``SHOP_RECS["PRODUCT_URL_NAME"]``, takes the product's
pk), ``cart``, ``cart_add``, ``cart_update``, ``cart_remove``, ``checkout`` and
``checkout_done``.
"""

from django.contrib import admin
from django.urls import include, path

from shop_demo import views

storefront_patterns = [
    path("", views.product_list, name="product_list"),
    path("products/<int:pk>/", views.product_detail, name="product"),
    path("cart/", views.cart_detail, name="cart"),
    path("cart/add/", views.cart_add, name="cart_add"),
    path("cart/update/", views.cart_update, name="cart_update"),
    path("cart/remove/", views.cart_remove, name="cart_remove"),
    path("checkout/", views.checkout, name="checkout"),
    path("checkout/done/", views.checkout_done, name="checkout_done"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    # The recommendations API and events endpoint: /api/shop-recs/v1/ (namespace shop_recs).
    path("", include("shop_recs.urls")),
    path("", include((storefront_patterns, "shop_demo"))),
]
