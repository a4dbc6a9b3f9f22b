"""Settings of the demo shop for production: ``DJANGO_SETTINGS_MODULE=shop_demo.settings_production``.

The development profile (``shop_demo.settings``) with everything that must not be guessed in
production taken from the environment, and a clear ``ImproperlyConfigured`` when it is missing:

==============================  ================================================================
``DJANGO_SECRET_KEY``           required; 50+ random characters
``DJANGO_ALLOWED_HOSTS``        required; comma-separated host names
``DATABASE_URL``                required; ``postgres://user:pass@host:5432/name``
``REDIS_URL``                   required; the cache, e.g. ``redis://127.0.0.1:6379/1``
``CELERY_BROKER_URL``           required; ``redis://`` or ``rediss://``
``DJANGO_CSRF_TRUSTED_ORIGINS`` optional; comma-separated ``https://shop.example`` origins
``DJANGO_BEHIND_TLS_PROXY``     ``1``: trust ``X-Forwarded-Proto: https`` from the proxy in front
                                (the proxy must set it and strip it from clients)
``DJANGO_SECURE_SSL_REDIRECT``  ``1`` (default): Django redirects http to https; ``0`` only when
                                the proxy already redirects (``security.W008`` is then silenced)
``DJANGO_HSTS_SECONDS``         default one year; ``DJANGO_HSTS_PRELOAD=0`` opts out of preload
``DJANGO_STATIC_ROOT``          where ``collectstatic`` writes; default ``var/static``
``DJANGO_LOG_LEVEL``            level of the ``shop_recs`` and ``django`` loggers (stderr)
``SHOP_RECS_ARTIFACT_DIR``      model checkpoints, on storage the web and GPU workers share
==============================  ================================================================

Static files are served by WhiteNoise from ``STATIC_ROOT`` inside the WSGI app (gunicorn needs
nothing else): run ``manage.py collectstatic --noinput`` once per deploy, before starting it.
"""

import os

from django.core.exceptions import ImproperlyConfigured

if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
    # Checked before the development settings read it (they accept only postgres:// too).
    raise ImproperlyConfigured(
        "DATABASE_URL is not set to a postgres:// URL (postgres://user:password@host:5432/name);"
        " production runs on PostgreSQL.")

from shop_demo.settings import *  # noqa: E402, F403
from shop_demo.settings import (MIDDLEWARE,  # noqa: E402 SHOP_RECS, SPECTACULAR_SETTINGS, VAR_DIR,
                                database_from_url)


def _required(name, hint):
    value = os.environ.get(name, "").strip()
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set; the production settings need it ({hint}).")
    return value


def _list(name):
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _flag(name, default):
    return os.environ.get(name, "1" if default else "0").strip().lower() in ("1", "true", "yes")


DEBUG = False

SECRET_KEY = _required("DJANGO_SECRET_KEY", "50+ random characters, e.g. from "
                       "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`")
# A short or guessable key is reported by `check --deploy` (security.W009).

ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS is not set; the production settings need "
                               "the host names the site answers to, comma-separated.")
CSRF_TRUSTED_ORIGINS = _list("DJANGO_CSRF_TRUSTED_ORIGINS")

# --- services ---------------------------------------------------------------------------
DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}

CACHES = {"default": {
    "BACKEND": "django.core.cache.backends.redis.RedisCache",
    "LOCATION": _required("REDIS_URL", "the Redis cache, e.g. redis://127.0.0.1:6379/1"),
    "KEY_PREFIX": os.environ.get("DJANGO_CACHE_KEY_PREFIX", "shop_demo"),
    # A hung Redis must cost a page milliseconds, not redis-py's 5 s default per call:
    # the serving code falls back to the database when the cache does not answer.
    "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
}}

CELERY_BROKER_URL = _required("CELERY_BROKER_URL", "the Redis broker, e.g. redis://127.0.0.1:6379/0")
if not CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    raise ImproperlyConfigured("CELERY_BROKER_URL must be a redis:// or rediss:// URL in production.")
# Keep above SHOP_RECS["TRAINING_TIME_LIMIT"] (see shop_demo.settings).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 3600}

if os.environ.get("SHOP_RECS_ARTIFACT_DIR"):
    SHOP_RECS = {**SHOP_RECS, "ARTIFACT_DIR": os.environ["SHOP_RECS_ARTIFACT_DIR"]}

# --- HTTPS and browser hardening --------------------------------------------------------
if _flag("DJANGO_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = _flag("DJANGO_SECURE_SSL_REDIRECT", True)
SILENCED_SYSTEM_CHECKS = [] if SECURE_SSL_REDIRECT else [
    "security.W008",  # the operator said the TLS proxy in front redirects http to https
]
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = _flag("DJANGO_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True

# --- static files: WhiteNoise, right after SecurityMiddleware ----------------------------
MIDDLEWARE = [MIDDLEWARE[0], "whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE[1:]]
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", str(VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed copies made by collectstatic; served with far-future cache headers.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# drf-spectacular's deploy check builds the schema: name the two "status" enums (as the
# API's SchemaView does) so it has no collision to warn about.
SPECTACULAR_SETTINGS = {**SPECTACULAR_SETTINGS, "ENUM_NAME_OVERRIDES": {
    "RunStatusEnum": "shop_recs.models.TrainingRun.Status",
    "BundleStatusEnum": "shop_recs.models.Bundle.Status",
}}

# --- logging: everything to stderr, where gunicorn / systemd / the container collect it ---
LOG_LEVEL = os.environ.get("DJANGO_LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                            "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {
        "django": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
        "shop_recs": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
        "shop_demo": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
        "celery": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
    },
}
