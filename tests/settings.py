"""Test settings: the demo project's, with a throw-away database and fast hashing.

``DATABASE_URL`` (set by ``make test`` for its second pass) switches to PostgreSQL.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from shop_demo.settings import *  # noqa: F403

SECRET_KEY = "tests-only-secret-key-not-for-production-use-0123456789"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# W020 (a per-process cache with DEBUG off) and W021 (300 entries for a catalogue that may
# need more) are right about this configuration, and would preface every command a test
# runs in a subprocess. tests/test_serving_checks.py tests both with nothing silenced.
SILENCED_SYSTEM_CHECKS = ["shop_recs.W020", "shop_recs.W021"]
SHOP_RECS_TEST_TMP = tempfile.mkdtemp(prefix="shop_recs_tests_")
# Each process that loads these settings (the suite, and the workers it starts) removes its
# own folder when it exits: a run left 0.5 GB behind otherwise, on machines short of disk.
_OWNER = os.getpid()


@atexit.register
def _remove_test_tmp():
    if os.getpid() == _OWNER:  # never from a forked child while its parent still runs
        shutil.rmtree(SHOP_RECS_TEST_TMP, ignore_errors=True)


if CELERY_BROKER_URL == "filesystem://":  # noqa: F405
    # Messages the suite queues (a fallback refresh after an erasure, say) go to a throw-away
    # folder, never to the demo's var/broker, where the next `make demo` worker would run them.
    _broker = Path(SHOP_RECS_TEST_TMP) / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {  # noqa: F405
        **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
        **{name: str(_broker / folder) for name, folder in (
            ("data_folder_in", "queue"), ("data_folder_out", "queue"),
            ("processed_folder", "processed"), ("control_folder", "control"))}}
    for _folder in ("queue", "processed", "control"):
        (_broker / _folder).mkdir(parents=True, exist_ok=True)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, not ":memory:": the Celery worker that tests/celery_helpers.py starts in
    # another process (tests/test_faults.py) must see the test database. WAL and a busy
    # timeout let that worker write while the test process reads.
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(Path(SHOP_RECS_TEST_TMP) / "db.sqlite3"),
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;",
                    "transaction_mode": "IMMEDIATE", "timeout": 20},
        "TEST": {"NAME": str(Path(SHOP_RECS_TEST_TMP) / "test.sqlite3")},
    }}
# The worker subprocess of tests/celery_helpers.py is given the test database's name
# (pytest-django's "test_..." database, or the SQLite file above) and its own
# Celery transport options (a short Redis visibility timeout, for redelivery tests).
if os.environ.get("SHOP_RECS_WORKER_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["SHOP_RECS_WORKER_DB_NAME"]
if os.environ.get("SHOP_RECS_WORKER_VISIBILITY_TIMEOUT"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {  # noqa: F405
        "visibility_timeout": int(os.environ["SHOP_RECS_WORKER_VISIBILITY_TIMEOUT"]),
        # Sweep for abandoned messages every second instead of every 100 s.
        "unacked_restore_interval": 1, "unacked_restore_throttle": 1,
    }
LOGGING = {"version": 1, "disable_existing_loggers": False}
