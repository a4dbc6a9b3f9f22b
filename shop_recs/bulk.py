"""Writing millions of rows of one model at bulk speed, inside the caller's transaction.

    from shop_recs import bulk
    written = bulk.write_rows(FallbackRecommendation,
                              ("product", "recommended", "rank", "method", "score", "evidence"),
                              rows)  # an iterable of tuples in that order

``update_rows`` sets fields of existing rows by primary key the same way. A caller that
writes millions of JSON documents of one shape may pass each as :class:`JSONText`, already
serialised (a format string costs a fraction of ``json.dumps``).
No model instances are made (10 M of them do not fit in memory, and their per-object cost is
most of ``bulk_create``'s time): COPY on PostgreSQL (psycopg 3's ``cursor.copy``), one
``executemany`` per ``batch`` rows elsewhere. Values are what the fields hold in Python:
a related object's primary key for a foreign key (each distinct key is prepared for the
database once), a dict for a ``JSONField`` (serialised with the field's encoder), a
datetime, date or Decimal for those fields, plain numbers and text otherwise. Every column
without a database default must be given. Used by ``shop_recs.publish`` (FBT rows and
proposed bundles of a run) and ``shop_recs.fallbacks``.
"""

import json

from django.db import connections, models, router
from django.db.backends.base.operations import BaseDatabaseOperations

__all__ = ["write_rows", "update_rows", "JSONText", "BATCH"]

BATCH = 5_000
_ADAPTED = {"DateTimeField", "DateField", "TimeField", "DecimalField", "DurationField",
            "UUIDField"}


class JSONText(str):
    """A ``JSONField`` value serialised by the caller: the text ``json.dumps`` gives for it.
    Written as it is wherever the database is given JSON as text (COPY, and every backend
    that keeps Django's ``adapt_json_value``), parsed again for one that adapts it itself."""


def _json_preparer(field, connection, copy):
    """Python value (or :class:`JSONText`) of a ``JSONField`` -> what the driver is given."""
    if copy:  # COPY takes the text of the JSON document
        return lambda v, enc=field.encoder: (v if type(v) is JSONText
                                             else json.dumps(v, cls=enc))
    if type(connection.ops).adapt_json_value is BaseDatabaseOperations.adapt_json_value:
        return lambda v, f=field: (v if type(v) is JSONText
                                   else f.get_db_prep_value(v, connection))
    return lambda v, f=field: f.get_db_prep_value(
        json.loads(v) if type(v) is JSONText else v, connection)


def _preparers(fields, connection, copy):
    """One function per field: Python value -> what the database driver is given."""
    out = []
    for field in fields:
        if isinstance(field, models.JSONField):
            out.append(_json_preparer(field, connection, copy))
        elif not copy and field.get_internal_type() in _ADAPTED:
            # dates, times and decimals as the backend stores them (COPY's driver adapts them)
            out.append(lambda v, f=field: f.get_db_prep_value(v, connection))
        elif field.is_relation:
            target = field.target_field
            cache = {}  # pk -> stored form: a field call per row is the cost otherwise

            def prep(v, cache=cache, target=target):
                stored = cache.get(v)
                if stored is None:
                    stored = cache[v] = target.get_db_prep_value(v, connection)
                return stored
            out.append(prep)
        else:
            out.append(None)  # numbers and text go to the driver as they are
    return out


def _target(model, field_names, using, batch):
    """(connection, model meta, fields, batch size) of a bulk write to ``model``."""
    connection = connections[using or router.db_for_write(model)]
    meta = model._meta
    return connection, meta, [meta.get_field(name) for name in field_names], batch or BATCH


def write_rows(model, field_names, rows, using=None, batch=None):
    """Write ``rows`` (tuples of ``field_names``' values) into ``model``'s table; returns
    the count. Runs inside the caller's transaction: nobody sees the rows before it commits.
    """
    connection, meta, fields, batch = _target(model, field_names, using, batch)
    quote = connection.ops.quote_name
    table, columns = quote(meta.db_table), ", ".join(quote(f.column) for f in fields)
    count = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor
        copy = connection.vendor == "postgresql" and hasattr(raw, "copy")
        preps = list(enumerate(_preparers(fields, connection, copy)))
        preps = [(i, p) for i, p in preps if p is not None]

        def prepared():
            for row in rows:
                row = list(row)
                for i, prep in preps:
                    row[i] = prep(row[i])
                yield row
        if copy:
            copy_sql = f"COPY {table} ({columns}) FROM STDIN"  # nosec B608 # names only
            with raw.copy(copy_sql) as out:
                for row in prepared():
                    out.write_row(row)
                    count += 1
            return count
        sql = (f"INSERT INTO {table} ({columns}) "  # nosec B608 # names only
               f"VALUES ({', '.join(['%s'] * len(fields))})")
        pending = []
        for row in prepared():
            pending.append(row)
            if len(pending) == batch:
                cursor.executemany(sql, pending)
                count += len(pending)
                pending = []
        if pending:
            cursor.executemany(sql, pending)
            count += len(pending)
    return count


def update_rows(model, field_names, rows, using=None, batch=None):
    """Set ``field_names`` of existing rows: ``rows`` are tuples ``(pk, value, ...)``; returns
    the count. One primary-key UPDATE per row through ``executemany`` (``bulk_update``
    builds a CASE expression per row and field: most of a run's publishing time when 10^5
    proposals are refreshed). Values are prepared as :func:`write_rows` prepares them.
    """
    connection, meta, fields, batch = _target(model, field_names, using, batch)
    quote = connection.ops.quote_name
    sets = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = (f"UPDATE {quote(meta.db_table)} SET {sets} "  # nosec B608 # names only
           f"WHERE {quote(meta.pk.column)} = %s")
    preps = [(i, p) for i, p in enumerate(_preparers(fields, connection, copy=False))
             if p is not None]
    count, pending = 0, []
    with connection.cursor() as cursor:
        for pk, *values in rows:
            for i, prep in preps:
                values[i] = prep(values[i])
            pending.append((*values, pk))
            if len(pending) == batch:
                cursor.executemany(sql, pending)
                count, pending = count + len(pending), []
        if pending:
            cursor.executemany(sql, pending)
            count += len(pending)
    return count
