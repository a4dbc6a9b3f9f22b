"""The lazy SHOP_RECS settings object."""

import pytest
from django.test import override_settings

from shop_recs.conf import DEFAULTS, recs_settings
from shop_recs.products import get_adapter


def test_defaults_apply_when_unset():
    with override_settings(SHOP_RECS={}):
        assert recs_settings.IMPORT_CHUNK_SIZE == DEFAULTS["IMPORT_CHUNK_SIZE"]


def test_override_settings_reaches_the_cached_values():
    assert recs_settings.DEFAULT_CURRENCY == "GBP"  # the demo's value
    with override_settings(SHOP_RECS={"DEFAULT_CURRENCY": "EUR"}):
        assert recs_settings.DEFAULT_CURRENCY == "EUR"
    assert recs_settings.DEFAULT_CURRENCY == "GBP"


def test_adapter_is_rebuilt_when_settings_change():
    with override_settings(SHOP_RECS={"PRODUCT_FIELDS": {"image_url": None}}):
        assert get_adapter().fields["image_url"] is None
    assert get_adapter().fields["image_url"] == "image_url"


def test_unknown_attribute_is_an_error():
    with pytest.raises(AttributeError, match="Invalid SHOP_RECS setting"):
        recs_settings.NOT_A_SETTING
