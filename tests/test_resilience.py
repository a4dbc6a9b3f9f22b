"""Faults while serving: the Redis cache stopped or hung, and PostgreSQL restarted.

* Redis: a private ``redis-server`` (never ``REDIS_URL``, which other tests share) is the
  Django cache (``override_settings(CACHES=...)``): recommendations, throttle counters and
  event de-duplication all live in it. Stopped (connections refused) or hung (SIGSTOP:
  connections time out), the product page with its widget and the API keep answering 200
  from the database (fallbacks), events are stored rather than lost, throttles let
  requests through (fail open, logged); once Redis is back, the cache is used again.
* PostgreSQL: the cluster ``make test`` started (``SHOP_RECS_PG_DATA``/``SHOP_RECS_PG_BIN``,
  exported by scripts/services.sh) is restarted under the running test, and stopped and
  started again; every request after it is back answers 200, without restarting Django
  (``CONN_HEALTH_CHECKS`` replaces the dead connection). Skipped on SQLite.
* A Celery worker killed mid-training loses nothing: tests/test_faults.py
  (``test_pool_process_killed_mid_training_is_redelivered_and_completes_once``,
  ``test_whole_worker_killed_mid_training_is_redelivered_by_the_next_worker``).
"""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.urls import reverse

from shop_recs.models import Interaction
from tests.celery_helpers import free_port, wait_for
from tests.serving_data import serving_shop

pytestmark = pytest.mark.integration

RATES = {"shop_recs.read": "1200/min", "shop_recs.events": "120/min", "shop_recs.staff": None}


class RedisProcess:
    """A throw-away redis-server on a free loopback port that a test may stop and start."""

    def __init__(self):
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(self.ping, 20, "redis-server to answer")

    def ping(self):
        import redis  # noqa: PLC0415

        try:
            return redis.Redis.from_url(self.url, socket_timeout=1).ping()
        except Exception:  # noqa: BLE001 (not up)
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)

    def caches(self):
        # Timeouts: a Redis that hangs must cost a request a fraction of a second, not forever.
        return {"default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": self.url,
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        }}


@pytest.fixture
def redis_cache():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (make test installs it)")
    server = RedisProcess()
    server.start()
    try:
        with override_settings(CACHES=server.caches(),
                               SHOP_RECS={"THROTTLE_RATES": RATES}):
            from django.core.cache import caches  # noqa: PLC0415

            caches["default"].clear()
            yield server
    finally:
        server.stop()


def serve(client, p):
    """Product page with the widget, the FBT API and an event: the status codes, and how
    many products the widget and the API showed."""
    page = client.get(reverse("shop_demo:product", args=[p[0].pk]))
    api = client.get(reverse("shop_recs:api-fbt", args=[p[0].pk]), {"limit": 4})
    event = client.post(reverse("shop_recs:api-events"),
                        {"events": [{"kind": "widget_click", "product": str(p[1].pk)}]},
                        content_type="application/json")
    items = len(api.json()["items"]) if api.status_code == 200 else 0
    return (page.status_code, api.status_code, event.status_code), items


def widget_shown(client, p):
    """The page has the widget, with the approved bundle's product in it."""
    html = client.get(reverse("shop_demo:product", args=[p[0].pk])).content.decode()
    return "data-anchor-product-id" in html and f"{p[9].name}<" in html


