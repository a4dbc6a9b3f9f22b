"""The only bridge from the database to the learning core: purchases -> numpy baskets.

Usage::

    extract = extract_baskets(cutoff=timezone.now())
    extract.baskets, extract.index, extract.attrs   # shop_recs.ml.types structures
    extract.product_pk(j)                            # product pk of item column j

Purchases are streamed from the database in chunks and kept as integer codes only,
so memory stays bounded by the number of lines (a few bytes each), not by Python
objects. Item ids in the :class:`~shop_recs.ml.types.ItemIndex` are product primary
keys as strings (integer, UUID or text keys alike). No torch here.
"""

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from django.db import connections
from django.db.models.sql.constants import MULTI

from shop_recs.ml.types import Baskets, DataError, ItemAttributes, ItemIndex
from shop_recs.models import Interaction
from shop_recs.products import get_adapter

logger = logging.getLogger(__name__)

CHUNK = 50_000


class NotEnoughData(DataError):
    """The shop has too few orders or products to learn from."""


@dataclass
class Extract:
    baskets: Baskets
    index: ItemIndex
    attrs: ItemAttributes
    pks: list  # product primary keys, aligned with index.ids
    lines: int
    customers: int
    bought: int = 0  # the first ``bought`` products of the index have orders


    def product_pk(self, item):
        return self.pks[int(item)]

    @property
    def counts(self):
        return {"orders": len(self.baskets), "lines": self.lines, "products": self.bought,
                "catalogue": len(self.index), "customers": self.customers}


class _Codes:
    """Assigns consecutive integer codes to values as they are first seen."""

    def __init__(self):
        self.codes = {}

    def __call__(self, value):
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.codes)
        return code


def purchases(cutoff=None, exclude_visitors=()):
    queryset = Interaction.objects.purchases().before(cutoff).exclude(order_id="")
    if exclude_visitors:
        queryset = queryset.exclude(visitor_id__in=list(exclude_visitors))
    return queryset.order_by()


def extract_baskets(cutoff=None, queryset=None, min_orders=2, min_products=2,
                    with_unbought=True):
    """Purchases made before ``cutoff`` as baskets (one per order), with product attributes.

    The catalogue (``index``, ``attrs``, ``pks``) is the bought products, then every other
    active product (``with_unbought``), so the model can score products with no orders yet.
    Raises :class:`NotEnoughData` when fewer than ``min_orders`` orders or
    ``min_products`` distinct products were bought.
    """
    queryset = purchases(cutoff) if queryset is None else queryset
    orders, products, visitors = _Codes(), _Codes(), _Codes()
    # each chunk of lines becomes numpy arrays at once: a Python int per field per line would
    # cost ~100 bytes a line (2 GB at 20M lines) against 28 bytes in arrays (issue 15).
    # Rows are read raw, through a server-side cursor on PostgreSQL, CHUNK at a time; the
    # database converters run once per distinct value of a chunk, not once per line.
    parts = {"order": [], "item": [], "customer": [], "ts": []}
    for order_ids, product_ids, visitor_ids, timestamps in _chunks(queryset):
        parts["order"].append(_encode(order_ids, orders, np.int64))
        parts["item"].append(_encode(product_ids, products, np.int32))
        parts["customer"].append(_encode(visitor_ids, visitors, np.int64, blank=-1))
        parts["ts"].append(_epoch(timestamps))
    for key in parts:  # no purchases: empty columns
        parts[key] = parts[key] or [np.zeros(0, dtype=np.int64)]
    lines = sum(len(p) for p in parts["order"])
    if len(orders.codes) < min_orders or len(products.codes) < min_products:
        raise NotEnoughData(
            f"need at least {min_orders} orders and {min_products} products to learn from; "
            f"found {len(orders.codes)} order(s) with {len(products.codes)} product(s)"
            + (f" before {cutoff:%Y-%m-%d %H:%M}" if cutoff else "")
        )
    frame = pd.DataFrame({key: np.concatenate(values) for key, values in parts.items()})
    del parts
    # A canonical order, the one ``ml.types.baskets_from_frame`` gives an order file: products
    # by SKU (bought ones first), orders by (time, order id). Rankings break ties by item
    # index, so a run and the benchmark on the same orders then compute the same figures.
    pks = list(products.codes)
    if with_unbought:
        seen = set(pks)
        pks += [pk for pk in _active_pks() if pk not in seen]
    skus = _skus(pks)
    bought = len(products.codes)
    order = np.concatenate([np.argsort(skus[:bought], kind="stable"),
                            bought + np.argsort(skus[bought:], kind="stable")])
    new_code = np.empty(len(pks), dtype=np.int32)
    new_code[order] = np.arange(len(pks), dtype=np.int32)
    frame["item"] = new_code[frame["item"].to_numpy()]
    pks = [pks[i] for i in order]
    frame["order_id"] = np.asarray(list(orders.codes), dtype=object)[frame["order"].to_numpy()]
    baskets = _baskets(frame, len(pks))
    index = ItemIndex([str(pk) for pk in pks])
    return Extract(baskets, index, product_attributes(pks), pks, lines, len(visitors.codes),
                   bought)


