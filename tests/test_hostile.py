"""Hostile input: a big schemathesis run over every API operation, event flooding, and
hypothesis fuzzing of the CSV order import.

* ``test_schemathesis_over_every_operation_at_scale``: at least 1,000 generated cases in
  total (every operation, anonymous and with staff credentials), no server error and no
  response that breaks the schema. (tests/test_api.py runs a small smoke version of this.)
  It found HTTP Basic credentials with a NUL answered 500 on PostgreSQL (every endpoint):
  ``test_basic_auth_with_a_nul_is_refused_not_a_server_error`` pins the fix.
* ``test_event_flood_*``: 1,000 identical anonymous events, one request each, sequential and
  from concurrent clients, store at most one row per visitor, product and de-duplication
  window; with the shipped throttles, the flood is also cut off by 429s, never a 5xx.
* ``test_fuzzed_csv_*``: random bytes and random rows never make the importer raise
  anything but ``OrderFileError`` (bad lines are skipped and counted), and never change or
  remove a row stored before. It found values the database cannot hold (an infinite or
  huge price, over-long ids, NUL): ``test_values_the_database_cannot_hold_...`` pins them.

Template escaping is fuzzed by ``tests/test_templatetags.py::test_names_are_escaped``.
"""

import base64
import gzip
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.urls import reverse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from shop_recs.importer import import_orders
from shop_recs.ml.orders import OrderFileError
from shop_recs.models import Interaction
from tests.serving_data import serving_shop
from tests.test_api import user_with, wsgi_app  # noqa: F401 (fixture)

NO_THROTTLES = {"shop_recs.read": None, "shop_recs.events": None, "shop_recs.staff": None}
SCHEMATHESIS_CASES = 1000


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


# Schemathesis ---------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.django_db
@override_settings(SHOP_RECS={"THROTTLE_RATES": NO_THROTTLES})
def test_schemathesis_over_every_operation_at_scale(wsgi_app, django_user_model):  # noqa: F811
    import schemathesis
    from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

    serving_shop()
    user_with(django_user_model, "review_bundle", "add_interaction", name="fuzz")
    staff = {"Authorization": "Basic " + base64.b64encode(b"fuzz:pw").decode()}
    schema = schemathesis.openapi.from_wsgi("/api/shop-recs/v1/schema/", wsgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Share the budget over operations and identities, with head room for operations whose
    # input space hypothesis exhausts early (no parameters, enums only).
    per_case = math.ceil(1.6 * SCHEMATHESIS_CASES / (2 * len(operations)))
    failures, server_errors, cases = [], [], []

    def fuzz(operation, headers):
        @settings(max_examples=per_case, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            cases.append(operation.label)
            # As in tests/test_api.py: with credentials "ignored auth" misreads a 200, and a
            # well-formed string that is no product key is rightly a 400.
            excluded = [positive_data_acceptance] + ([ignored_auth] if headers else [])
            response = case.call(headers=headers)
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path} "
                                     f"query={case.query} body={case.body!r:.300} -> "
                                     f"{response.status_code}")
            try:
                case.validate_response(response, excluded_checks=excluded)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                failures.append(f"{operation.label}: {str(exc)[:600]}")
                raise

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 (reported in failures)
            if not failures:
                failures.append(f"{operation.label}: {exc!r}"[:600])

    for operation in operations:
        for headers in ({}, staff):
            fuzz(operation, headers)
    assert not server_errors, "\n".join(server_errors[:20])
    assert not failures, "\n".join(dict.fromkeys(failures))
    assert len(cases) >= SCHEMATHESIS_CASES, (len(cases), sorted(set(cases)))
    print(f"\nschemathesis: {len(cases)} cases over {len(operations)} operations, "
          f"0 server errors")


@pytest.mark.django_db
@pytest.mark.parametrize("credentials", [b"a\x00b:pw", b"fuzz:p\x00w", b"\x00:"])
def test_basic_auth_with_a_nul_is_refused_not_a_server_error(credentials):
    """Found by the run above on PostgreSQL: DRF passed the user id to a query that
    PostgreSQL refuses (NUL in text), a 500 on every endpoint, public ones too. (DRF says
    403 rather than 401 because SessionAuthentication, listed first, sends no challenge.)"""
    product = serving_shop()[0][0]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(credentials).decode())
    assert client.get(reverse("shop_recs:api-fbt", args=[product.pk])).status_code == 403
    assert client.get(reverse("shop_recs:api-staff-bundles")).status_code == 403


# Event flooding -------------------------------------------------------------------------

