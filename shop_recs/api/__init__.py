"""The REST API of shop_recs (Django REST framework), mounted by ``shop_recs.urls``.

The only package of shop_recs that imports ``rest_framework``. Endpoints, all under
``api/shop-recs/v1/``: recommendations for a product and a cart, bundles, the events
beacon, staff review of runs and bundles, and the OpenAPI schema at ``schema/``.
"""
