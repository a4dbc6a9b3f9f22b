#!/usr/bin/env python3
"""`make demo`: load the demo shop and run it, with a real Celery worker, until Ctrl-C.

Steps, each safe to repeat:

1. ``manage.py migrate`` (SQLite ``db.sqlite3`` unless DATABASE_URL is set);
2. find or download UCI Online Retail (:func:`shop_demo.datasets.fetch_online_retail`) and import
   both years with ``shop_recs_import_orders --format online_retail``, skipped when a marker in
   ``var/demo/`` says this database already holds these files;
3. create or update the demo superuser (``admin``; the password is ``$SHOP_DEMO_ADMIN_PASSWORD``
   or one generated once and kept in ``var/demo/admin_password``);
4. start a Celery worker (queues ``celery`` and ``shop_recs.gpu``) on the broker from settings:
   kombu's filesystem transport under ``var/broker/``, or ``$CELERY_BROKER_URL`` (Redis);
5. start ``manage.py runserver 127.0.0.1:8000``, wait until both answer, print what to open;
6. :func:`queue_startup_training`: the first model trains at start-up (about 15 minutes on
   2 CPU cores; it says how long the last run here took when there was one). Until it
   publishes, product pages show products bought together with them in the imported
   orders (counted, not learned); then the model's lists and the bundles staff approve;
7. on Ctrl-C / SIGTERM, or when a child dies, stop every process group it started.

Options: ``--port N`` (or $SHOP_DEMO_PORT), ``--reimport``, ``--smoke`` (start everything, check
that the storefront and admin answer, then stop: used by tests and CI-like checks).
Child output is shown prefixed with ``[web]`` / ``[worker]`` and also kept in ``var/log/``.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("SHOP_DEMO_VAR_DIR", REPO_ROOT / "var"))  # as shop_demo.settings
DEMO_STATE = VAR / "demo"
LOG_DIR = VAR / "log"
ADMIN_USER = "admin"
WORKER_QUEUES = "celery,shop_recs.gpu"
STOP_GRACE_S = 15
FIRST_RUN_ESTIMATE = "about 15 minutes on 2 CPU cores, less with a GPU"
UNTIL_TRAINED = ("until it publishes, each product page shows products bought together with it "
                 "in the imported orders (counted, not learned)")


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    ready: threading.Event = field(default_factory=threading.Event)


@dataclass
class DemoContext:
    """What the hooks get: the interpreter, the child environment and the site's address."""

    python: str
    env: dict[str, str]
    base_url: str
    children: list[Child] = field(default_factory=list)

    def manage(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run ``manage.py ARGS`` in the foreground with the demo's environment."""
        return subprocess.run([self.python, "manage.py", *args], cwd=REPO_ROOT, env=self.env,
                              check=check, stdin=subprocess.DEVNULL, **kwargs)


class Stop(Exception):
    """Raised by the signal handler to unwind into the shutdown path."""


# --- set-up steps ----------------------------------------------------------------------------

def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def migrate(ctx: DemoContext) -> None:
    say("migrating the database")
    ctx.manage("migrate", "--noinput", "-v", "1")


def database_identity(env: dict[str, str]) -> str:
    """Something that changes when the database is replaced (URL, or SQLite file + inode)."""
    if env.get("DATABASE_URL"):
        return env["DATABASE_URL"]
    db = Path(env.get("SHOP_DEMO_SQLITE", REPO_ROOT / "db.sqlite3")).resolve()
    try:
        return f"{db}:{db.stat().st_ino}"
    except FileNotFoundError:
        return f"{db}:missing"


def import_orders(ctx: DemoContext, force: bool = False) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from shop_demo.datasets import DatasetError, fetch_online_retail

    try:
        paths = fetch_online_retail()
    except DatasetError as exc:
        raise SystemExit(f"[demo] cannot get the Online Retail data: {exc}") from exc
    key = hashlib.sha256(json.dumps({
        "db": database_identity(ctx.env),
        "files": [[p.name, p.stat().st_size] for p in paths],
    }).encode()).hexdigest()[:16]
    marker = DEMO_STATE / f"imported-{key}.json"
    if marker.exists() and not force:
        say(f"orders already imported into this database ({marker.name}); --reimport to redo")
        return
    say("importing UCI Online Retail (both years, ~1.07M lines); this takes a few minutes")
    started = time.monotonic()
    ctx.manage("shop_recs_import_orders", *map(str, paths), "--format", "online_retail")
    DEMO_STATE.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"files": [str(p) for p in paths],
                               "seconds": round(time.monotonic() - started, 1),
                               "at": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
    os.replace(tmp, marker)


def admin_password() -> str:
    if os.environ.get("SHOP_DEMO_ADMIN_PASSWORD"):
        return os.environ["SHOP_DEMO_ADMIN_PASSWORD"]
    stored = DEMO_STATE / "admin_password"
    if stored.exists():
        return stored.read_text().strip()
    DEMO_STATE.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    fd = os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return password


ENSURE_ADMIN = """
import os
from django.contrib.auth import get_user_model
User = get_user_model()
user, _ = User.objects.get_or_create(**{User.USERNAME_FIELD: os.environ["SHOP_DEMO_ADMIN_USER"]})
user.is_staff = user.is_superuser = user.is_active = True
user.set_password(os.environ["SHOP_DEMO_ADMIN_PASSWORD"])
user.save()
"""


def ensure_admin(ctx: DemoContext, password: str) -> None:
    env = dict(ctx.env, SHOP_DEMO_ADMIN_USER=ADMIN_USER, SHOP_DEMO_ADMIN_PASSWORD=password)
    subprocess.run([ctx.python, "manage.py", "shell", "-c", ENSURE_ADMIN], cwd=REPO_ROOT,
                   env=env, check=True, stdin=subprocess.DEVNULL)


# --- hooks -----------------------------------------------------------------------------------

def queue_startup_training(ctx: DemoContext) -> None:
    """Queue one training run through the real worker and show its progress.

    Skipped when a run already serves (restart the demo with SHOP_DEMO_RETRAIN=1 to train
    again). Progress is polled from a daemon thread, so Ctrl-C still stops everything.
    """
    runs = _runs(ctx)
    if runs and any(r["active"] for r in runs) and not os.environ.get("SHOP_DEMO_RETRAIN"):
        active = next(r for r in runs if r["active"])
        say(f"training run {active['id']} already serves ({active['gate'].get('chosen')}); "
            "SHOP_DEMO_RETRAIN=1 make demo trains again")
        return
    result = ctx.manage("shop_recs_train", check=False, capture_output=True, text=True)
    say((result.stdout or result.stderr).strip())
    if result.returncode:
        return
    say(f"training the first model: {training_estimate(runs)}; {UNTIL_TRAINED}. "
        f"Progress below and at {ctx.base_url}/admin/shop_recs/trainingrun/")
    threading.Thread(target=_watch_training, args=(ctx,), daemon=True).start()


def training_estimate(runs: list[dict]) -> str:
    """How long the run will take: as long as the last one that finished here, else a default."""
    from datetime import datetime  # noqa: PLC0415 (only needed here)

    for run in runs:
        if run.get("status") == "succeeded" and run.get("finished_at") and run.get("created_at"):
            seconds = (datetime.fromisoformat(run["finished_at"])
                       - datetime.fromisoformat(run["created_at"])).total_seconds()
            return f"about {max(1, round(seconds / 60))} minutes (as long as run {run['id']} took)"
    return FIRST_RUN_ESTIMATE


def _runs(ctx: DemoContext) -> list[dict]:
    result = ctx.manage("shop_recs_runs", "--json", "--limit", "5", check=False,
                        capture_output=True, text=True)
    try:
        return json.loads(result.stdout) if result.returncode == 0 else []
    except ValueError:
        return []


def _watch_training(ctx: DemoContext) -> None:
    last = None
    while True:
        time.sleep(5)
        runs = _runs(ctx)
        if not runs:
            continue
        run = runs[0]
        p = run.get("progress") or {}
        line = (f"training run {run['id']}: {run['status']}"
                + (f", {p.get('stage', '')} epoch {p.get('epoch')} {p.get('percent')}% "
                   f"{p.get('examples_per_s')} ex/s" if p and run["status"] == "running" else ""))
        if line != last:
            say(line)
            last = line
        if run["status"] in ("succeeded", "failed", "cancelled"):
            say(f"training run {run['id']} {run['status']}: "
                + (run["gate"].get("reason", "") if run["status"] == "succeeded"
                   else run.get("error", ""))[:300])
            if run["status"] == "succeeded":
                say(f"published {run['fbt_rows']} FBT rows and {run['proposed_bundles']} "
                    f"proposed bundles; product pages now show the model's lists; approve "
                    f"bundles at {ctx.base_url}/admin/shop_recs/bundle/review/")
            return


# --- processes -------------------------------------------------------------------------------

def _die_with_parent() -> None:
    # If this runner is SIGKILLed, the kernel sends SIGTERM to each direct child (Linux only),
    # so even then no worker or server is left behind. Runs in the child before exec.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start(ctx: DemoContext, name: str, argv: list[str], ready_text: str) -> Child:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=ctx.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    child = Child(name, proc)
    ctx.children.append(child)
    log_path = LOG_DIR / f"{name}.log"

    def pump() -> None:
        with open(log_path, "a", encoding="utf-8") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                sys.stdout.write(f"[{name}] {line}")
                sys.stdout.flush()
                if ready_text in line:
                    child.ready.set()

    threading.Thread(target=pump, name=f"pump-{name}", daemon=True).start()
    say(f"started {name} (pid {proc.pid}, process group {proc.pid}; log {log_path})")
    return child


def stop_all(children: list[Child]) -> None:
    """SIGTERM each child we started, wait, then SIGKILL its whole process group.

    Only the group leader gets SIGTERM: the Celery master then does its warm shutdown and
    stops its own pool (signalling the pool directly would kill a task mid-way). Whatever is
    left in the group afterwards, or a leader that does not stop within STOP_GRACE_S, is killed.
    """
    alive = [c for c in children if c.proc.poll() is None]
    started = time.monotonic()
    for child in alive:
        say(f"stopping {child.name} (pid {child.proc.pid})")
        try:
            child.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_GRACE_S
    for child in alive:
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop in {STOP_GRACE_S}s; killing it")
            _killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
    # The leader is gone; make sure nothing else in its group outlived it (pool processes).
    for child in children:
        _killpg(child.proc.pid, signal.SIGKILL)
    if alive:
        say(f"stopped in {time.monotonic() - started:.1f}s")


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_until(what: str, predicate, children: list[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for child in children:
            if child.proc.poll() is not None:
                raise SystemExit(f"[demo] {child.name} exited (code {child.proc.returncode}) "
                                 f"while waiting for {what}; see {LOG_DIR / child.name}.log")
        if time.monotonic() > deadline:
            raise SystemExit(f"[demo] timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.3)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


# --- main ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SHOP_DEMO_PORT", "8000")))
    parser.add_argument("--reimport", action="store_true", help="import the orders again")
    parser.add_argument("--smoke", action="store_true",
                        help="start everything, check the pages answer, then stop")
    args = parser.parse_args(argv)

    os.chdir(REPO_ROOT)
    ctx = DemoContext(python=sys.executable, env=child_env(),
                      base_url=f"http://{args.host}:{args.port}")

    def on_signal(signum, frame):
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    code = 0
    try:
        if not port_is_free(args.host, args.port):
            raise SystemExit(f"[demo] {args.host}:{args.port} is in use; stop what runs there "
                             "or use SHOP_DEMO_PORT=8001 make demo")
        migrate(ctx)
        import_orders(ctx, force=args.reimport)
        password = admin_password()
        ensure_admin(ctx, password)

        # A run left queued or running by a demo stopped mid-training has no worker now
        # (the one started below is the demo's only one): fail it, so a new run can start.
        result = ctx.manage("shop_recs_runs", "--abandon", "--limit", "1", check=False,
                            capture_output=True, text=True)
        for line in result.stderr.splitlines():
            if "marked failed" in line:
                say(line)
        broker = ctx.env.get("CELERY_BROKER_URL") or "filesystem:// (var/broker/)"
        worker = start(ctx, "worker", [ctx.python, "-m", "celery", "-A", "shop_demo", "worker",
                                       "-Q", WORKER_QUEUES, "-c", "1", "--loglevel", "INFO",
                                       "--hostname", "demo@%h"], " ready.")
        web = start(ctx, "web", [ctx.python, "manage.py", "runserver", "--noreload",
                                 f"{args.host}:{args.port}"], "Quit the server with")
        wait_until("the web server", lambda: http_ok(ctx.base_url + "/"), ctx.children, 120)
        wait_until("the Celery worker", worker.ready.is_set, ctx.children, 120)

        print(f"""
==========================================================================
  shop_recs demo is running
    storefront : {ctx.base_url}/
    admin      : {ctx.base_url}/admin/
    login      : {ADMIN_USER} / {password}
    worker     : celery -A shop_demo worker -Q {WORKER_QUEUES} on {broker}
    logs       : var/log/web.log, var/log/worker.log
  The first start trains a model ({FIRST_RUN_ESTIMATE});
  {UNTIL_TRAINED}.
  Ctrl-C stops the site and the worker.
==========================================================================
""", flush=True)
        if not args.smoke:  # a smoke check stops at once; a queued run would be cut off
            queue_startup_training(ctx)

        if args.smoke:
            for path in ("/", "/admin/login/"):
                status = http_status(ctx.base_url + path)
                say(f"GET {path} -> {status}")
                if status != 200:
                    code = 1
            return code

        while True:
            for child in (worker, web):
                if child.proc.poll() is not None:
                    say(f"{child.name} exited with code {child.proc.returncode}; stopping")
                    return 1
            time.sleep(0.5)
    except Stop as exc:
        say(f"{exc}: shutting down")
        return 0
    except subprocess.CalledProcessError as exc:
        say(f"step failed: {' '.join(map(str, exc.cmd[:4]))} ... (exit {exc.returncode})")
        return 1
    finally:
        # Ignore further Ctrl-C while cleaning up, so a double press cannot leave orphans.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(ctx.children)
        if ctx.children:
            say("stopped everything it started")


if __name__ == "__main__":
    sys.exit(main())
