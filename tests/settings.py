"""Test settings: the demo project's, with a throw-away database and fast hashing.

``DATABASE_URL`` (set by ``make test`` for its second pass) switches to PostgreSQL.
"""

import tempfile

from shop_demo.settings import *  # noqa: F403

SECRET_KEY = "tests-only-secret-key-not-for-production-use-0123456789"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
SHOP_RECS_TEST_TMP = tempfile.mkdtemp(prefix="shop_recs_tests_")
LOGGING = {"version": 1, "disable_existing_loggers": False}
