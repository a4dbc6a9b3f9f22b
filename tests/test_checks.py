"""System checks: each id fires with a hint, and a correct configuration is silent."""

from django.contrib.auth.models import User
from django.core import checks
from django.test import override_settings

from shop_recs.checks import check_cart_url, check_product_model, check_settings, check_torch
from shop_recs.products import ProductAdapter


def ids(messages):
    return sorted(m.id for m in messages)


@override_settings(DEBUG=True)  # a per-process cache is W020 only with DEBUG off
def test_demo_configuration_passes_every_check():
    assert [m for m in checks.run_checks() if m.id.startswith("shop_recs")] == []


@override_settings(SHOP_RECS={"IMPORT_CHUNKSIZE": 10, "DEFAULT_CURRENCY": "EUR"})
def test_unknown_key_is_e001_with_the_valid_keys_as_hint():
    (error,) = check_settings()
    assert error.id == "shop_recs.E001" and "IMPORT_CHUNKSIZE" in error.msg
    assert "IMPORT_CHUNK_SIZE" in error.hint


def test_out_of_range_and_wrong_type_values_are_e002():
    for value in (0, 10**9, "big", True):
        with override_settings(SHOP_RECS={"IMPORT_CHUNK_SIZE": value}):
            assert ids(check_settings()) == ["shop_recs.E002"]
    with override_settings(SHOP_RECS={"PRODUCT_FIELDS": ["name"]}):
        assert "shop_recs.E002" in ids(check_settings())
    for key, value in (("FBT_PUBLISHING", "sometimes"), ("DEVICE", "tpu")):
        with override_settings(SHOP_RECS={key: value}):
            (error,) = check_settings()
            assert error.id == "shop_recs.E002" and value in error.msg
    with override_settings(SHOP_RECS=["not", "a", "dict"]):
        assert ids(check_settings()) == ["shop_recs.E002"]


def test_misconfigured_product_model_is_e003():
    with override_settings(SHOP_RECS_PRODUCT_MODEL="catalogue"):
        (error,) = check_product_model()
        assert error.id == "shop_recs.E003" and "app_label.model_name" in error.msg
    with override_settings(SHOP_RECS_PRODUCT_MODEL="catalogue.Item"):
        (error,) = check_product_model()
        assert error.id == "shop_recs.E003" and "not been installed" in error.msg
    with override_settings(SHOP_RECS={"PRODUCT_FIELDS": {"colour": "colour"}}):
        assert ids(check_product_model()) == ["shop_recs.E003"]
    with override_settings(SHOP_RECS={"PRODUCT_ADAPTER": "nowhere.Adapter"}):
        assert ids(check_product_model()) == ["shop_recs.E003"]


def test_field_map_naming_missing_fields_is_e004():
    with override_settings(SHOP_RECS={"PRODUCT_FIELDS": {"name": "title",
                                                         "category": "category__label"}}):
        (error,) = check_product_model()
    assert error.id == "shop_recs.E004"
    assert "name -> title" in error.msg and "category -> category__label" in error.msg
    assert "PRODUCT_FIELDS" in error.hint


def test_missing_torch_is_a_warning_not_an_error(monkeypatch):
    assert check_torch() == []
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    (warning,) = check_torch()
    assert warning.id == "shop_recs.W001" and warning.level == checks.WARNING


def test_missing_artifact_folder_is_e005():
    from shop_recs.checks import check_artifact_dir

    with override_settings(SHOP_RECS={}, MEDIA_ROOT=""):
        (error,) = check_artifact_dir()
    assert error.id == "shop_recs.E005" and "ARTIFACT_DIR" in error.hint
    with override_settings(SHOP_RECS={"ARTIFACT_DIR": "/tmp/x"}, MEDIA_ROOT=""):
        assert check_artifact_dir() == []


class UserAdapter(ProductAdapter):
    """An adapter over a model with many-valued relations (auth.User: groups)."""

    def __init__(self, model=None, overrides=None):
        super().__init__(model=User, overrides=overrides)


USER_FIELDS = {"sku": "username", "name": "username", "price": None, "currency": None,
               "description": None, "image_url": None, "category": None, "in_stock": None,
               "is_active": "is_active"}


def test_paths_the_queries_cannot_use_are_e006():
    """The README's issue: ``categories__name`` / ``stockrecords__price`` pass a name check
    and then fail every query (select_related cannot follow many-valued relations)."""
    cases = {
        "category": ("groups__name", "many-valued"),  # ManyToMany
        "price": ("logentry__object_id", "many-valued"),  # reverse ForeignKey
        "description": ("groups", "many-valued"),
        "in_stock": ("username", "wrong type"),
        "is_active": ("last_login", "wrong type"),
        "sku": ("groups__name", "model itself"),
    }
    for key, (path, words) in cases.items():
        fields = {**USER_FIELDS, key: path}
        with override_settings(SHOP_RECS={"PRODUCT_ADAPTER": "tests.test_checks.UserAdapter",
                                          "PRODUCT_FIELDS": fields}):
            (error,) = check_product_model()
        assert error.id == "shop_recs.E006", (key, error)
        assert repr(path) in error.msg and words in error.msg, error.msg
        assert "PRODUCT_ADAPTER" in error.hint
    with override_settings(SHOP_RECS={"PRODUCT_ADAPTER": "tests.test_checks.UserAdapter",
                                      "PRODUCT_FIELDS": USER_FIELDS}):
        assert check_product_model() == []


def test_a_nested_product_code_is_e006():
    adapter = UserAdapter(overrides={**USER_FIELDS, "sku": "user_permissions__codename"})
    assert ("sku", "user_permissions__codename", "nested") in adapter.field_problems()


def test_a_cart_url_the_form_cannot_post_to_is_w010():
    with override_settings(SHOP_RECS={"CART_URL_NAME": "shop_demo:product"}):
        (warning,) = check_cart_url()  # needs a pk: like Oscar's basket:add
    assert warning.id == "shop_recs.W010" and warning.level == checks.WARNING
    assert "without arguments" in warning.msg and "shop_recs_oscar:basket-add-all" in warning.hint
    with override_settings(SHOP_RECS={"CART_URL_NAME": "no-such-name"}):
        assert [w.id for w in check_cart_url()] == ["shop_recs.W010"]
    with override_settings(SHOP_RECS={"CART_URL_NAME": "shop_recs:api-runs"}):
        (warning,) = check_cart_url()  # a GET-only view
    assert warning.id == "shop_recs.W010" and "does not accept POST" in warning.msg
    with override_settings(SHOP_RECS={"CART_URL_NAME": "shop_demo:cart_add"}):
        assert check_cart_url() == []
    with override_settings(SHOP_RECS={}):
        assert check_cart_url() == []


def test_training_processes_is_a_whole_number_or_auto():
    for value in (0, -1, 65, 2.0, "2", "all", True, None):
        with override_settings(SHOP_RECS={"TRAINING_PROCESSES": value}):
            (error,) = check_settings()
            assert error.id == "shop_recs.E002" and "TRAINING_PROCESSES" in error.msg
            assert repr(value) in error.msg
    for value in (1, 2, 64, "auto"):
        with override_settings(SHOP_RECS={"TRAINING_PROCESSES": value}):
            assert check_settings() == []
