"""The production settings profile: `check --deploy` is clean with the required environment,
and each missing or wrong required variable stops start-up with a clear message."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    "DJANGO_SETTINGS_MODULE": "shop_demo.settings_production",
    "DJANGO_SECRET_KEY": "prod-test-" + "k3y-Zq8w-Lm5v-Xr2t-" * 4,
    "DJANGO_ALLOWED_HOSTS": "shop.example,www.shop.example",
    "DATABASE_URL": "postgres://shop:secret@127.0.0.1:5432/shop",  # check needs no server
    "REDIS_URL": "redis://127.0.0.1:6379/1",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
}


def manage(*args, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ENV and not k.startswith("DJANGO_")}
    environ.update({k: v for k, v in {**ENV, **env}.items() if v is not None})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=180)


def test_check_deploy_reports_no_issues():
    result = manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_settings_values():
    code = ("from django.conf import settings as s; "
            "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
            "s.DATABASES['default']['ENGINE'], s.CACHES['default']['BACKEND'], "
            "s.CELERY_BROKER_URL, s.ALLOWED_HOSTS, s.SECURE_PROXY_SSL_HEADER, s.CSRF_TRUSTED_ORIGINS, "
            "s.MIDDLEWARE[1])")
    result = manage("shell", "-c", code, DJANGO_BEHIND_TLS_PROXY="1",
                    DJANGO_CSRF_TRUSTED_ORIGINS="https://shop.example")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == [
        "False", "True", "True", "True", "django.db.backends.postgresql",
        "django.core.cache.backends.redis.RedisCache", "redis://127.0.0.1:6379/0",
        "['shop.example',", "'www.shop.example']", "('HTTP_X_FORWARDED_PROTO',", "'https')",
        "['https://shop.example']", "whitenoise.middleware.WhiteNoiseMiddleware"]


def test_redirect_off_behind_a_redirecting_proxy_is_an_explicit_choice():
    result = manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_SECURE_SSL_REDIRECT="0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(1 silenced)" in result.stdout


@pytest.mark.parametrize("name, value, message", [
    ("DJANGO_SECRET_KEY", None, "DJANGO_SECRET_KEY is not set"),
    ("DJANGO_ALLOWED_HOSTS", None, "DJANGO_ALLOWED_HOSTS is not set"),
    ("DATABASE_URL", None, "DATABASE_URL is not set to a postgres:// URL"),
    ("DATABASE_URL", "sqlite:///db.sqlite3", "production runs on PostgreSQL"),
    ("REDIS_URL", None, "REDIS_URL is not set"),
    ("CELERY_BROKER_URL", None, "CELERY_BROKER_URL is not set"),
    ("CELERY_BROKER_URL", "filesystem://", "must be a redis:// or rediss:// URL"),
])
def test_missing_or_wrong_required_setting_fails_clearly(name, value, message):
    result = manage("check", **{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr, result.stderr


def test_weak_secret_key_is_reported_by_check_deploy():
    result = manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_SECRET_KEY="short")
    assert result.returncode != 0 and "security.W009" in result.stdout + result.stderr
