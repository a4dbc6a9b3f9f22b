"""shop_recs in a real django-oscar shop: a separate pytest process with Oscar's settings.

The Oscar shop's product model (``catalogue.Product``) is fixed before its first
migration, so it cannot share this process with the demo's settings;
tests/oscarshop/oscar_suite.py holds its tests (migrate + check, a real Online Retail
import into an Oscar catalogue, a short training run, the product page with the widget,
add-all into Oscar's basket, checkout with the bundle discount, stock to zero, Oscar's
search and product pages after imports, the schema endpoint, the dashboard link).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_shop_recs_works_in_a_django_oscar_shop():
    pytest.importorskip("oscar")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/oscarshop/oscar_suite.py",
         "--ds=tests.oscarshop.settings", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-W", "ignore::DeprecationWarning"],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=900,
    )
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 12 and " skipped" not in result.stdout, output
