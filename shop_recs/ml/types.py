"""The numpy-only data contract between the shop's database and the learning core.

Both sides build the same three objects: ``shop_recs.data`` from the database,
:func:`baskets_from_frame` from a frame of order lines (``shop_recs.ml.orders``)::

    baskets, index, attrs = baskets_from_frame(read_orders([path], "online_retail"))
    baskets.basket(0)          # item indices of the first order (int32)
    index.ids[baskets.basket(0)]  # their external product ids

Indexing: item indices are contiguous ``0 .. n_items-1`` and line up with the columns of every
score matrix (``score(...)[:, j]`` is the score of ``index.ids[j]``). There is no padding row in
this contract; the neural model shifts by one internally to reserve its own padding index 0.

No torch here: the web side and the baselines import this module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["DataError", "ItemIndex", "ItemAttributes", "Baskets", "baskets_from_frame"]


class DataError(ValueError):
    """The orders cannot be learned from (too few orders, no repeated products, ...).

    A message for the shop owner, not a bug: callers show it and stop. Every other exception
    of the learning core is a programming or environment error and should surface as one.
    """


class ItemIndex:
    """External product id strings <-> contiguous item indices ``0 .. len-1``."""

    def __init__(self, ids) -> None:
        self.ids = np.asarray([str(i) for i in ids], dtype=object)
        self._pos = {pid: i for i, pid in enumerate(self.ids)}
        if len(self._pos) != len(self.ids):
            raise ValueError("ItemIndex ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, pid: object) -> bool:
        return str(pid) in self._pos

    def index_of(self, pid: object) -> int:
        return self._pos[str(pid)]

    def lookup(self, ids) -> np.ndarray:
        """Indices of ``ids`` (int64), ``-1`` for ids not in the index."""
        return np.asarray([self._pos.get(str(p), -1) for p in ids], dtype=np.int64)

    def extend(self, ids) -> ItemIndex:
        """A new index: every current id keeps its position, unseen ``ids`` are appended.

        Used for warm starts when the catalogue grew: old embedding rows stay valid.
        """
        new = [str(p) for p in ids if str(p) not in self._pos]
        return ItemIndex(list(self.ids) + list(dict.fromkeys(new)))

    def sha256(self) -> str:
        """Hash of the ordered id list; a checkpoint is only valid for the same catalogue."""
        return hashlib.sha256("\x1f".join(self.ids).encode()).hexdigest()


@dataclass
class ItemAttributes:
    """Per-item side information, aligned with an :class:`ItemIndex` (length ``n_items``)."""

    names: np.ndarray  # object [n_items] product names ("" unknown)
    categories: np.ndarray  # object [n_items] category strings ("" unknown)
    prices: np.ndarray  # float64 [n_items] typical unit price (nan unknown)
    # optional float32 [n_items, dim] pretrained text-encoder vectors of name + description
    # (shop_recs.ml.text); None = the model reads names, categories and prices only
    text_vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def take(self, items: np.ndarray) -> ItemAttributes:
        vecs = self.text_vectors[items] if self.text_vectors is not None else None
        return ItemAttributes(self.names[items], self.categories[items], self.prices[items], vecs)

    @classmethod
    def empty(cls, n_items: int) -> ItemAttributes:
        return cls(np.full(n_items, "", dtype=object), np.full(n_items, "", dtype=object),
                   np.full(n_items, np.nan))


@dataclass
class Baskets:
    """Orders as sets of item indices in CSR layout, sorted by time is *not* assumed.

    Basket ``i`` holds ``items[indptr[i]:indptr[i+1]]`` (distinct items, int32).
    """

    indptr: np.ndarray  # int64 [n_baskets + 1]
    items: np.ndarray  # int32 [nnz]
    timestamps: np.ndarray  # int64 [n_baskets] epoch seconds (UTC)
    customers: np.ndarray  # int64 [n_baskets] customer index, -1 = anonymous
    n_items: int  # catalogue size the item indices refer to

    def __post_init__(self) -> None:
        self.indptr = np.asarray(self.indptr, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int32)
        self.timestamps = np.asarray(self.timestamps, dtype=np.int64)
        self.customers = np.asarray(self.customers, dtype=np.int64)
        n = len(self.indptr) - 1
        if n < 0 or len(self.timestamps) != n or len(self.customers) != n:
            raise ValueError("indptr, timestamps and customers disagree on the basket count")
        if len(self.items) and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise ValueError("item index out of range")

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.indptr)

    def basket(self, i: int) -> np.ndarray:
        return self.items[self.indptr[i]:self.indptr[i + 1]]

    def as_list(self) -> list[np.ndarray]:
        return np.split(self.items, self.indptr[1:-1])

    def select(self, rows: np.ndarray) -> Baskets:
        """The baskets at ``rows`` (indices or boolean mask), in that order."""
        rows = np.arange(len(self))[rows] if np.asarray(rows).dtype == bool else np.asarray(rows)
        sizes = self.sizes[rows]
        indptr = np.concatenate([[0], np.cumsum(sizes)])
        if len(rows):
            starts = np.repeat(self.indptr[rows], sizes)
            offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], sizes)
            items = self.items[starts + offsets]
        else:
            items = np.zeros(0, dtype=np.int32)
        return Baskets(indptr, items, self.timestamps[rows], self.customers[rows], self.n_items)

    def remap_items(self, mapping: np.ndarray, n_items: int) -> Baskets:
        """Apply ``mapping`` (old index -> new index, -1 drops the item) to every basket."""
        new = mapping[self.items]
        keep = new >= 0
        counts = np.add.reduceat(keep, self.indptr[:-1]) if len(self.items) else np.zeros(len(self))
        counts = np.where(self.sizes > 0, counts, 0)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        return Baskets(indptr, new[keep], self.timestamps, self.customers, n_items)

    def item_counts(self) -> np.ndarray:
        """Number of baskets containing each item, int64 [n_items]."""
        return np.bincount(self.items, minlength=self.n_items).astype(np.int64)

    def basket_ids(self) -> np.ndarray:
        """Basket index of every entry of ``items`` (int64 [nnz])."""
        return np.repeat(np.arange(len(self)), self.sizes)


def baskets_from_frame(df: pd.DataFrame) -> tuple[Baskets, ItemIndex, ItemAttributes]:
    """Aggregate order lines into baskets, one entry per (order_id, product_id).

    ``df`` has the columns of ``shop_recs.ml.orders.COLUMNS`` (at least order_id, product_id
    and timestamp). Baskets come out sorted by (timestamp, order_id); items by product id.
    Each item's name, category and price are its most recent ones (what a shop's product table
    holds, and what ``shop_recs.data`` reads from it).
    """
    if len(df) == 0:
        raise DataError("no order lines")
    frame = pd.DataFrame({
        "order_id": df["order_id"].astype(str).to_numpy(),
        "product_id": df["product_id"].astype(str).to_numpy(),
        "ts": _epoch_seconds(df["timestamp"]),
        "customer_id": (df["customer_id"].astype(str) if "customer_id" in df else "")
    })
    ids = np.sort(frame["product_id"].unique())
    index = ItemIndex(ids)
    frame["item"] = np.searchsorted(ids, frame["product_id"].to_numpy()).astype(np.int32)

    orders = frame.groupby("order_id", sort=False).agg(ts=("ts", "min"),
                                                        customer=("customer_id", "first"))
    orders = orders.reset_index().sort_values(["ts", "order_id"], kind="stable")
    order_pos = pd.Series(np.arange(len(orders)), index=orders["order_id"].to_numpy())
    frame["basket"] = order_pos.loc[frame["order_id"].to_numpy()].to_numpy()
    pairs = frame[["basket", "item"]].drop_duplicates().sort_values(["basket", "item"])
    counts = np.bincount(pairs["basket"].to_numpy(), minlength=len(orders))
    indptr = np.concatenate([[0], np.cumsum(counts)])

    cust = orders["customer"].to_numpy().astype(str)
    known = cust != ""
    customers = np.full(len(orders), -1, dtype=np.int64)
    customers[known] = pd.factorize(cust[known], sort=True)[0]

    baskets = Baskets(indptr, pairs["item"].to_numpy(), orders["ts"].to_numpy(), customers,
                      len(index))
    return baskets, index, _attributes(df, frame, len(index))


def _epoch_seconds(ts: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(ts, utc=True)
    return (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def _attributes(df: pd.DataFrame, frame: pd.DataFrame, n_items: int) -> ItemAttributes:
    attrs = ItemAttributes.empty(n_items)
    order = np.argsort(frame["ts"].to_numpy(), kind="stable")
    items = frame["item"].to_numpy()[order]
    for col, target in (("product_name", attrs.names), ("category", attrs.categories)):
        if col in df:
            values = df[col].fillna("").astype(str).to_numpy()[order]
            nonempty = values != ""
            # later rows overwrite earlier ones: the most recent non-empty value wins
            target[items[nonempty]] = values[nonempty]
    if "unit_price" in df:
        price = pd.to_numeric(df["unit_price"], errors="coerce").to_numpy(dtype=np.float64)[order]
        known = np.isfinite(price)
        attrs.prices[items[known]] = price[known]  # the latest line's price wins
    return attrs
