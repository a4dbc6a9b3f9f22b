"""Stored fallback lists: what a widget shows beyond a product's bundles and FBT list.

Usage::

    from shop_recs import fallbacks

    fallbacks.refresh()              # from the stored orders (after an import, on schedule)
    fallbacks.refresh(extract)       # from baskets already extracted (a training run)

For every active product: the products bought in the same orders among its
``SHOP_RECS["FALLBACK_ORDERS"]`` most recent orders (``cooccurrence``: most orders
together first, then the more often bought), then the bestsellers of its category over the
last ``SHOP_RECS["POPULAR_LINES"]`` purchase lines (``popular``), up to
``SHOP_RECS["CANDIDATES"]`` entries. A product with no orders still gets its category's
bestsellers. The rows replace the previous ones in one transaction and are read by
``shop_recs.ranking`` with the same indexed query as the published lists, so a request never
aggregates interactions.

The counting is sparse (SciPy): cost grows with order lines, not with the catalogue squared.
"""

import logging
import time
from dataclasses import dataclass

import numpy as np
from django.db import router, transaction
from scipy import sparse

from shop_recs import bulk, data
from shop_recs.conf import recs_settings
from shop_recs.ml.topk import member
from shop_recs.models import FallbackRecommendation
from shop_recs.products import get_adapter
from shop_recs.serving_cache import invalidate

logger = logging.getLogger(__name__)

COOCCURRENCE, POPULAR = "cooccurrence", "popular"
TASK_NAME = "shop_recs.refresh_fallbacks"  # shop_recs.tasks.refresh_fallbacks
ROW_CHUNK = 4096  # anchors whose co-occurrence rows are counted at once
WRITE_FIELDS = ("product", "recommended", "rank", "method", "score", "evidence")


@dataclass
class Lists:
    """Fallback lists as parallel arrays, one entry per (anchor, rank)."""

    anchor: np.ndarray  # object: product pks
    item: np.ndarray  # object: product pks
    rank: np.ndarray  # int, from 1
    method: np.ndarray  # object: COOCCURRENCE or POPULAR
    together: np.ndarray  # int: orders with both (0 for popular)
    bought: np.ndarray  # int: orders of the item (co-occurrence) / recent lines (popular)

    def __len__(self):
        return len(self.rank)


def _recent_orders_per_item(orders_items, keep):
    """Items x orders incidence (CSR, 0/1) keeping each item's ``keep`` latest orders.

    ``orders_items`` is the orders x items incidence; orders are sorted by time, so the
    latest are the highest indices.
    """
    by_item = orders_items.T.tocsr()
    by_item.sort_indices()
    counts = np.diff(by_item.indptr)
    ends = np.repeat(by_item.indptr[1:], counts)
    mask = (ends - np.arange(by_item.nnz)) <= keep
    rows = np.repeat(np.arange(by_item.shape[0]), counts)[mask]
    return sparse.csr_matrix((np.ones(int(mask.sum()), dtype=np.int32),
                              (rows, by_item.indices[mask])), shape=by_item.shape)


def _cooccurrence(baskets, keep, limit, allowed):
    """Per ``allowed`` anchor item: up to ``limit`` ``allowed`` items bought in the same
    orders as ``(anchors, items, together, support)``, best first, anchors ascending.

    Ties on ``together`` go to the item in more orders overall, then the lower index.
    """
    n = baskets.n_items
    n_orders = len(baskets)
    order_of_line = np.repeat(np.arange(n_orders), np.diff(baskets.indptr))
    orders_items = sparse.csr_matrix(
        (np.ones(len(baskets.items), dtype=np.int32), (order_of_line, baskets.items)),
        shape=(n_orders, n))
    orders_items.sum_duplicates()
    orders_items.data[:] = 1  # a product twice in an order counts once
    support = np.asarray(orders_items.sum(axis=0)).ravel()
    recent = _recent_orders_per_item(orders_items, keep)
    scale = int(support.max(initial=0)) + 1
    anchors, items, together = [], [], []
    for start in range(0, n, ROW_CHUNK):
        block = (recent[start:start + ROW_CHUNK] @ orders_items).tocsr()
        block.sort_indices()
        rows = np.repeat(np.arange(start, start + block.shape[0]), np.diff(block.indptr))
        cols, counts = block.indices, block.data
        # One int64 key per entry, smallest first: more orders together, then more orders
        # overall, then the lower index. Entries off the list are pushed to the end.
        key = (-(counts.astype(np.int64) * scale + support[cols])) * n + cols
        key[(rows == cols) | ~allowed[cols]] = np.iinfo(np.int64).max
        for r in range(block.shape[0]):
            if not allowed[start + r]:
                continue
            lo, hi = block.indptr[r], block.indptr[r + 1]
            row_key = key[lo:hi]
            if hi - lo > limit:
                best = np.argpartition(row_key, limit)[:limit]
                best = best[np.argsort(row_key[best])]
            else:
                best = np.argsort(row_key)
            best = best[row_key[best] != np.iinfo(np.int64).max] + lo
            anchors.append(np.full(len(best), start + r, dtype=np.int64))
            items.append(cols[best])
            together.append(counts[best])
    if not anchors:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, support
    return (np.concatenate(anchors), np.concatenate(items), np.concatenate(together), support)


