"""Extraction of baskets from the database (shop_recs.data)."""

from datetime import datetime, timedelta, timezone

import pytest

from shop_recs.data import NotEnoughData, extract_baskets
from shop_recs.ingest import record_event, record_order
from shop_recs.models import Interaction, Product

pytestmark = pytest.mark.django_db
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def shop():
    products = {s: Product.objects.create(sku=s, name=f"Name {s}", category="cat",
                                          price="2.50") for s in "ABCD"}
    record_order("o2", [{"product": products["A"]}, {"product": products["C"]}],
                 customer_id="c1", timestamp=T0 + timedelta(days=2))
    record_order("o1", [{"product": products["A"]}, {"product": products["B"]},
                        {"product": products["B"], "quantity": 3}],
                 timestamp=T0 + timedelta(days=1))
    record_order("o3", [{"product": products["D"]}], customer_id="c1",
                 timestamp=T0 + timedelta(days=3))
    record_event(Interaction.Kind.VIEW, products["D"], visitor_id="v")  # not a purchase
    return products


def test_orders_become_time_ordered_baskets_of_distinct_items(shop):
    extract = extract_baskets()
    baskets, index = extract.baskets, extract.index
    names = [sorted(index.ids[baskets.basket(i)]) for i in range(len(baskets))]
    pk = {s: str(p.pk) for s, p in shop.items()}
    assert names == [sorted([pk["A"], pk["B"]]), sorted([pk["A"], pk["C"]]), [pk["D"]]]
    assert list(baskets.timestamps) == [int((T0 + timedelta(days=d)).timestamp())
                                        for d in (1, 2, 3)]
    # o2 and o3 share a customer; o1 is anonymous.
    assert baskets.customers[0] == -1 and baskets.customers[1] == baskets.customers[2] >= 0
    assert extract.counts == {"orders": 3, "lines": 5, "products": 4, "catalogue": 4,
                              "customers": 1}
    j = index.index_of(pk["C"])
    assert extract.product_pk(j) == shop["C"].pk
    assert extract.attrs.names[j] == "Name C" and extract.attrs.prices[j] == 2.5


def test_cutoff_excludes_later_orders(shop):
    extract = extract_baskets(cutoff=T0 + timedelta(days=2, hours=12))
    assert len(extract.baskets) == 2 and extract.counts["lines"] == 4


def test_too_little_data_is_a_clear_error(shop):
    with pytest.raises(NotEnoughData, match="found 0 order"):
        extract_baskets(cutoff=T0)
    Interaction.objects.exclude(product=shop["A"]).delete()
    with pytest.raises(NotEnoughData, match="1 product"):
        extract_baskets()



def test_active_products_without_orders_join_the_catalogue_with_their_attributes(shop):
    new = Product.objects.create(sku="N", name="Name N", category="cat", price="4.00")
    Product.objects.create(sku="X", name="Retired", price="1.00", is_active=False)
    extract = extract_baskets()
    assert extract.counts["products"] == 4 and extract.counts["catalogue"] == 5
    j = extract.index.index_of(str(new.pk))
    assert j == 4 and extract.product_pk(j) == new.pk  # after the bought products
    assert extract.attrs.names[j] == "Name N" and extract.attrs.prices[j] == 4.0
    assert extract.baskets.n_items == 5 and extract.baskets.item_counts()[j] == 0
    assert len(extract_baskets(with_unbought=False).index) == 4


def test_lines_stream_through_a_chunked_server_side_cursor(shop, monkeypatch):
    """Issue 15: extraction never holds every line as Python objects. The lines are read with
    Django's chunked cursor (a named, server-side cursor on PostgreSQL) a CHUNK at a time and
    each chunk becomes arrays; a chunk smaller than the data gives the same baskets."""
    import numpy as np
    from django.db import connection

    from shop_recs import data

    whole = extract_baskets()
    cursors, real = [], connection.chunked_cursor

    def chunked():
        cursor = real()
        cursors.append(cursor)
        return cursor

    monkeypatch.setattr(connection, "chunked_cursor", chunked)
    monkeypatch.setattr(data, "CHUNK", 2)
    fetched, epoch = [], data._epoch  # called once per chunk, with the chunk's timestamps
    monkeypatch.setattr(data, "_epoch", lambda ts: fetched.append(len(ts)) or epoch(ts))
    small = extract_baskets()
    assert cursors, "the lines were not read through a chunked cursor"
    if connection.vendor == "postgresql":  # psycopg's ServerCursor: a named cursor
        assert any(getattr(c.cursor, "name", None) for c in cursors)
    assert max(fetched) == 2 and sum(fetched) == whole.counts["lines"]
    np.testing.assert_array_equal(small.baskets.items, whole.baskets.items)
    np.testing.assert_array_equal(small.baskets.indptr, whole.baskets.indptr)
    assert small.counts == whole.counts