FLOOD = 1000


def windows_spanned(started, finished, window):
    """How many de-duplication windows (``record_events`` buckets) a flood touched."""
    return int(finished // window) - int(started // window) + 1


def post_one(client, product):
    return client.post(reverse("shop_recs:api-events"),
                       {"events": [{"kind": "view", "product": str(product.pk)}]},
                       format="json", HTTP_USER_AGENT="flood/1.0")


@pytest.mark.django_db
@override_settings(SHOP_RECS={"THROTTLE_RATES": NO_THROTTLES})
def test_event_flood_stores_at_most_one_row_per_visitor_product_and_window():
    products = serving_shop()[0]
    client = APIClient()
    started = time.time()
    codes = [post_one(client, products[0]).status_code for _ in range(FLOOD)]
    finished = time.time()
    assert set(codes) == {201}
    rows = Interaction.objects.filter(kind="view", product=products[0])
    assert rows.values("visitor_id").distinct().count() == 1
    assert 1 <= rows.count() <= windows_spanned(started, finished, 60)
    # Another product of the same visitor, in the same window, is its own row.
    assert post_one(client, products[1]).json() == {"stored": 1, "duplicates": 0}


@pytest.mark.django_db(transaction=True)
@override_settings(SHOP_RECS={"THROTTLE_RATES": NO_THROTTLES})
def test_event_flood_from_concurrent_clients_stores_at_most_one_row_per_window():
    """The same beacon sent by 8 threads at once: the de-duplication must not race."""
    products = serving_shop()[0]
    local = threading.local()

    def send(_):
        if not hasattr(local, "client"):
            local.client = APIClient()
        try:
            return post_one(local.client, products[0]).status_code
        finally:
            connection.close()  # this thread's connection, before the test flushes

    started = time.time()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(send, range(FLOOD)))
    finished = time.time()
    assert set(codes) == {201}
    rows = Interaction.objects.filter(kind="view", product=products[0])
    assert 1 <= rows.count() <= windows_spanned(started, finished, 60), rows.count()


@pytest.mark.django_db
def test_event_flood_with_the_shipped_throttles_is_cut_off_without_server_errors():
    products = serving_shop()[0]
    client = APIClient()
    codes = [post_one(client, products[0]).status_code for _ in range(200)]
    assert set(codes) <= {201, 429} and codes.count(429) >= 200 - 120  # 120/min per client
    assert Interaction.objects.filter(kind="view").count() <= 2  # one window, maybe two


# CSV import fuzzing -----------------------------------------------------------------------

BASELINE = [
    "order_id,product_id,timestamp,customer_id,quantity,unit_price,product_name,category",
    "base1,SKU-A,2024-03-01T10:00:00Z,c1,1,10.00,Teapot,kitchen",
    "base1,SKU-B,2024-03-01T10:00:00Z,c1,2,3.50,Tea cosy,kitchen",
    "base2,SKU-C,2024-03-02T11:00:00Z,,1,1.25,Tea towel,linen",
]
HEADERS = [BASELINE[0],
           "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country",
           "order_id,product_id,timestamp"]
HOSTILE = st.sampled_from([
    "", " ", "nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e-320", "0", "-1", "1.5",
    "99999999999999999999", "9" * 80, "x" * 300, "SKU-A", "base1", "'; DROP TABLE x; --",
    "<script>alert(1)</script>", '"quoted, comma"', "\u202e\u0000", "2024-03-01T10:00:00Z",
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2024-02-30T00:00:00Z", "1e9", "1e10",
    "NULL", "None", "True", "=HYPERLINK(\"x\")", "１２", "\ufeffBOM",
])
FIELD = HOSTILE | st.text(max_size=20)


def snapshot():
    return set(Interaction.objects.values_list(
        "pk", "line_key", "product_id", "order_id", "quantity", "unit_price", "timestamp",
        "visitor_id"))


def quote(value):
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\n\r') else value


def try_import(path, fmt):
    """Import; anything but success or ``OrderFileError`` fails the test with its input."""
    try:
        result = import_orders([path], fmt=fmt)
    except OrderFileError:
        return None
    assert result.imported + sum(result.report.skipped.values()) <= result.report.read + 1
    return result


@pytest.fixture
def baseline(tmp_path):
    path = tmp_path / "baseline.csv"
    path.write_text("\n".join(BASELINE) + "\n", encoding="utf-8")
    assert import_orders([path]).imported == 3
    return snapshot()


