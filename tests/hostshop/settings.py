"""Settings of a host shop that brings its own product model (tests/hostshop)."""

import os
import tempfile

from shop_demo.settings import database_from_url

SECRET_KEY = "hostshop-tests-secret-key-not-for-production-0123456789"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "tests.hostshop",
    "shop_recs",
]
USE_TZ = True
# No REST_FRAMEWORK setting: DRF's own default schema class, as in most host shops.
ROOT_URLCONF = "tests.hostshop.urls"
SHOP_RECS_PRODUCT_MODEL = "hostshop.Item"
SHOP_RECS = {
    "ARTIFACT_DIR": tempfile.mkdtemp(prefix="hostshop_artifacts_"),
    "PRODUCT_FIELDS": {
        "sku": "code",
        "name": "title",
        "price": "unit_cost",
        "category": "family__label",
        "in_stock": "available",
        "is_active": None,
        "currency": None,
        "image_url": None,
        "description": None,
    },
}
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}
    DATABASES["default"]["TEST"] = {"NAME": "test_shop_recs_hostshop"}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
