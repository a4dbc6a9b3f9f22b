"""The demo shop: a small storefront that uses shop_recs the way a customer's shop would."""

from shop_demo.celery import app as celery_app

__all__ = ("celery_app",)
