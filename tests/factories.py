"""Builders of small shops with planted co-purchase signals."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from shop_recs.models import Interaction, Product

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
FAST = {"time_budget_s": 5, "epochs": 3, "device": "cpu"}  # a training run in seconds


@pytest.fixture
def artifacts(settings, tmp_path):
    """Runs write their checkpoints under the test's folder, with short lists; a module
    that trains uses it with ``autouse`` (see tests/test_pipeline.py)."""
    settings.SHOP_RECS = {**settings.SHOP_RECS, "ARTIFACT_DIR": str(tmp_path / "artifacts"),
                          "FBT_TOP_K": 5}
    return tmp_path / "artifacts"
WORDS = ("teapot cosy mug saucer kettle spoon tray napkin candle lantern basket jar ribbon "
         "frame clock cushion blanket apron towel bowl plate glass bottle vase doormat "
         "notebook pencil stamp sticker puzzle garland bunting wreath").split()


def planted_shop(n_products=30, n_orders=400, seed=0):
    """Products P00..; P00 and P01 are always bought together, P02 with P03 often.

    Returns the products in sku order. Orders are spread over 100 days so a temporal
    split has training, validation and test orders.
    """
    rng = np.random.default_rng(seed)
    products = Product.objects.bulk_create(
        [Product(sku=f"P{i:02d}", name=f"{WORDS[i].title()} {i}", price="3.00",
                 category="even" if i % 2 == 0 else "odd") for i in range(n_products)])
    rows = []
    for o in range(n_orders):
        items = set(rng.choice(np.arange(4, n_products), size=rng.integers(1, 4), replace=False))
        if o % 3 == 0:
            items |= {0, 1}
        if o % 4 == 1:
            items |= {2, 3}
        when = T0 + timedelta(hours=6 * o)
        rows += [Interaction(product=products[i], kind=Interaction.Kind.PURCHASE,
                             order_id=f"o{o}", visitor_id=f"c{o % 40}", timestamp=when,
                             source=Interaction.Source.IMPORT) for i in sorted(items)]
    Interaction.objects.bulk_create(rows)
    return products