def _popular(baskets, window):
    """Purchase counts of each item over the last ``window`` lines (baskets are time-sorted)."""
    recent_items = baskets.items[max(0, len(baskets.items) - window):]
    return np.bincount(recent_items, minlength=baskets.n_items)


def _catalogue():
    """``(pk, category)`` of every active product, streamed."""
    adapter = get_adapter()
    category = adapter.fields["category"]
    queryset = adapter.model._default_manager.filter(adapter.available_q()).order_by()
    if category:
        rows = queryset.values_list("pk", category)
        return [(pk, str(value or "")) for pk, value in rows.iterator(chunk_size=20_000)]
    return [(pk, "") for pk in queryset.values_list("pk", flat=True).iterator(chunk_size=20_000)]


def compute(extract, catalogue, *, limit=None, keep=None, window=None):
    """Fallback :class:`Lists` for ``catalogue`` (``[(pk, category)]`` of active products)
    from ``extract`` (``shop_recs.data.Extract``, or None for a shop without orders)."""
    limit = limit or recs_settings.CANDIDATES
    keep = keep or recs_settings.FALLBACK_ORDERS
    window = window or recs_settings.POPULAR_LINES
    pks = np.asarray(extract.pks if extract is not None else [], dtype=object)
    position = {str(pk): i for i, pk in enumerate(pks)}
    active = np.zeros(len(pks), dtype=bool)
    category_of = np.full(len(pks), "", dtype=object)
    for pk, category in catalogue:
        i = position.get(str(pk))
        if i is not None:
            active[i] = True
            category_of[i] = category
    out = {"anchor": [], "item": [], "rank": [], "method": [], "together": [], "bought": []}
    n = len(pks)
    listed = np.zeros(0, dtype=np.int64)  # anchor * n + item of every co-occurrence entry
    if extract is not None and len(extract.baskets):
        anchors, items, together, support = _cooccurrence(extract.baskets, keep, limit, active)
        rank = np.arange(len(anchors)) - np.searchsorted(anchors, anchors, side="left") + 1
        out["anchor"].append(pks[anchors])
        out["item"].append(pks[items])
        out["rank"].append(rank)
        out["method"].append(np.full(len(rank), COOCCURRENCE, dtype=object))
        out["together"].append(together)
        out["bought"].append(support[items])
        listed = np.sort(anchors * n + items)
        popular = _popular(extract.baskets, window)
    else:
        popular = np.zeros(0, dtype=np.int64)
    fill = _category_fill(catalogue, position, listed, n, active, category_of, popular, limit)
    if fill is not None:
        anchor, item, rank = fill
        out["anchor"].append(anchor)
        out["item"].append(pks[item])
        out["rank"].append(rank)
        out["method"].append(np.full(len(rank), POPULAR, dtype=object))
        out["together"].append(np.zeros(len(rank), dtype=np.int64))
        out["bought"].append(popular[item].astype(np.int64))
    if not out["rank"]:
        empty = np.zeros(0, dtype=object)
        return Lists(empty, empty, np.zeros(0, int), empty, np.zeros(0, int), np.zeros(0, int))
    return Lists(*(np.concatenate(out[key]) for key in
                   ("anchor", "item", "rank", "method", "together", "bought")))


