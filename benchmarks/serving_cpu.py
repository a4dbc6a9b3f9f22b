"""CPU time per FBT API call (thread time, one process): warm and cache-miss answers.

    python -m benchmarks.serving_cpu --db DB.sqlite3 [--calls 3000] [--cache locmem|redis]
                                     [--profile warm|miss|shopper|trivial [--callees REGEX]]

Wall-clock ratios (``benchmarks.serving``) need a quiet machine; thread CPU time of many
calls in one process does not, so the cost of the serving code can be compared on a loaded
one. Same set-up as ``benchmarks.serving`` (the demo's settings, throttles off, DEBUG off,
the same trivial DRF view). Rows, in µs per call (median and mean of slices of 100 calls):

- *trivial*: the trivial DRF view, no cookies;
- *warm, no cookies*: the FBT API, answer cached, a caller without cookies;
- *miss, no cookies*: the same after a new generation (every answer and candidate list
  misses), as in ``benchmarks.serving``'s cold rows;
- *trivial, shopper* and *warm, shopper*: the same two with the session cookie of a
  shopper without purchases (the session is loaded for both).

Also counts queries per answer and cache round trips (``get``/``get_many``/``set``/... calls
on the cache object: one each on Redis) per warm and per missed answer. ``--profile``
prints a cProfile of one row instead. ``--db`` is a database made with ``benchmarks.serving
--build`` (copied first). Asserts nothing about time.
"""

import argparse
import contextlib
import cProfile
import pstats
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.serving import (TRIVIAL_URL, private_redis, setup_django, traffic,
                                trivial_urlconf)

API = "/api/shop-recs/v1/products/{}/frequently-bought-together/"
CACHE_CALLS = ("get", "get_many", "set", "set_many", "add", "has_key", "incr", "delete",
               "delete_many")


class CountingCache:
    """Counts the calls to a cache object's methods (each is one round trip on Redis)."""

    def __init__(self, cache):
        self.cache, self.calls, self.real, self.depth = cache, [], {}, 0

    def __enter__(self):
        for name in CACHE_CALLS:
            real = getattr(self.cache, name)
            self.real[name] = real

            def counted(*args, _name=name, _real=real, **kwargs):
                if self.depth == 0:  # LocMem's get_many calls get: one round trip
                    self.calls.append(_name)
                self.depth += 1
                try:
                    return _real(*args, **kwargs)
                finally:
                    self.depth -= 1

            setattr(self.cache, name, counted)
        return self

    def __exit__(self, *exc):
        for name in CACHE_CALLS:
            delattr(self.cache, name)


def cpu_per_call(fetch, urls, clear=None, slices=100):
    """``(median, mean)`` µs of thread CPU time per call, over slices of ``slices`` calls."""
    per_slice = []
    for start in range(0, len(urls), slices):
        chunk = urls[start:start + slices]
        spent = 0
        for url in chunk:
            if clear:
                clear()
            begin = time.thread_time_ns()
            fetch(url)
            spent += time.thread_time_ns() - begin
        per_slice.append(spent / len(chunk) / 1e3)
    return statistics.median(per_slice), statistics.fmean(per_slice)


def measure(args):
    from django.core.cache import caches  # noqa: PLC0415
    from django.db import connection  # noqa: PLC0415
    from django.test import Client  # noqa: PLC0415
    from django.test.utils import CaptureQueriesContext  # noqa: PLC0415

    from shop_recs import serving_cache  # noqa: PLC0415
    from shop_recs.conf import recs_settings  # noqa: PLC0415

    headless, shopper = Client(), Client()
    best, _ = traffic(args.calls, args.seed)
    shopper.get(f"/products/{best[0]}/")  # a session, as the demo's pages start one
    cache = caches[recs_settings.CACHE_ALIAS]

    def fetch(client):
        def get(url):
            response = client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code}")
            return response
        return get

    urls = [API.format(pk) for pk in best]
    for client in (headless, shopper):  # warm every answer (and compiled SQL, plans)
        for url in dict.fromkeys(urls):
            fetch(client)(url)
    rows = {
        "trivial": (fetch(headless), [TRIVIAL_URL] * len(urls), None),
        "warm, no cookies": (fetch(headless), urls, None),
        "miss, no cookies": (fetch(headless), urls, serving_cache.invalidate),
        "trivial, shopper": (fetch(shopper), [TRIVIAL_URL] * len(urls), None),
        "warm, shopper": (fetch(shopper), urls, None),
    }
    if args.profile:
        name = {"warm": "warm, no cookies", "miss": "miss, no cookies",
                "shopper": "warm, shopper", "trivial": "trivial",
                "trivial-shopper": "trivial, shopper"}[args.profile]
        get, row_urls, clear = rows[name]
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        for url in row_urls:
            if clear:
                clear()
            get(url)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_callees(args.callees or "views.py.*\\(get\\)")
        return
    print(f"{len(urls)} calls per row over {len(set(urls))} best-selling products "
          f"(thread CPU µs per call: median / mean of slices of 100)")
    for _ in range(args.repeat):
        for name, (get, row_urls, clear) in rows.items():
            median, mean = cpu_per_call(get, row_urls, clear)
            print(f"  {name:<18} {median:8.1f} / {mean:8.1f}")
    for name in ("warm, no cookies", "miss, no cookies", "warm, shopper"):
        get, row_urls, clear = rows[name]
        if clear:
            clear()
        with CaptureQueriesContext(connection) as queries, CountingCache(cache) as counted:
            get(row_urls[0])
        print(f"  {name:<18} {len(queries)} queries, {len(counted.calls)} cache round trips: "
              f"{counted.calls}")


def run(args):
    from django.conf import settings  # noqa: PLC0415
    from django.test import override_settings  # noqa: PLC0415

    trivial_urlconf("benchmark_cpu_urls")
    rates = {"shop_recs.read": None, "shop_recs.events": None, "shop_recs.staff": None}
    if args.throttled:
        rates = {**rates, "shop_recs.read": "1000000/hour"}
    with override_settings(ROOT_URLCONF="benchmark_cpu_urls", DEBUG=False,
                           SHOP_RECS={**settings.SHOP_RECS, "THROTTLE_RATES": rates}):
        measure(args)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True,
                        help="a database made with benchmarks.serving --build")
    parser.add_argument("--in-place", action="store_true",
                        help="use --db itself (migrated), not a copy of it")
    parser.add_argument("--cache", choices=["locmem", "redis"], default="locmem")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--throttled", action="store_true",
                        help="the read throttle on (a high rate: never refuses)")
    parser.add_argument("--profile", choices=["warm", "miss", "shopper", "trivial", "trivial-shopper"])
    parser.add_argument("--callees", help="with --profile: the callees of these functions")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-serving-cpu-"))
    try:
        db = args.db
        if not args.in_place:
            db = work / "serving.sqlite3"
            shutil.copy(args.db, db)
        with private_redis() if args.cache == "redis" else contextlib.nullcontext() as url:
            setup_django(db, work, url)
            from django.core.management import call_command  # noqa: PLC0415

            call_command("migrate", verbosity=0)
            run(args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