@pytest.mark.django_db
@pytest.mark.parametrize("fault", ["stopped", "hung"])
def test_redis_stopped_or_hung_while_serving_keeps_pages_and_api_up(redis_cache, fault,
                                                                    caplog):
    p, run, bundle = serving_shop()
    client = Client()
    codes, items = serve(client, p)
    assert codes == (200, 200, 201) and items == 4
    assert widget_shown(client, p)  # the bundle's product is on the page

    if fault == "stopped":
        redis_cache.stop()
    else:
        redis_cache.proc.send_signal(signal.SIGSTOP)
    started = time.monotonic()
    for _ in range(3):
        codes, items = serve(client, p)
        assert codes == (200, 200, 201), codes
        assert items == 4  # computed from the database: bundle, FBT rows
        assert widget_shown(client, p)
    # 3 rounds of 4 requests, each cache call bounded by the 0.25 s socket timeouts.
    assert time.monotonic() - started < 60
    # Throttles fail open (logged): 150 event posts, above the 120/min rate, are all stored
    # or de-duplicated, none refused with a 5xx or lost.
    codes = [client.post(reverse("shop_recs:api-events"),
                         {"events": [{"kind": "view", "product": str(p[2].pk)}]},
                         content_type="application/json").status_code for _ in range(130)] \
        if fault == "stopped" else []
    assert set(codes) <= {201}
    assert any("unavailable" in r.getMessage() for r in caplog.records)
    # Without the cache, de-duplication cannot remember: events are stored, not dropped.
    assert Interaction.objects.filter(kind="widget_click", product=p[1]).count() >= 2

    if fault == "stopped":
        redis_cache.start()
    else:
        redis_cache.proc.send_signal(signal.SIGCONT)
    codes, items = serve(client, p)
    assert codes == (200, 200, 201) and items == 4
    from django.core.cache import caches  # noqa: PLC0415

    assert any(k.startswith(b":1:shop_recs:candidates") for k in
               caches["default"]._cache.get_client(write=False).keys("*"))


# PostgreSQL ------------------------------------------------------------------------------

def pg_ctl(*args):
    """Run pg_ctl on the test cluster as its owner (root runs it as ``postgres``)."""
    command = [str(Path(os.environ["SHOP_RECS_PG_BIN"]) / "pg_ctl"), "-D",
               os.environ["SHOP_RECS_PG_DATA"], "-w", "-t", "60", *args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    # Output to a file, never a pipe: the postmaster started here inherits it.
    return subprocess.run(command, check=False, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=90).returncode


def pg_start():
    """Start the stopped cluster: ``restart`` reuses the options it was first started with
    (port, socket folder; saved in postmaster.opts), which a plain ``start`` would not."""
    assert pg_ctl("restart", "-m", "fast", "-l", os.environ["SHOP_RECS_PG_LOG"]) == 0


@pytest.fixture
def postgres_cluster():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL restart: this run uses SQLite (make test's second pass runs it)")
    if not all(os.environ.get(f"SHOP_RECS_PG_{k}") for k in ("DATA", "BIN", "LOG")):
        pytest.skip("SHOP_RECS_PG_DATA/_BIN/_LOG are unset: the database is not a "
                    "cluster that scripts/services.sh started, so the test may not restart it")
    yield
    # Whatever happened, leave the cluster running for the rest of the suite.
    if pg_ctl("status") != 0:
        pg_start()
    if connection.connection is not None and not connection.is_usable():
        connection.close()  # so that pytest-django can empty the tables


def wsgi_get(path):
    """GET through Django's real WSGI handler, as gunicorn calls it: unlike the test
    client, it keeps ``close_old_connections`` on request start and end, which is what
    replaces a dead database connection."""
    from django.core.wsgi import get_wsgi_application  # noqa: PLC0415

    environ = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=path, HTTP_HOST="127.0.0.1", SERVER_NAME="127.0.0.1")
    status = []
    body = get_wsgi_application()(environ, lambda code, headers, *exc: status.append(code))
    b"".join(body)
    body.close()
    return int(status[0].split()[0])


def answers(p):
    return (wsgi_get(reverse("shop_demo:product", args=[p[0].pk])),
            wsgi_get(reverse("shop_recs:api-fbt", args=[p[0].pk])))


@pytest.mark.django_db(transaction=True)
@override_settings(SHOP_RECS={"THROTTLE_RATES": {}})
def test_postgresql_restarted_requests_recover(postgres_cluster):
    p, run, bundle = serving_shop()
    assert answers(p) == (200, 200)
    old_pid = connection.connection.info.backend_pid

    pg_start()  # a restart ends every backend, this process's connection too
    for _ in range(10):
        assert answers(p) == (200, 200)
    assert connection.connection.info.backend_pid != old_pid

    assert pg_ctl("stop", "-m", "fast") == 0
    started = time.monotonic()
    page, api = answers(p)
    # The warm API answer comes from the cache and needs no database: 200, not an error.
    # The product page reads its product from the database: a clean error page, never a hang.
    assert api == 200
    assert page in (200, 500, 503)
    assert time.monotonic() - started < 30
    pg_start()
    for _ in range(10):
        assert answers(p) == (200, 200)
