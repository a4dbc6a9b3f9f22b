"""Settings of the load test (benchmarks/load.py): a base profile, with the read throttle off.

The base is ``$SHOP_RECS_LOAD_BASE_SETTINGS`` (``shop_demo.settings_production`` when it
loads, else ``shop_demo.settings`` with ``DJANGO_DEBUG=0``; benchmarks/load.py picks).
Every request of a load test comes from one loopback client that stands for many shoppers:
the per-client read throttle (1,200/min) would otherwise answer most of them 429.
"""

import importlib
import os

_base = importlib.import_module(os.environ.get("SHOP_RECS_LOAD_BASE_SETTINGS",
                                               "shop_demo.settings"))
globals().update({name: value for name, value in vars(_base).items() if name.isupper()})
SHOP_RECS = {**_base.SHOP_RECS, "THROTTLE_RATES": {  # noqa: F405
    "shop_recs.read": None, "shop_recs.events": "120/min", "shop_recs.staff": "600/min"}}
