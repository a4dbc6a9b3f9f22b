"""Cleaning rules of the order reader, one by one, on small files the tests write."""

import gzip

import pytest

from shop_recs.ml.orders import CleaningReport, OrderFileError, iter_clean_chunks, read_orders

OR_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
OR2_HEADER = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country"


def write(tmp_path, name, lines):
    path = tmp_path / name
    text = "\n".join(lines) + "\n"
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def read(paths, fmt="online_retail"):
    report = CleaningReport()
    frame = read_orders(paths, fmt, report)
    return frame, report


def test_clean_lines_are_kept_with_generic_columns(tmp_path):
    path = write(tmp_path, "a.csv", [
        OR_HEADER,
        "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",
        "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,,United Kingdom",
    ])
    frame, report = read([path])
    assert report.read == 2 and report.kept == 2 and not report.skipped
    assert list(frame["product_id"]) == ["85123A", "71053"]
    assert list(frame["customer_id"]) == ["17850", ""]  # anonymous orders are kept
    assert list(frame["line_no"]) == [2, 3]
    assert frame["quantity"].tolist() == [6, 6]
    assert frame["unit_price"].tolist() == [2.55, 3.39]


@pytest.mark.parametrize("line, reason", [
    ("C536379,85123A,X,-1,2010-12-01 09:41:00,2.55,14527,UK", "cancellation"),
    ("A563185,B,Adjust bad debt,1,2011-08-12 14:50:00,11062.06,,UK", "bad_debt_adjustment"),
    ("536370,POST,POSTAGE,3,2010-12-01 08:45:00,18.0,12583,France", "non_product_code"),
    ("536370,DOT,DOTCOM POSTAGE,1,2010-12-01 08:45:00,569.77,,UK", "non_product_code"),
    ("536370,BANK CHARGES,Bank Charges,1,2010-12-01 08:45:00,15.0,,UK", "non_product_code"),
    ("536370,AMAZONFEE,AMAZON FEE,1,2010-12-01 08:45:00,13541.33,,UK", "non_product_code"),
    ("536370,gift_0001_20,voucher,1,2010-12-01 08:45:00,17.0,,UK", "non_product_code"),
    ("536370,ADJUST,Adjustment,1,2010-12-01 08:45:00,17.0,,UK", "non_product_code"),
    ("536370,22728,ALARM CLOCK,0,2010-12-01 08:45:00,3.75,12583,France", "nonpositive_quantity"),
    ("536370,22728,ALARM CLOCK,-2,2010-12-01 08:45:00,3.75,12583,France", "nonpositive_quantity"),
    ("536370,22728,ALARM CLOCK,2,2010-12-01 08:45:00,0,12583,France", "nonpositive_price"),
    ("536370,22728,ALARM CLOCK,2,2010-12-01 08:45:00,-1.5,12583,France", "nonpositive_price"),
])
def test_each_cleaning_rule_is_counted_by_reason(tmp_path, line, reason):
    good = "536371,22727,ALARM CLOCK RED,2,2010-12-01 08:45:00,3.75,12583,France"
    frame, report = read([write(tmp_path, "a.csv", [OR_HEADER, line, good])])
    assert report.skipped == {reason: 1}
    assert report.kept == 1 and frame["product_id"].tolist() == ["22727"]


def test_colour_variants_and_dotcom_products_are_products(tmp_path):
    lines = [OR_HEADER,
             "1,84029G,KNITTED UNION FLAG HOT WATER BOTTLE,6,2010-12-01 08:26:00,3.39,1,UK",
             "1,84029E,RED WOOLLY HOTTIE WHITE HEART.,6,2010-12-01 08:26:00,3.39,1,UK",
             "1,DCGS0003,BOXED GLASS ASHTRAY,1,2010-12-01 08:26:00,2.46,,UK"]
    frame, report = read([write(tmp_path, "a.csv", lines)])
    assert report.kept == 3


def test_exact_duplicate_lines_are_dropped_even_across_chunks(tmp_path):
    line = "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850,UK"
    other = "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,UK"
    path = write(tmp_path, "a.csv", [OR_HEADER, line, other, line, line])
    report = CleaningReport()
    kept = sum(len(c) for _, c in iter_clean_chunks([path], "online_retail", 2, report))
    assert kept == 2 and report.skipped == {"duplicate_line": 2}


