"""Settings of a host shop that brings its own product model (tests/hostshop).

shop_recs' part is README.md's ``host-settings`` snippet, executed verbatim; only the
product model's app label differs (the README calls the app ``catalogue``).
"""

import os
import tempfile
from pathlib import Path

from shop_demo.settings import database_from_url
from tests.readme_snippets import snippet

SECRET_KEY = "hostshop-tests-secret-key-not-for-production-0123456789"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "tests.hostshop",
]
USE_TZ = True
# No REST_FRAMEWORK setting: DRF's own default schema class, as in most host shops.
ROOT_URLCONF = "tests.hostshop.urls"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [Path(__file__).resolve().parent / "templates"],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
}]

exec(snippet("host-settings"))  # noqa: S102  # nosec B102 # our own README, by design
SHOP_RECS_PRODUCT_MODEL = "hostshop.Item"  # the README's "catalogue.Item" is this model
SHOP_RECS["ARTIFACT_DIR"] = tempfile.mkdtemp(prefix="hostshop_artifacts_")  # noqa: F821

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}
    DATABASES["default"]["TEST"] = {"NAME": "test_shop_recs_hostshop"}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