def _chunks(queryset):
    """(order ids, product ids, visitor ids, timestamps) of each CHUNK lines of
    ``queryset``'s purchases, as object arrays with the database's converters applied."""
    rows = queryset.values_list("order_id", "product_id", "visitor_id", "timestamp")
    compiler = rows.query.get_compiler(using=rows.db)
    # what QuerySet.iterator() does, without building and converting one tuple per line
    results = compiler.execute_sql(
        MULTI, chunked_fetch=connections[rows.db].features.can_use_chunked_reads,
        chunk_size=CHUNK)
    if results is None:  # an empty result set decided without a query
        return
    converters = compiler.get_converters([s[0] for s in compiler.select[:compiler.col_count]])
    for chunk in results:
        columns = []
        for pos, values in enumerate(zip(*chunk)):
            values = np.asarray(values, dtype=object)
            if pos in converters:
                codes, uniques = pd.factorize(values, use_na_sentinel=False)
                converted = [row[0] for row in compiler.apply_converters(
                    ([u] for u in uniques), {0: converters[pos]})]
                values = np.asarray(converted + [None], dtype=object)[:-1][codes]
            columns.append(values)
        yield columns


def _encode(values, codes, dtype, blank=None):
    """``codes`` of each value (new values get the next codes, in order of appearance);
    ``blank`` for empty values when given."""
    found, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    mapped = np.asarray([blank if blank is not None and (pd.isna(u) or not u) else codes(u)
                         for u in uniques], dtype=dtype)
    return mapped[found] if len(found) else np.zeros(0, dtype=dtype)


def _skus(pks):
    """The adapter's product code of each pk (the pk itself when unmapped), as text."""
    adapter = get_adapter()
    field = adapter.lookup_field()
    if field == "pk":
        return np.asarray([str(pk) for pk in pks], dtype=object)
    found = {}
    for start in range(0, len(pks), 900):
        found.update(adapter.model._default_manager.filter(pk__in=pks[start:start + 900])
                     .values_list("pk", field))
    return np.asarray([str(found.get(pk, pk)) for pk in pks], dtype=object)


def _active_pks():
    """Primary keys of the active products (the adapter's ``is_active`` field, when mapped)."""
    adapter = get_adapter()
    field = adapter.fields["is_active"]
    queryset = adapter.model._default_manager.order_by("pk")
    if field:
        queryset = queryset.filter(**{field: True})
    return queryset.values_list("pk", flat=True).iterator(chunk_size=CHUNK)


def _epoch(timestamps):
    """Epoch seconds of datetimes (or of the strings a raw backend returns)."""
    if len(timestamps) == 0:
        return np.zeros(0, np.int64)
    parsed = pd.to_datetime(pd.Series(timestamps, dtype=object), utc=True)
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def _baskets(frame, n_items):
    """CSR baskets: distinct items per order, orders sorted by (first timestamp, order id)."""
    per_order = frame.groupby("order", sort=False).agg(ts=("ts", "min"),
                                                       customer=("customer", "first"),
                                                       order_id=("order_id", "first"))
    per_order = per_order.sort_values(["ts", "order_id"], kind="stable")
    rank = pd.Series(np.arange(len(per_order)), index=per_order.index)
    lines = frame[["order", "item"]].drop_duplicates()
    lines = lines.assign(pos=rank.reindex(lines["order"]).to_numpy()).sort_values(
        ["pos", "item"], kind="stable")
    counts = np.bincount(lines["pos"].to_numpy(), minlength=len(per_order))
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return Baskets(indptr=indptr, items=lines["item"].to_numpy(np.int32),
                   timestamps=per_order["ts"].to_numpy(np.int64),
                   customers=per_order["customer"].to_numpy(np.int64), n_items=n_items)


def product_attributes(pks):
    """Names, categories and prices of ``pks`` (in that order), read through the adapter."""
    adapter = get_adapter()
    model = adapter.model
    found = {}
    for start in range(0, len(pks), 900):
        for product in model._default_manager.filter(pk__in=pks[start:start + 900]):
            found[product.pk] = product
    names, categories, prices = [], [], []
    for pk in pks:
        product = found.get(pk)
        names.append(adapter.name(product) if product else "")
        categories.append(str(adapter.get(product, "category") or "") if product else "")
        price = adapter.price(product) if product else None
        prices.append(float(price) if price is not None else np.nan)
    return ItemAttributes(names=np.asarray(names, dtype=object),
                          categories=np.asarray(categories, dtype=object),
                          prices=np.asarray(prices, dtype=np.float64))


def product_descriptions(pks):
    """The adapter's ``description`` of each of ``pks`` ("" when none), for the text encoder."""
    adapter = get_adapter()
    found = {}
    for start in range(0, len(pks), 900):
        for product in adapter.model._default_manager.filter(pk__in=pks[start:start + 900]):
            found[product.pk] = product
    return [str(adapter.get(found[pk], "description") or "") if pk in found else ""
            for pk in pks]
