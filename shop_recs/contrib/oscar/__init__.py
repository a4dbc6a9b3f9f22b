"""shop_recs for django-oscar shops: ``"shop_recs.contrib.oscar"`` in INSTALLED_APPS.

Add it after Oscar's apps and ``"shop_recs"``, with these settings (README: "Installing
into django-oscar")::

    SHOP_RECS_PRODUCT_MODEL = "catalogue.Product"
    SHOP_RECS = {
        "PRODUCT_ADAPTER": "shop_recs.contrib.oscar.adapter.OscarProductAdapter",
        "CART_URL_NAME": "shop_recs_oscar:basket-add-all",
    }

What it provides:

* ``adapter.OscarProductAdapter``: price, currency and availability through Oscar's
  pricing strategy, category from Oscar's categories, image from the primary image.
* ``receivers``: Oscar's ``order_placed`` -> ``shop_recs.ingest.record_order``; stock
  record and product changes -> ``shop_recs.serving_cache.products_changed``.
* ``views.BasketAddAllView`` (``shop_recs_oscar:basket-add-all``): the widget's "Add all
  to basket" form, one POST for every ticked product, through Oscar's basket rules.
* ``models.BundleCondition`` / ``models.BundleBenefit``: an Oscar site offer (created by
  this app's migration) giving an approved bundle's discount when all its products are
  in the basket; it shows in the basket and order totals like any Oscar offer.
* ``dashboard.NAVIGATION``: a dashboard menu entry for the bundle review.
* ``templates/shop_recs/oscar/product_recs.html``: the widget for Oscar's product page.
"""
