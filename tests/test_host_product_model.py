"""The host-product-model path: a separate pytest process with SHOP_RECS_PRODUCT_MODEL set.

The product model is fixed before the first migration, so it cannot change inside
this process; tests/hostshop holds a shop whose product has a UUID key and other
field names.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_shop_recs_works_with_a_host_product_model():
    env = {**os.environ, "SHOP_RECS_HOSTSHOP_RUN": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/hostshop", "--ds=tests.hostshop.settings",
         "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "12 passed" in result.stdout
