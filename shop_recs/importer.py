"""Bulk import of historical orders from CSV files into ``Interaction`` purchases.

Usage::

    from shop_recs.importer import import_orders
    result = import_orders(["orders.csv.gz"], fmt="generic")
    result.imported, result.report.skipped

Files are streamed in chunks (``SHOP_RECS["IMPORT_CHUNK_SIZE"]`` lines), each chunk
written in one transaction. Every line carries a stable key (see
``shop_recs.ml.orders``), unique in the database, so importing a file again, or
re-running after a crash midway, adds nothing twice.

Products are matched by code (the adapter's ``sku`` field), ignoring case: the UCI
files write some codes in two cases (``85123A`` / ``85123a``) for one product, so
codes are folded to upper case and the folded lines counted (``case_folded``).

What the import may write into the catalogue depends on whose catalogue it is:

* shop_recs' own ``Product`` (no host catalogue): products are created by code and
  their name and price follow the newest line read (``create_products`` and
  ``update_products`` default to true).
* a host's product model (``SHOP_RECS_PRODUCT_MODEL``): the catalogue is the shop's.
  Lines of products it does not have are skipped and counted
  (``report.skipped["unknown_product"]``, ``products_skipped``), and names and prices
  are never changed. ``create_products=True`` creates the missing ones through the
  adapter's ``new_product(..., hidden=True)`` hook (valid, not shown to shoppers), and
  ``update_products=True`` overwrites names and prices with the file's newest.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from django.db import connections, router, transaction
from django.db.models import Max

from shop_recs.conf import recs_settings
from shop_recs.ingest import pseudonymise
from shop_recs.ml.orders import CleaningReport, iter_clean_chunks
from shop_recs.models import Interaction
from shop_recs.products import get_adapter

logger = logging.getLogger(__name__)

# Stay under SQLite's historical limit of 999 parameters per statement.
LOOKUP_BATCH = 900
INSERT_BATCH = 10_000
INSERT_FIELDS = ("product", "kind", "visitor_id", "order_id", "quantity", "unit_price",
                 "timestamp", "source", "widget", "line_key")


@dataclass
class ImportResult:
    report: CleaningReport = field(default_factory=CleaningReport)
    imported: int = 0
    already_imported: int = 0
    # distinct orders this import wrote lines of, counted by the database once at the end: a
    # set of every order id would grow with the file (5M orders at 20M lines, issue 15)
    orders: int = 0
    products_created: int = 0
    products_updated: int = 0
    products_skipped: int = 0  # codes not in a host catalogue (their lines are skipped)
    case_folded: int = 0  # lines whose product code was folded to upper case
    seconds: float = 0.0

    @property
    def rate(self):
        return self.report.read / self.seconds if self.seconds else 0.0


def _batches(items, size=LOOKUP_BATCH):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _money(value):
    if value != value:  # NaN: no price on the line
        return None
    return Decimal(repr(round(float(value), 2)))


class _Importer:
    """State kept across chunks: known products, their newest name and price, visitor ids.

    Lines are written with one ``executemany`` per batch rather than through model
    instances: the import is dominated by per-object ORM overhead otherwise.
    """

    def __init__(self, result, create_products=None, update_products=None):
        self.result = result
        self.adapter = get_adapter()
        self.model = self.adapter.model
        own = self.adapter.is_own_model()
        self.create = own if create_products is None else create_products
        self.update = own if update_products is None else update_products
        self.hidden = not own  # products created in a host catalogue are not shown
        self.sku_field = self.adapter.lookup_field()
        self.pk_values = {}  # sku -> primary key as the database stores it
        self.missing = set()  # codes the host catalogue does not have (not created)
        self.newest = {}  # sku -> (timestamp, name, price, category) of the newest line
        self.visitors = {}
        self._codes = None  # see codes()
        self.run_from, self.file_from, self.path = None, 0, None  # see start()

    def codes(self):
        """Every product's code folded to upper case -> its primary keys (pk order), read
        once per import. Matching by ``UPPER(code) IN (...)`` cannot use an index: a query
        per batch of codes scanned the whole catalogue (~1,100 scans of 10^6 rows for a
        catalogue of 10^6 products)."""
        if self._codes is None:
            self._codes = {}
            rows = (self.model._default_manager.order_by("pk")
                    .values_list("pk", self.sku_field).iterator(chunk_size=10_000))
            for pk, code in rows:
                if code is not None:
                    self._codes.setdefault(str(code).upper(), []).append(pk)
        return self._codes

    def by_code(self, codes):
        """Products whose code is among ``codes`` (upper case), ignoring the stored case;
        yields ``(code, product)`` in primary key order."""
        if self.sku_field == "pk":
            return ((str(p.pk), p) for p in self.model._default_manager.filter(pk__in=codes))
        index = self.codes()
        wanted = {pk: code for code in codes for pk in index.get(code, ())}
        if not wanted:
            return iter(())
        queryset = self.model._default_manager.filter(pk__in=list(wanted)).order_by("pk")
        return ((wanted[p.pk], p) for p in queryset)

    def _field(self, model, name):
        try:
            return model._meta.get_field(name) if name else None
        except Exception:  # noqa: BLE001 (pk, or a field the host model lacks)
            return model._meta.pk if name == "pk" else None

    def fit(self, path, chunk):
        """Drop the lines whose values the database cannot hold, as bad lines (counted and
        reported like any other), and cut names and categories to their columns: a hostile
        or broken file never fails with a database error halfway through an import, and
        never stores a row that cannot be read back (SQLite keeps any number it is given).
        """
        chunk = chunk.copy()
        for name in ("order_id", "product_id", "customer_id", "product_name", "category"):
            chunk[name] = chunk[name].str.replace("\x00", "", regex=False)  # PostgreSQL refuses NUL
        if self.sku_field != "pk":  # one product per code whatever its case (85123a = 85123A)
            folded = chunk["product_id"].str.upper()
            self.result.case_folded += int((folded != chunk["product_id"]).sum())
            chunk["product_id"] = folded
        limits = []
        for model, name in ((Interaction, "unit_price"),
                            (self.model, self.adapter.writable("price"))):
            field = self._field(model, name)
            if getattr(field, "max_digits", None) is not None:
                limits.append(10 ** (field.max_digits - field.decimal_places))
        price = chunk["unit_price"].round(2)
        checks = [
            ("missing_order_id", chunk["order_id"] == ""),
            ("missing_product_id", chunk["product_id"] == ""),
            ("bad_unit_price", price.notna() & ~(price.abs() < min(limits, default=np.inf))),
        ]
        for column, model, name in (("order_id", Interaction, "order_id"),
                                    ("product_id", self.model, self.sku_field)):
            length = getattr(self._field(model, name), "max_length", None)
            if length:
                checks.append((f"{column}_too_long", chunk[column].str.len() > length))
        keep = np.ones(len(chunk), dtype=bool)
        for reason, mask in checks:
            hit = mask.to_numpy(dtype=bool) & keep
            self.result.report.bad(path, chunk.loc[hit, "line_no"], reason)
            keep &= ~hit
        self.result.report.kept -= int((~keep).sum())
        chunk = chunk[keep]
        for column, key in (("product_name", "name"), ("category", "category")):
            length = getattr(self._field(self.model, self.adapter.writable(key)), "max_length",
                             None)
            if length:
                chunk[column] = chunk[column].str.slice(0, length)
        return chunk

    def track_products(self, chunk):
        newest = chunk.sort_values("timestamp", kind="stable").drop_duplicates(
            "product_id", keep="last")
        for sku, ts, name, price, category in zip(
            newest["product_id"], newest["timestamp"], newest["product_name"],
            newest["unit_price"].tolist(), newest["category"],
        ):
            known = self.newest.get(sku)
            if known is None or ts >= known[0]:
                self.newest[sku] = (ts, name or (known[1] if known else ""), price, category)

    def ensure_products(self, skus):
        """Find the products among ``skus``; create the missing ones when allowed."""
        connection = connections[router.db_for_write(self.model)]
        pk_field = self.model._meta.pk
        unknown = [sku for sku in set(skus)
                   if sku not in self.pk_values and sku not in self.missing]
        found = {}
        if self.sku_field == "pk":
            for batch in _batches(unknown):
                found.update((code, p.pk) for code, p in self.by_code(batch))
        else:
            index = self.codes()
            found = {sku: index[sku][-1] for sku in unknown if sku in index}
            # products saved since codes() read the catalogue (by the shop, as the import
            # runs), in the file's case: one indexed lookup before creating any
            for batch in _batches(sku for sku in unknown if sku not in found):
                for pk, code in (self.model._default_manager.order_by("pk")
                                 .filter(**{f"{self.sku_field}__in": batch})
                                 .values_list("pk", self.sku_field)):
                    index.setdefault(code, []).append(pk)
                    found[code] = pk
        to_create = []
        for sku in unknown:
            if sku in found:
                continue
            product = None
            if self.create:
                _, name, price, category = self.newest[sku]
                product = self.adapter.new_product(sku, name or sku, _money(price), category,
                                                   hidden=self.hidden)
            if product is None:
                self.missing.add(sku)
            else:
                to_create.append((sku, product))
        if to_create:
            self.adapter.save_new_products([p for _, p in to_create])
            found.update((sku, p.pk) for sku, p in to_create)
            if self.sku_field != "pk":
                for sku, p in to_create:
                    self.codes().setdefault(sku, []).append(p.pk)
        self.result.products_created += len(to_create)
        self.result.products_skipped = len(self.missing)
        for sku, pk in found.items():
            self.pk_values[str(sku)] = pk_field.get_db_prep_value(pk, connection)

    def update_products(self):
        """Give every product seen the name and price of its newest line."""
        name_field, price_field = self.adapter.writable("name"), self.adapter.writable("price")
        fields = [f for f in (name_field, price_field) if f]
        if not fields or not self.update:
            return
        for batch in _batches(self.newest):
            changed = []
            for code, product in self.by_code(batch):
                _, name, price, _ = self.newest[code]
                price = _money(price)
                dirty = False
                if name_field and name and getattr(product, name_field) != name:
                    setattr(product, name_field, name)
                    dirty = True
                if price_field and price is not None and getattr(product, price_field) != price:
                    setattr(product, price_field, price)
                    dirty = True
                if dirty:
                    changed.append(product)
            self.model.objects.bulk_update(changed, fields)
            self.result.products_updated += len(changed)

    def visitor(self, customer_id):
        if not customer_id:
            return ""
        if customer_id not in self.visitors:
            self.visitors[customer_id] = pseudonymise("customer", customer_id)
        return self.visitors[customer_id]

    def start(self, path):
        """Note where the rows of this run (and of the file ``path``) start, so that a line
        found in the database can be told apart: imported before, or read twice now."""
        top = Interaction.objects.aggregate(top=Max("pk"))["top"] or 0
        if self.run_from is None:
            self.run_from = top
        self.file_from, self.path = top, path

    def write(self, chunk):
        self.track_products(chunk)
        # The database is the set of lines read so far (flat memory at any size): a line
        # stored before this run was already imported; one stored by this run is a repeat
        # of a line of this file or of an earlier one (the reader keeps no set of keys).
        stored = {}
        for batch in _batches(chunk["line_key"].tolist()):
            stored.update(Interaction.objects.filter(line_key__in=batch).values_list(
                "line_key", "pk"))
        if stored:
            chunk = chunk[~chunk["line_key"].isin(stored)]
            pks = np.fromiter(stored.values(), dtype=np.int64, count=len(stored))
            before = int((pks <= self.run_from).sum())
            this_file = int((pks > self.file_from).sum())
            self.result.already_imported += before
            report = self.result.report
            report.skip("duplicate_line", this_file)
            report.skip("in_earlier_file", len(pks) - before - this_file)
            report.kept -= len(pks) - before
        if chunk.empty:
            return
        self.ensure_products(chunk["product_id"].unique())
        unknown = chunk["product_id"].isin(self.missing)
        if unknown.any():
            self.result.report.skip("unknown_product", int(unknown.sum()))
            self.result.report.kept -= int(unknown.sum())
            chunk = chunk[~unknown]
            if chunk.empty:
                return
        connection = connections[router.db_for_write(Interaction)]
        adapt = connection.ops.adapt_datetimefield_value
        rows = [
            (self.pk_values[sku], Interaction.Kind.PURCHASE.value, self.visitor(customer),
             order_id, quantity, None if price != price else round(price, 3), adapt(ts),
             Interaction.Source.IMPORT.value, "", key)
            for order_id, sku, customer, quantity, price, key, ts in zip(
                chunk["order_id"].tolist(), chunk["product_id"].tolist(),
                chunk["customer_id"].tolist(),  # lists: iterating a Series boxes each value
                chunk["quantity"].tolist(), chunk["unit_price"].tolist(),
                chunk["line_key"].tolist(), chunk["timestamp"].dt.to_pydatetime(),
            )
        ]
        with connection.cursor() as cursor:
            for start in range(0, len(rows), INSERT_BATCH):
                cursor.executemany(_insert_sql(connection), rows[start:start + INSERT_BATCH])
        self.result.imported += len(rows)


def _insert_sql(connection):
    meta = Interaction._meta
    columns = [meta.get_field(name).column for name in INSERT_FIELDS]
    quote = connection.ops.quote_name
    return (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(map(quote, columns))}) "  # nosec B608 # names only
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({quote(meta.get_field('line_key').column)}) DO NOTHING"
    )


def import_orders(paths, fmt="generic", chunk_size=None,
                  progress: Callable[[ImportResult], None] | None = None, *,
                  create_products: bool | None = None,
                  update_products: bool | None = None) -> ImportResult:
    """Import order lines from ``paths`` (plain or gzip CSV) and return the counts.

    ``create_products`` / ``update_products``: see the module docstring (None: true for
    shop_recs' own Product, false for a host's catalogue). Raises
    ``shop_recs.ml.orders.OrderFileError`` before writing anything when a file cannot be
    read or lacks required columns.
    """
    paths = list(paths)
    result = ImportResult()
    importer = _Importer(result, create_products, update_products)
    started = time.monotonic()
    chunk_size = chunk_size or recs_settings.IMPORT_CHUNK_SIZE
    chunks = iter_clean_chunks(paths, fmt, chunk_size, result.report,
                               non_product_codes=recs_settings.NON_PRODUCT_CODES,
                               remember_lines=False)
    for path, chunk in chunks:
        if path != importer.path:
            importer.start(path)
        if not chunk.empty:
            chunk = importer.fit(path, chunk)
        if not chunk.empty:
            with transaction.atomic():
                importer.write(chunk)
        result.seconds = time.monotonic() - started
        if progress:
            progress(result)
    with transaction.atomic():
        importer.update_products()
    if importer.run_from is not None and result.imported:
        result.orders = Interaction.objects.filter(
            pk__gt=importer.run_from, source=Interaction.Source.IMPORT).order_count()
    result.seconds = time.monotonic() - started
    logger.info("imported %d lines from %d file(s) in %.1f s", result.imported,
                len(paths), result.seconds)
    return result
