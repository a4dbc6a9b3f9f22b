"""Fixtures shared by the Django tests: small CSV files and catalogue builders."""

import gzip
import os
from pathlib import Path

import pytest
from django.conf import settings

# tests/hostshop runs in its own process with its own settings (another product model).
collect_ignore = [] if os.environ.get("SHOP_RECS_HOSTSHOP_RUN") else ["hostshop"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def fresh_cache():
    """Every test starts and ends with an empty default cache (serving caches, throttles).

    tests/ml also runs without Django (``-p no:django``); nothing to clear there.
    """
    if not settings.configured:
        yield
        return
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def write_csv(tmp_path):
    """Write lines to a CSV file (gzip when the name ends in .gz) and return its path."""

    def write(lines, name="orders.csv"):
        path = tmp_path / name
        text = "\n".join(lines) + "\n"
        if name.endswith(".gz"):
            with gzip.open(path, "wt", encoding="utf-8") as fh:
                fh.write(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return write
