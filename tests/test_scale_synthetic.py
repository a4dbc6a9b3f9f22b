"""The synthetic shop generator (benchmarks.synthetic_shop): format, determinism, planted truth."""

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.synthetic_shop import ShopParams, main, planted_recall, write_shop
from shop_recs.ml.orders import CleaningReport, read_orders
from shop_recs.ml.types import baskets_from_frame


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    out = tmp_path_factory.mktemp("shop") / "shop.csv.gz"
    summary = write_shop(ShopParams(products=400, lines=6000, seed=3, chunk_orders=500), out)
    return out, summary


def test_generic_format_reads_clean(shop):
    out, summary = shop
    report = CleaningReport()
    frame = read_orders([out], "generic", report=report)
    assert report.read == summary["lines"] == 6000
    assert report.kept == report.read  # nothing the cleaning rules would drop
    assert frame["order_id"].nunique() == summary["orders"]
    assert set(frame["product_id"].str[0]) == {"P"}
    assert (frame["unit_price"] > 0).all() and (frame["quantity"] >= 1).all()
    assert (frame["product_name"] != "").all() and (frame["category"] != "").all()
    assert not frame.duplicated(["order_id", "product_id"]).any()  # one line per product


def test_orders_have_sizes_customers_repeats_and_time_order(shop):
    frame = read_orders([shop[0]])
    sizes = frame.groupby("order_id").size()
    assert sizes.min() >= 1 and sizes.max() > 3 * sizes.median()  # long tail of big baskets
    known = frame["customer_id"] != ""
    assert 0.5 < known.mean() < 0.9  # guests and known customers
    per_customer = frame[known].groupby("customer_id")["order_id"].nunique()
    assert per_customer.max() >= 5  # repeat customers
    first_seen = frame.groupby("product_id")["timestamp"].min()
    start = frame["timestamp"].min()
    assert (first_seen > start + pd.Timedelta(days=30)).mean() > 0.1  # products arrive later
    order_ts = frame.groupby("order_id", sort=False)["timestamp"].first()
    assert order_ts.is_monotonic_increasing


def test_same_seed_same_file_other_seed_other_file(tmp_path):
    a, b, c = (tmp_path / f"{n}.csv" for n in "abc")
    for path, seed in ((a, 1), (b, 1), (c, 2)):
        write_shop(ShopParams(products=50, lines=300, seed=seed), path)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_planted_groups_are_co_bought_and_recall_measures_them(shop):
    out, _ = shop
    truth = json.loads((out.parent / (out.name + ".truth.json")).read_text())
    groups = truth["groups"]
    assert len(groups) == 400 // 20 and all(2 <= len(g) <= 4 for g in groups)
    baskets, index, _ = baskets_from_frame(read_orders([out]))
    counts = np.zeros((baskets.n_items, baskets.n_items))
    for items in baskets.as_list():
        counts[np.ix_(items, items)] += 1
    np.fill_diagonal(counts, 0)
    top = {index.ids[i]: list(index.ids[np.argsort(-counts[i], kind="stable")[:10]])
           for i in range(baskets.n_items)}
    planted = planted_recall(top, groups)
    shuffled = planted_recall(top, [list(np.random.default_rng(0).choice(index.ids, len(g),
                                                                          replace=False))
                                    for g in groups])
    assert planted > 0.8 > 0.3 > shuffled


def test_planted_recall_by_hand():
    top = {"A": ["B", "X"], "B": ["X", "Y"], "C": ["A"]}
    assert planted_recall(top, [["A", "B"], ["C", "D", "E"]], k=10) == pytest.approx(
        (1 + 0 + 0) / 3)  # D and E have no list; C found neither mate
    assert np.isnan(planted_recall({}, [["A", "B"]]))


def test_bad_arguments_are_refused(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["--products", "5", "--lines", "10", "--out", str(tmp_path / "x.csv")])
    assert "at least 10" in capsys.readouterr().err
    with pytest.raises(ValueError, match="between 0 and 1"):
        ShopParams(products=100, lines=10, planted=1.5)
