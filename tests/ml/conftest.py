"""Tiny planted-signal order data for the ml tests (no database, no Django).

``planted_frame()`` builds order lines in the layout of ``shop_recs.ml.orders.COLUMNS``:
products come in complementary groups (a basket draws most items from one group), product
``P00`` is always bought with ``P01``, and customers re-order favourites.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shop_recs.ml.types import baskets_from_frame

N_GROUPS, GROUP_SIZE = 6, 6


def planted_frame(n_orders: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_items = N_GROUPS * GROUP_SIZE
    ids = [f"P{i:02d}" for i in range(n_items)]
    colours = ["RED", "BLUE", "GREEN", "PINK", "IVORY", "BLACK"]
    names = [f"{colours[i % 6]} {['MUG', 'LANTERN', 'CANDLE', 'BAG', 'CARD', 'BOX'][i // 6]} "
             f"STYLE {i}" for i in range(n_items)]
    rows = []
    start = pd.Timestamp("2020-01-01", tz="UTC")
    for o in range(n_orders):
        customer = int(rng.integers(0, 40))
        group = (customer + int(rng.integers(0, 2))) % N_GROUPS
        members = np.arange(group * GROUP_SIZE, (group + 1) * GROUP_SIZE)
        k = int(rng.integers(2, 5))
        items = set(rng.choice(members, size=k, replace=False).tolist())
        if rng.random() < 0.15:
            items.add(int(rng.integers(0, n_items)))  # noise
        if 0 in items or rng.random() < 0.1:
            items |= {0, 1}  # the planted pair: P00 is always bought with P01
        for it in sorted(items):
            rows.append({"order_id": f"O{o:05d}", "product_id": ids[it],
                         "timestamp": start + pd.Timedelta(hours=o),
                         "customer_id": f"C{customer}" if customer % 7 else "",
                         "quantity": int(rng.integers(1, 6)),
                         "unit_price": 1.0 + (it % 7), "product_name": names[it],
                         "category": "", "line_key": 0, "line_no": len(rows) + 2})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    return planted_frame()


@pytest.fixture(scope="session")
def data(frame):
    """(baskets, index, attrs) of the planted frame."""
    return baskets_from_frame(frame)
