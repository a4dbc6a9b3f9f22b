"""The numpy data contract: aggregation of order lines, id maps, basket selection."""

import numpy as np
import pandas as pd

from shop_recs.ml.types import Baskets, ItemIndex, baskets_from_frame


def test_baskets_from_frame_aggregates_lines_per_order_and_product():
    ts = pd.Timestamp("2021-01-01", tz="UTC")
    df = pd.DataFrame({
        "order_id": ["B", "B", "A", "A", "A"],
        "product_id": ["x", "y", "y", "y", "z"],  # y twice in order A: one basket entry
        "timestamp": [ts + pd.Timedelta(hours=1)] * 2 + [ts] * 3,
        "customer_id": ["c1", "c1", "", "", ""],
        "quantity": [1, 2, 3, 4, 5], "unit_price": [1.0, 2.0, 2.0, 4.0, 3.0],
        "product_name": ["X", "Y", "Y old", "Y", "Z"], "category": ["", "", "", "", ""],
    })
    baskets, index, attrs = baskets_from_frame(df)
    assert list(index.ids) == ["x", "y", "z"]
    assert len(baskets) == 2
    # sorted by time: order A (anonymous) first
    assert index.ids[baskets.basket(0)].tolist() == ["y", "z"]
    assert index.ids[baskets.basket(1)].tolist() == ["x", "y"]
    assert baskets.customers.tolist() == [-1, 0]
    assert attrs.prices[index.index_of("y")] == 2.0  # median of 2, 2, 4
    assert attrs.names[index.index_of("y")] == "Y"  # the most recent name


def test_item_index_lookup_extend_and_hash():
    idx = ItemIndex(["a", "b"])
    assert idx.lookup(["b", "zz"]).tolist() == [1, -1]
    bigger = idx.extend(["c", "a"])
    assert list(bigger.ids) == ["a", "b", "c"]
    assert idx.sha256() != bigger.sha256()
    assert ItemIndex(["a", "b"]).sha256() == idx.sha256()


def test_select_and_remap():
    b = Baskets([0, 2, 5, 6], [0, 1, 1, 2, 3, 3], [5, 6, 7], [0, -1, 1], 4)
    s = b.select(np.array([2, 0]))
    assert [x.tolist() for x in s.as_list()] == [[3], [0, 1]]
    m = b.remap_items(np.array([-1, 0, 1, -1]), 2)
    assert [x.tolist() for x in m.as_list()] == [[0], [0, 1], []]
    assert m.item_counts().tolist() == [2, 1]
