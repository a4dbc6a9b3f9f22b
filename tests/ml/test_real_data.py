"""One check on the real Online Retail file, when it is present (no training).

The file is found the way ``shop_demo.datasets`` finds it (this package imports no Django):
``$SHOP_RECS_DATA_DIR``, else ``shared/data/online_retail`` beside the repository.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from shop_recs.ml.baselines import CoOccurrence
from shop_recs.ml.evaluate import anchor_queries, evaluate, temporal_split
from shop_recs.ml.orders import read_orders
from shop_recs.ml.types import baskets_from_frame

REPO = Path(__file__).resolve().parents[2]
DATA = (Path(os.environ.get("SHOP_RECS_DATA_DIR") or REPO.parent / "shared" / "data"
             / "online_retail") / "online_retail_2010-12_2011-12.csv.gz")


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_file(), reason="Online Retail file not present")
def test_online_retail_split_and_cooccurrence_baseline():
    baskets, index, attrs = baskets_from_frame(read_orders([DATA], "online_retail"))
    assert 19_000 < len(baskets) < 21_000  # clean product baskets (PROVENANCE.md: ~20.5k)
    split = temporal_split(baskets, index, attrs)
    assert 3_000 < split.info["catalogue"] < 4_000
    q = anchor_queries(split.test, seed=0)
    res = evaluate(CoOccurrence("count").fit(split.train), q, split.train.item_counts())
    # the reference figure for raw co-occurrence is about 0.21
    assert 0.17 < res["multi_ndcg"] < 0.25
    assert np.isfinite(res["recall"])
