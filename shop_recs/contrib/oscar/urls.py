"""URLs of the Oscar integration (namespace ``shop_recs_oscar``)::

    path("shop-recs/oscar/", include("shop_recs.contrib.oscar.urls")),

``shop_recs_oscar:basket-add-all`` takes the widgets' "Add all to basket" form.
"""

from django.urls import path

from shop_recs.contrib.oscar.views import BasketAddAllView

app_name = "shop_recs_oscar"

urlpatterns = [
    path("basket/add-all/", BasketAddAllView.as_view(), name="basket-add-all"),
]