def _category_fill(catalogue, position, listed, n, active, category_of, popular, limit):
    """The category bestsellers after each catalogue product's co-occurrence list, in
    catalogue order: (anchor pks, item indices, ranks), or None. Every product of a
    category is offered the category's ``limit + 1`` best sellers of the recent lines (one
    spare: the product itself may be among them), less itself and what its list holds,
    ranked on from its list's length up to ``limit``. Arrays, not a loop per product: a
    million products are 30 million entries (issue 15)."""
    sellers = np.flatnonzero(popular > 0)
    sellers = sellers[active[sellers] & (category_of[sellers] != "")]
    sellers = sellers[np.argsort(-popular[sellers], kind="stable")]  # ties: lower index
    if not len(sellers) or not catalogue:
        return None
    names, code = np.unique(category_of[sellers].astype(str), return_inverse=True)
    by_cat = np.argsort(code, kind="stable")  # each category's sellers, best first
    first = np.searchsorted(code[by_cat], np.arange(len(names)))
    nth = np.arange(len(by_cat)) - first[code[by_cat]]
    best = np.full((len(names), limit + 1), -1, dtype=np.int64)
    keep = nth <= limit
    best[code[by_cat][keep], nth[keep]] = sellers[by_cat][keep]
    pk_col = np.fromiter((pk for pk, _ in catalogue), dtype=object, count=len(catalogue))
    cats = np.asarray([c for _, c in catalogue], dtype=str)
    row = np.minimum(np.searchsorted(names, cats), len(names) - 1)
    has = (cats != "") & (names[row] == cats)
    anchor = np.fromiter((position.get(str(pk), -1) for pk in pk_col[has]), dtype=np.int64,
                         count=int(has.sum()))
    cand = best[row[has]]  # [products, limit + 1], -1 pads
    owner = np.maximum(anchor, 0)[:, None] * n + np.maximum(cand, 0)
    taken = member(listed, owner.ravel()).reshape(owner.shape) & (anchor[:, None] >= 0)
    ok = (cand >= 0) & (cand != anchor[:, None]) & ~taken
    start = np.zeros(len(anchor), dtype=np.int64)  # its co-occurrence list's length
    if len(listed):
        counts = np.bincount(listed // n, minlength=n)
        start[anchor >= 0] = counts[anchor[anchor >= 0]]
    rank = start[:, None] + np.cumsum(ok, axis=1)
    ok &= rank <= limit
    r, c = np.nonzero(ok)
    return pk_col[has][r], cand[r, c], rank[r, c]


def write(lists):
    """Replace every stored fallback row with ``lists``, in one transaction; the serving
    cache forgets its answers once it commits."""
    using = router.db_for_write(FallbackRecommendation)
    with transaction.atomic(using=using):
        FallbackRecommendation.objects.using(using).all().delete()
        # shop_recs.bulk: COPY on PostgreSQL, no model instances (issue 15: one row per
        # product and candidate, 20 M at 10^6 products; bulk_create took most of a run's time)
        # the evidence as the text json.dumps gives for {"orders_together": t,
        # "purchases": b}, formatted: a tenth of the cost of serialising 20 M dicts
        bulk.write_rows(FallbackRecommendation, WRITE_FIELDS, (
            (a, i, r, m, float(t if m == COOCCURRENCE else b),
             bulk.JSONText(f'{{"orders_together": {t}, "purchases": {b}}}'))
            for a, i, r, m, t, b in zip(lists.anchor, lists.item, lists.rank.tolist(),
                                        lists.method, lists.together.tolist(),
                                        lists.bought.tolist())), using=using)
        transaction.on_commit(invalidate, using=using)
    return len(lists)


def refresh(extract=None):
    """Recompute and store every fallback list; returns a summary dict.

    ``extract`` (``shop_recs.data.Extract``) spares reading the orders again; without it
    every stored purchase is read.
    """
    started = time.monotonic()
    if extract is None:
        try:
            extract = data.extract_baskets(min_orders=1, min_products=1)
        except data.NotEnoughData:
            extract = None
    catalogue = _catalogue()
    lists = compute(extract, catalogue)
    rows = write(lists)
    summary = {"rows": rows, "products": len({str(a) for a in lists.anchor}),
               "cooccurrence": int((lists.method == COOCCURRENCE).sum()) if rows else 0,
               "seconds": round(time.monotonic() - started, 2)}
    logger.info("stored %(rows)d fallback rows for %(products)d products in %(seconds)s s",
                summary)
    return summary


def refresh_soon():
    """Queue a refresh on the worker (after an erasure, for instance); refresh here when the
    broker cannot take it, so the lists never keep counting erased orders."""
    from celery import current_app  # noqa: PLC0415 (the host project configures the app)

    try:
        current_app.send_task(TASK_NAME)  # by name: shop_recs.tasks imports this module
    except Exception:  # noqa: BLE001 (any broker error)
        logger.warning("could not queue a fallback refresh; refreshing now", exc_info=True)
        refresh()
