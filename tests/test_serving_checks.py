"""System checks on the serving cache: shared in production, large enough for the catalogue."""

import pytest
from django.core import checks
from django.test import override_settings

from shop_recs.checks import answer_entries_needed, check_cache_is_shared, check_cache_size
from tests.serving_data import make_products

LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
REDIS = "django.core.cache.backends.redis.RedisCache"


def ids(messages):
    return [m.id for m in messages]


@pytest.mark.parametrize(("backend", "debug", "warned"), [
    (LOCMEM, False, True), (LOCMEM, True, False), (REDIS, False, False)])
def test_a_per_process_cache_is_flagged_in_production(backend, debug, warned):
    config = {"BACKEND": backend, "LOCATION": "redis://127.0.0.1:1"}
    with override_settings(DEBUG=debug, CACHES={"default": config}):
        assert ids(check_cache_is_shared()) == (["shop_recs.W020"] if warned else [])
        assert ("shop_recs.W020" in ids(checks.run_checks(tags=["caches"]))) is warned


@pytest.mark.django_db
def test_a_cache_too_small_for_the_catalogue_is_flagged():
    make_products(150)
    needed = answer_entries_needed(150)
    for max_entries, warned in ((300, True), (needed - 1, True), (needed, False)):
        config = {"BACKEND": LOCMEM, "OPTIONS": {"MAX_ENTRIES": max_entries}}
        with override_settings(CACHES={"default": config}):
            found = check_cache_size()
            assert ids(found) == (["shop_recs.W021"] if warned else []), max_entries
    with override_settings(CACHES={"default": {"BACKEND": LOCMEM}}):  # Django's default: 300
        assert f"{needed:,}" in check_cache_size()[0].hint
    with override_settings(CACHES={"default": {"BACKEND": REDIS, "LOCATION": "redis://x"}}):
        assert check_cache_size() == []
    with override_settings(SHOP_RECS={"CACHE_TIMEOUT": 0}):
        assert check_cache_size() == []
