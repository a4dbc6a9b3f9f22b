"""A real Redis and real Celery worker processes for integration tests (tests/test_faults.py).

Fixtures::

    def test_x(start_worker, broker_url):
        worker = start_worker()            # celery -A shop_demo worker -Q shop_recs.gpu -c 1 ...
        run = request_training(...)        # queued on the same Redis by this test process
        wait_for(lambda: ..., 60, "the run to finish", worker)
        worker.kill_pool()                 # SIGKILL the pool process (the main one forks another)
        worker.kill()                      # SIGKILL the main process (the pool dies with it)

Redis is ``REDIS_URL`` (exported by ``make test``) or, when unset, a private
``redis-server`` on a free loopback port for the session. The worker gets a Redis database
of its own (``BROKER_DB``, flushed before and after each test) and the test database of
this process (``SHOP_RECS_WORKER_DB_NAME``, read by tests/settings.py), so both processes
see the same rows on SQLite (a file) and PostgreSQL (``test_<name>``). Workers are killed
(process group, SIGKILL) in teardown, before pytest-django empties the tables.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
QUEUE = "shop_recs.gpu"
BROKER_DB = 11  # a Redis database of these tests' own: other tests may use 0 for a cache
READY_TIMEOUT_S = 90


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    return free_port()


def wait_for(predicate, timeout, what, worker=None, interval=0.1):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if worker is not None and not worker.alive():
            pytest.fail(f"the worker exited while waiting for {what}:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            tail = f"\nworker log:\n{worker.log_tail()}" if worker is not None else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}{tail}")
        time.sleep(interval)


def _redis_client(url):
    import redis  # noqa: PLC0415

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


@pytest.fixture(scope="session")
def redis_server_url():
    """``REDIS_URL``, or a private redis-server for this session."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.skip("no REDIS_URL and no redis-server on this machine (make test provides both)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = _redis_client(url)

    def pong():
        try:
            return client.ping()
        except Exception:  # noqa: BLE001 (not up yet)
            return False

    try:
        wait_for(pong, 20, "the private redis-server to answer")
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def broker_url(redis_server_url):
    """The Redis database the tests' Celery traffic uses, empty at start and at the end."""
    parts = urlsplit(redis_server_url)
    url = urlunsplit(parts._replace(path=f"/{BROKER_DB}"))
    client = _redis_client(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def broker_idle(url):
    """True when no training message is queued or delivered-but-unacknowledged."""
    client = _redis_client(url)
    try:
        return client.llen(QUEUE) == 0 and client.hlen("unacked") == 0
    finally:
        client.close()


def _reset_pools(app):
    # The app caches a broker connection pool and a producer pool for its first URL, and
    # kombu keeps a registry of pools by URL: close and forget them all.
    from kombu import pools  # noqa: PLC0415

    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None
    pools.reset()


@contextmanager
def celery_broker(url):
    """Point this process's Celery app (``shop_demo``) at ``url`` for the block."""
    from shop_demo.celery import app  # noqa: PLC0415

    conf = app.conf
    saved = conf.broker_url, conf.broker_transport_options
    _reset_pools(app)
    conf.broker_url, conf.broker_transport_options = url, {}
    try:
        yield app
    finally:
        _reset_pools(app)
        conf.broker_url, conf.broker_transport_options = saved


@pytest.fixture
def use_redis_broker(broker_url):
    """This process queues its Celery tasks on the test Redis (the worker's broker)."""
    with celery_broker(broker_url):
        yield broker_url


def worker_env(broker, var_dir, **extra):
    """Environment of a subprocess that shares this test's database and broker."""
    from django.db import connection  # noqa: PLC0415

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CELERY_BROKER_URL": broker,
        # The test database's name (pytest-django renamed this process's connection).
        "SHOP_RECS_WORKER_DB_NAME": str(connection.settings_dict["NAME"]),
        "SHOP_DEMO_VAR_DIR": str(var_dir),  # artifacts under var_dir/artifacts
        "PYTHONUNBUFFERED": "1",
        # Two small CPU threads are plenty for the test shops, and leave cores to others.
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Worker:
    """One ``celery worker`` subprocess in a process group of its own."""

    def __init__(self, env, log_path):
        self.log_path = log_path
        self.name = f"faults-{uuid.uuid4().hex[:8]}@%h"
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "shop_demo", "worker", "-Q", QUEUE, "-c", "1",
             "--prefetch-multiplier", "1", "--pool", "prefork", "-n", self.name,
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info"],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def log_tail(self, chars=6000):
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def alive(self):
        return self.proc.poll() is None

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        wait_for(lambda: " ready." in self.log_tail(200_000), timeout, "the worker to be ready",
                 self)
        return self

    def pool_pids(self):
        """Pids of the prefork pool's processes (children of the main process)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after the ")".
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == self.proc.pid and state != "Z":
                pids.append(int(entry.name))
        return pids

    def kill_pool(self):
        """SIGKILL the pool process running the task; returns its pid."""
        pids = wait_for(self.pool_pids, 30, "the worker's pool process", self)
        assert len(pids) == 1, f"expected one pool process (-c 1), found {pids}"
        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: pids[0] not in self.pool_pids(), 30, "the pool process to die", self)
        return pids[0]

    def kill(self):
        """SIGKILL the worker's main process; its pool process dies with it.

        Celery's prefork pool asks Linux to SIGKILL a pool process when its parent dies
        (``PR_SET_PDEATHSIG``), so a killed main process never leaves a pool process
        training on. Returns the pids of the pool processes that died with it.
        """
        pool = self.pool_pids()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        wait_for(lambda: not any(_running(pid) for pid in pool), 30,
                 "the pool process to die with its main process")
        return pool

    def stop(self):
        """Teardown: SIGKILL whatever is left of the process group."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        finally:
            self._log.close()


def _running(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def worker_var_dir(tmp_path):
    return tmp_path / "var"


@pytest.fixture
def start_worker(transactional_db, broker_url, use_redis_broker, worker_var_dir, tmp_path):
    """Start real workers on the test Redis and database; all are killed in teardown.

    Depends on ``transactional_db``, so teardown kills the workers before the tables are
    emptied, and the rows this process commits are visible to them.
    """
    workers = []

    def start(ready=True, **env):
        worker = Worker(worker_env(broker_url, worker_var_dir, **env),
                        tmp_path / f"worker-{len(workers) + 1}.log")
        workers.append(worker)
        return worker.wait_ready() if ready else worker

    yield start
    for worker in workers:
        worker.stop()