def test_lines_in_both_yearly_files_are_read_once_despite_different_headers(tmp_path):
    overlap = "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850,UK"
    early = write(tmp_path, "y1.csv.gz", [
        OR2_HEADER, "489434,85048,GLASS BALL,12,2009-12-01 07:45:00,6.95,13085.0,UK", overlap])
    late = write(tmp_path, "y2.csv", [
        OR_HEADER, overlap, "536366,22633,HAND WARMER,6,2010-12-01 08:28:00,1.85,17850,UK"])
    frame, report = read([early, late])
    assert report.kept == 3 and report.skipped == {"in_earlier_file": 1}
    assert frame["customer_id"].tolist() == ["13085", "17850", "17850"]


def test_bad_lines_are_reported_with_line_numbers(tmp_path):
    path = write(tmp_path, "g.csv", [
        "order_id,product_id,timestamp,quantity,unit_price",
        "o1,p1,2024-01-01T10:00:00,1,2.50",
        "o1,p2,not-a-date,1,2.50",
        "o2,,2024-01-01T10:00:00,1,2.50",
        "o2,p3,2024-01-01T10:00:00,lots,2.50",
        "o2,p4,2024-01-01T10:00:00,1,cheap",
        "o2,p5,2024-01-01T10:00:00,1,2.5,extra,fields",
        "o3,p1,2024-01-02T10:00:00+02:00,2,",
    ])
    frame, report = read([path], "generic")
    assert frame["order_id"].tolist() == ["o1", "o3"]
    assert sorted((n, r) for _, n, r in report.bad_lines) == [
        (3, "bad_timestamp"), (4, "missing_product_id"), (5, "bad_quantity"),
        (6, "bad_unit_price"), (7, "wrong_field_count")]
    assert report.read == 7
    # An empty price is missing, not bad; time zones are converted to UTC.
    assert frame["unit_price"].isna().tolist() == [False, True]
    assert str(frame["timestamp"].iloc[1]) == "2024-01-02 08:00:00+00:00"


def test_generic_format_needs_its_required_columns(tmp_path):
    path = write(tmp_path, "g.csv", ["order,product_id,quantity", "1,2,3"])
    with pytest.raises(OrderFileError, match="missing required column.*order_id.*timestamp"):
        read([path], "generic")


def test_online_retail_format_names_missing_columns(tmp_path):
    path = write(tmp_path, "o.csv", ["InvoiceNo,StockCode,Quantity", "1,2,3"])
    with pytest.raises(OrderFileError, match="Description.*InvoiceDate"):
        read([path])


def test_unreadable_and_missing_files_fail_clearly(tmp_path):
    with pytest.raises(OrderFileError, match="no such file"):
        read([tmp_path / "absent.csv"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(OrderFileError, match="cannot read a CSV header"):
        read([empty], "generic")
    with pytest.raises(OrderFileError, match="unknown format"):
        read([write(tmp_path, "x.csv", ["a"])], "excel")


def test_line_keys_are_stable_and_distinct(tmp_path):
    lines = [OR_HEADER, "1,85123A,X,6,2010-12-01 08:26:00,2.55,17850,UK",
             "1,85123A,X,7,2010-12-01 08:26:00,2.55,17850,UK"]
    first, _ = read([write(tmp_path, "a.csv", lines)])
    again, _ = read([write(tmp_path, "b.csv.gz", lines)])
    assert first["line_key"].tolist() == again["line_key"].tolist()
    assert first["line_key"].nunique() == 2 and (first["line_key"] >= 0).all()


def test_timestamps_before_year_one_in_utc_are_bad_not_a_crash(tmp_path):
    path = write(tmp_path, "g.csv", [
        "order_id,product_id,timestamp",
        "o1,p1,0001-01-01T00:30:00+01:00",  # year 0 in UTC: no datetime can hold it
        "o2,p2,0001-01-01T02:00:00+01:00",
    ])
    frame, report = read([path], "generic")
    assert frame["order_id"].tolist() == ["o2"]
    assert [(n, r) for _, n, r in report.bad_lines] == [(2, "bad_timestamp")]


def test_line_keys_are_the_stored_ones(tmp_path):
    """The keys of lines already in shops' databases: a faster hash loop must not change them
    (or a re-import would add every line again)."""
    import hashlib

    from shop_recs.ml.orders import _line_keys

    line = "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850,UK"
    frame, _ = read([write(tmp_path, "a.csv", [OR_HEADER, line])])
    fields = "\x1f".join(["536365", "85123A", "6", "2.55", "2010-12-01T08:26:00", "17850"])
    want = int.from_bytes(hashlib.blake2b(fields.encode(), digest_size=8).digest(), "big") >> 1
    assert _line_keys(frame).tolist() == [want] and frame["line_key"].tolist() == [want]