FUZZ = settings(max_examples=50, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.mark.django_db
@FUZZ
@given(data=st.binary(max_size=2000), gz=st.booleans(),
       fmt=st.sampled_from(["generic", "online_retail"]), header=st.sampled_from(HEADERS))
def test_fuzzed_csv_bytes_never_crash_the_import_or_lose_rows(baseline, tmp_path, data, gz,
                                                              fmt, header):
    raw = (header + "\n").encode() + data if data[:1] != b"\x1f" else data
    path = tmp_path / ("fuzz.csv.gz" if gz else "fuzz.csv")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    try_import(path, fmt)
    assert baseline <= snapshot()


@pytest.mark.django_db
@pytest.mark.parametrize("line,reason", [
    ("o1,SKU-A,2024-03-01T10:00:00Z,c1,1,inf,Teapot,kitchen", "bad_unit_price"),
    ("o1,SKU-A,2024-03-01T10:00:00Z,c1,1,5e9,Teapot,kitchen", "bad_unit_price"),
    ("o1,SKU-A,2024-03-01T10:00:00Z,c1,1,1e10,Teapot,kitchen", "bad_unit_price"),
    ("o1,SKU-" + "A" * 80 + ",2024-03-01T10:00:00Z,c1,1,10,Teapot,kitchen",
     "product_id_too_long"),
    ("o" + "1" * 80 + ",SKU-A,2024-03-01T10:00:00Z,c1,1,10,Teapot,kitchen", "order_id_too_long"),
    ("o1,SKU-\x00Z,2024-03-01T10:00:00Z,c1,1,10,Tea\x00pot," + "k" * 300, None),
])
def test_values_the_database_cannot_hold_are_bad_lines_not_crashes(baseline, tmp_path, line,
                                                                     reason):
    """Found by the fuzzing below: an infinite or huge price, an over-long order or product
    id, a NUL (PostgreSQL) or an over-long category failed the import with a database error
    (or, on SQLite, stored a price that made every later read of the row raise)."""
    path = tmp_path / "bad.csv"
    path.write_text(BASELINE[0] + "\n" + line + "\n", encoding="utf-8")
    result = import_orders([path])
    assert baseline <= snapshot()
    if reason:
        assert result.imported == 0 and result.report.skipped == {reason: 1}
        assert result.report.bad_lines == [(str(path), 2, reason)]
    else:  # NUL dropped, category cut to its column
        assert result.imported == 1
        line = Interaction.objects.get(product__sku="SKU-Z")
        assert line.product.name == "Teapot" and len(line.product.category) == 128
    assert len(list(Interaction.objects.values_list("unit_price", flat=True))) == 3 + (
        result.imported)


VALID = {
    "order_id": st.sampled_from(["o1", "o2", "base1", "C123", "A9"]),
    "product_id": st.sampled_from(["SKU-A", "SKU-B", "SKU-Z", "POST", "85123A"]),
    "timestamp": st.sampled_from(["2024-03-01T10:00:00Z", "2024-03-05 09:30", "2023-12-31"]),
    "customer_id": st.sampled_from(["", "c1", "17850.0"]),
    "quantity": st.integers(-5, 50).map(str),
    "unit_price": st.decimals(-10, 10**6, places=2, allow_nan=False).map(str),
    "product_name": st.sampled_from(["Teapot", "Mug <b>&</b>", ""]),
    "category": st.sampled_from(["kitchen", ""]),
}
# Each field is hostile one time in seven, so that many rows reach the database.
ROW = st.tuples(*(st.integers(0, 6).flatmap(lambda n, valid=valid: FIELD if n == 0 else valid)
                  for valid in VALID.values()))


@pytest.mark.django_db
@FUZZ
@given(rows=st.lists(ROW | st.lists(FIELD, max_size=10).map(tuple), min_size=1, max_size=30))
def test_fuzzed_csv_rows_are_imported_or_skipped_never_crash_or_lose_rows(baseline, tmp_path,
                                                                           rows):
    path = tmp_path / "rows.csv"
    path.write_text(BASELINE[0] + "\n" + "\n".join(",".join(map(quote, r)) for r in rows)
                    + "\n", encoding="utf-8")
    before = Interaction.objects.count()
    result = try_import(path, "generic")
    # `pytest --hypothesis-show-statistics` shows how many examples reached the database
    # (lines seen in an earlier example count as already imported).
    event("reached the database" if result and result.imported + result.already_imported
          else "all lines skipped or file refused")
    assert baseline <= snapshot()
    if result is not None:
        assert Interaction.objects.count() == before + result.imported
