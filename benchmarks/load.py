"""Load test: the demo under gunicorn on loopback, with Redis as the cache and PostgreSQL,
driven by wrk on product pages (with the FBT widget) and on the FBT API.

    scripts/load_test.sh [--products 2000] [--duration 10] [--connections 1,4,16,32]

(scripts/load_test.sh installs wrk when missing, starts private Redis and PostgreSQL with
scripts/services.sh, and runs this module under ``nice``; it needs REDIS_URL and
PG_DATABASE_URL.) Steps: migrate a fresh database; build a catalogue with FBT rows for every
product and an approved bundle for one in ten (``benchmarks.serving.build``); start gunicorn
(``--workers``, sync) on 127.0.0.1 with ``benchmarks.load_settings`` (the production
profile when it loads, else the demo settings with DEBUG off; read throttle off, because
one loopback client stands for many shoppers); check a page shows the widget; warm the
cache; then, per scenario and per number of open connections, run wrk for ``--duration``
seconds and print requests/s, p50, p99, max and errors (non-2xx/3xx, socket errors and
timeouts over 2 s). wrk is closed-loop: each connection sends its next request when the
previous answer arrives, so more connections offer a higher rate until the server saturates.
Bounded: at most ``len(connections) * 2 * duration`` seconds of load plus a 3 s warm-up each.
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

WRK_SCRIPT = """
local paths = {}
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  counter = math.random(#paths)
end
request = function()
  counter = counter % #paths + 1
  return wrk.format("GET", paths[counter])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_db(url, db):
    return url.rsplit("/", 1)[0] + f"/{db}"


def run(cmd, env, **kwargs):
    return subprocess.run(cmd, env=env, cwd=REPO, check=True, **kwargs)


def pick_settings(env):
    """The production profile when it loads and passes its checks here, else the demo's."""
    for base in ("shop_demo.settings_production", "shop_demo.settings"):
        trial = {**env, "SHOP_RECS_LOAD_BASE_SETTINGS": base}
        probe = subprocess.run([PY, "manage.py", "check"], env=trial, cwd=REPO,
                               capture_output=True, text=True)
        if probe.returncode == 0:
            return base
        print(f"[load] {base} does not load here ({probe.stderr.strip().splitlines()[-1:]}); "
              "trying the next", flush=True)
    raise SystemExit("no settings profile loads")


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:  # nosec B310 (loopback http)
        return response.status, response.read().decode()


def wrk(url, paths_file, script, connections, duration):
    threads = str(min(2, connections))
    out = subprocess.run(
        ["wrk", "-t", threads, "-c", str(connections), "-d", f"{duration}s", "--timeout", "2s",
         "-s", str(script), url, "--", str(paths_file)],
        capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--urls", type=int, default=500, help="distinct products requested")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", default="1,4,16,32")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers")
    args = parser.parse_args()
    if not (os.environ.get("REDIS_URL") and os.environ.get("PG_DATABASE_URL")):
        raise SystemExit("REDIS_URL and PG_DATABASE_URL are unset: run scripts/load_test.sh")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: run scripts/load_test.sh")
    tmp = Path(tempfile.mkdtemp(prefix="shop_recs_load_"))
    env = {
        **os.environ, "DATABASE_URL": os.environ["PG_DATABASE_URL"],
        "REDIS_URL": redis_db(os.environ["REDIS_URL"], 2),
        "CELERY_BROKER_URL": redis_db(os.environ["REDIS_URL"], 3),
        "DJANGO_SETTINGS_MODULE": "benchmarks.load_settings", "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "0", "SHOP_DEMO_VAR_DIR": str(tmp / "var"),
        "DJANGO_STATIC_ROOT": str(tmp / "static"), "DJANGO_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
    }
    env["SHOP_RECS_LOAD_BASE_SETTINGS"] = base = pick_settings(env)
    print(f"[load] settings: benchmarks.load_settings over {base}, DEBUG off, "
          f"cache {env['REDIS_URL']}, PostgreSQL", flush=True)
    run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env)
    run([PY, "manage.py", "collectstatic", "--noinput", "-v", "0"], env)
    started = time.monotonic()
    pks = json.loads(run([PY, "-c", (
        "import json, django; django.setup()\n"
        "from benchmarks.serving import build\n"
        f"print(json.dumps([p.pk for p in build({args.products})]))")],
        env, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    print(f"[load] catalogue: {len(pks)} products, 10 FBT rows each, a bundle for one in ten, "
          f"built in {time.monotonic() - started:.1f} s", flush=True)
    step = max(1, len(pks) // args.urls)
    chosen = pks[::step][:args.urls]
    scenarios = {
        "product page + widget": [f"/products/{pk}/" for pk in chosen],
        "FBT API": [f"/api/shop-recs/v1/products/{pk}/frequently-bought-together/?limit=4"
                    for pk in chosen],
    }
    script = tmp / "rotate.lua"
    script.write_text(WRK_SCRIPT)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = open(tmp / "gunicorn.log", "w")  # noqa: SIM115 (open for the server's life)
    server = subprocess.Popen(
        [PY, "-m", "gunicorn", "shop_demo.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(args.workers), "--log-level", "warning"],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    results = []
    try:
        for _ in range(300):
            try:
                status, html = get(base_url + scenarios["product page + widget"][0])
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("gunicorn did not answer; see " + str(tmp / "gunicorn.log"))
        assert status == 200 and "data-anchor-product-id" in html, "no widget on the page"
        status, body = get(base_url + scenarios["FBT API"][0])
        assert status == 200 and json.loads(body)["items"], "FBT API gave no items"
        print(f"[load] gunicorn: {args.workers} sync workers on {base_url}; page shows the "
              "widget, API answers", flush=True)
        for name, paths in scenarios.items():
            paths_file = tmp / (name.split()[0].lower() + ".txt")
            paths_file.write_text("\n".join(paths) + "\n")
            wrk(base_url, paths_file, script, 4, 3)  # warm the cache and the workers
            for connections in [int(c) for c in args.connections.split(",")]:
                result = wrk(base_url, paths_file, script, connections, args.duration)
                result.update(scenario=name, connections=connections)
                results.append(result)
                print(f"[load] {name:<22} c={connections:<3} {result['rps']:7.1f} req/s  "
                      f"p50 {result['p50_us'] / 1e3:7.1f} ms  p99 {result['p99_us'] / 1e3:7.1f}"
                      f" ms  max {result['max_us'] / 1e3:7.1f} ms  requests "
                      f"{result['requests']:6d}  errors {result['errors']}", flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
    server_errors = (tmp / "gunicorn.log").read_text()
    print("\n| scenario | connections | req/s | p50 ms | p99 ms | max ms | requests | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['scenario']} | {r['connections']} | {r['rps']:.0f} | "
              f"{r['p50_us'] / 1e3:.1f} | {r['p99_us'] / 1e3:.1f} | {r['max_us'] / 1e3:.1f} | "
              f"{r['requests']} | {r['errors']} |")
    errors = sum(r["errors"] for r in results)
    print(f"\n[load] total errors: {errors}; gunicorn log: "
          f"{len(server_errors.splitlines())} line(s)")
    if server_errors.strip():
        print(server_errors[-3000:])
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
