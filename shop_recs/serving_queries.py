"""The two queries of a recommendation answer: the stored candidate rows of the anchors,
and the live products among them.

``compute_candidates(anchor_pks)`` reads the anchors' approved bundles, the serving run's
FBT rows and the stored fallback rows in one ``UNION ALL`` of indexed lookups (plain SQL
over shop_recs's own tables); ``_compiled_products`` runs the plain product query compiled
once per shape. ``shop_recs.ranking`` orders, filters and personalises what they return.
Building and compiling querysets cost several times what the database spends answering
these, which is why neither goes through the ORM on every request.
"""

import json
import uuid
from decimal import Decimal

from django.core.exceptions import EmptyResultSet
from django.db import connections, models, router
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import Q

from shop_recs.conf import recs_settings
from shop_recs.models import (Bundle, BundleItem, FallbackRecommendation, Recommendation,
                              TrainingRun)
from shop_recs.products import ProductAdapter

BUNDLE, MODEL, FALLBACK, HISTORY = "bundle", "model", "fallback", "history"
# The columns of a stored row (see ``_rows_sql``).
KIND, REF, ANCHOR, ITEM, POS, SCORE, METHOD, EVIDENCE, DISCOUNT, APPROVED = range(10)


def compute_candidates(anchor_pks, run=None):
    """Bundles, FBT rows and stored fallback rows of the anchors, and the run's
    returning-visitor policy: one indexed query. Returns ``(candidates, bundles, policy)``.

    ``run``: the FBT rows (and policy) of that training run instead of the serving one (an
    experiment's arm). A candidate is ``(pk, source, method, score, run, bundle, evidence)``;
    ``evidence`` is left as the database returned it (JSON text on some drivers):
    :func:`evidence_of` decodes it for the few items an answer shows.
    """
    limit = recs_settings.CANDIDATES
    anchors = {str(pk) for pk in anchor_pks}
    seen, candidates, bundles = set(anchors), [], {}
    bundle_rows, fbt_rows, fallback_rows, policy_rows = _stored_rows(anchor_pks, run)
    policy = evidence_of(policy_rows[0][EVIDENCE]) if policy_rows else {}
    key = _key_converter()
    for row in bundle_rows:
        ref, item = row[REF], key(row[ITEM])
        if ref not in bundles:
            bundles[ref] = {"discount_percent": _discount(row[DISCOUNT]),
                            "anchor": key(row[ANCHOR]), "items": []}
        bundles[ref]["items"].append(item)
        if str(item) not in seen:
            seen.add(str(item))
            candidates.append((item, BUNDLE, row[METHOD], row[SCORE] or 0.0, None, ref,
                               row[EVIDENCE]))
    for source, rows in ((MODEL, fbt_rows), (FALLBACK, fallback_rows)):
        if len(candidates) >= limit:
            break
        for row, score in _fuse(rows, single=len(anchors) == 1):
            item = key(row[ITEM])
            if str(item) not in seen:
                seen.add(str(item))
                candidates.append((item, source, row[METHOD], score,
                                   row[REF] if source == MODEL else None, None, row[EVIDENCE]))
    return candidates[:limit], bundles, policy


def _key_converter():
    """Raw key -> the product pk's Python value, as the ORM would give it (a UUID arrives
    as text on SQLite); integers pass through."""
    to_python = Recommendation._meta.get_field("product").target_field.to_python
    return lambda value: value if type(value) is int else to_python(value)


def _discount(value):
    return str(Decimal(str(value or 0)).quantize(Decimal("0.1")))


def evidence_of(raw):
    """A candidate's evidence as a dict, whatever form the driver returned it in."""
    if isinstance(raw, (str, bytes)):
        return json.loads(raw)
    return raw or {}


def _fuse(rows, single):
    """One anchor: its list in order. Several: reciprocal-rank fusion of their lists."""
    if single:
        return [(row, float(row[SCORE])) for row in rows]
    fused = {}
    for row in rows:
        entry = fused.setdefault(str(row[ITEM]), [row, 0.0])
        entry[1] += 1.0 / row[POS]
    ordered = sorted(fused.values(), key=lambda e: (-e[1], e[0][POS]))
    return [(row, fusion) for row, fusion in ordered]


def _stored_rows(anchor_pks, run=None):
    """``(bundle rows, FBT rows, fallback rows, policy rows)`` of the anchors, from one
    UNION ALL of indexed lookups by anchor (no aggregate over interactions); rows are
    tuples indexed by ``KIND`` ... ``APPROVED``, keys and evidence as the driver returned
    them. The run's ``serving_policy`` comes as a row of its own (in ``EVIDENCE``); the run
    is the serving one, or ``run`` (an experiment's arm).

    Plain SQL over shop_recs's own tables: the ORM spent several times longer building and
    compiling the three annotated querysets than the database spent answering them.
    """
    statuses = [Bundle.Status.APPROVED]
    if not recs_settings.REQUIRE_APPROVAL:
        statuses.append(Bundle.Status.PROPOSED)
    using = router.db_for_read(Recommendation)
    connection = connections[using]
    anchors = _db_keys(Recommendation._meta.get_field("product").target_field, anchor_pks,
                       connection)
    shape = (using, len(anchors), len(statuses), bool(recs_settings.FALLBACK), run is not None)
    sql = _ROWS_SQL.get(shape)
    if sql is None:
        if len(_ROWS_SQL) >= _COMPILED_MAX:
            _ROWS_SQL.clear()
        sql = _ROWS_SQL[shape] = _rows_sql(connection, *shape[1:])
    which = True if run is None else int(run)  # the serving run, or the arm's
    params = [Bundle.Status.APPROVED.value, *anchors, *(st.value for st in statuses),
              *anchors, which, which]
    if recs_settings.FALLBACK:
        params += [*anchors, recs_settings.CANDIDATES]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    lists = ([], [], [], [])  # by the first column: bundle, FBT, policy and fallback rows
    for row in fetched:
        lists[row[KIND]].append(row)
    bundles, fbt, policy, fallback = lists
    bundles.sort(key=lambda r: (-r[APPROVED], -(r[SCORE] or 0.0), r[REF], r[POS]))
    fbt.sort(key=lambda r: (r[POS], -r[SCORE]))
    fallback.sort(key=lambda r: (r[POS], -r[SCORE]))
    return bundles, fbt, fallback, policy


_ROWS_SQL = {}  # the UNION ALL by shape: (database, anchors, statuses, fallback on, run given)


def _rows_sql(connection, n_anchors, n_statuses, fallback, by_run):
    """The ``UNION ALL`` of :func:`_stored_rows` for one shape of parameters."""
    quote = connection.ops.quote_name
    marks = ", ".join(["%s"] * n_anchors)

    def table(model):
        return quote(model._meta.db_table)

    def col(model, name, alias):
        return f"{alias}.{quote(model._meta.get_field(name).column)}"

    b, i, r, t, f = Bundle, BundleItem, Recommendation, TrainingRun, FallbackRecommendation
    b_pk, t_pk = quote(b._meta.pk.column), quote(t._meta.pk.column)
    run_filter = f"t.{t_pk} = %s" if by_run else f"{col(t, 'is_active', 't')} = %s"
    # Only quoted table and column names are interpolated; values are parameters.
    parts = [
        f"SELECT 0, {col(i, 'bundle', 'i')}, {col(b, 'anchor', 'b')}, "  # nosec B608
        f"{col(i, 'product', 'i')}, {col(i, 'position', 'i')}, {col(b, 'score', 'b')}, "
        f"{col(b, 'source', 'b')}, "
        f"{col(b, 'evidence', 'b')}, {col(b, 'discount_percent', 'b')}, "
        f"CASE WHEN {col(b, 'status', 'b')} = %s THEN 1 ELSE 0 END "
        f"FROM {table(i)} i INNER JOIN {table(b)} b ON {col(i, 'bundle', 'i')} = b.{b_pk} "
        f"WHERE {col(b, 'anchor', 'b')} IN ({marks}) "
        f"AND {col(b, 'status', 'b')} IN ({', '.join(['%s'] * n_statuses)})",
        f"SELECT 1, {col(r, 'run', 'r')}, {col(r, 'product', 'r')}, "  # nosec B608
        f"{col(r, 'recommended', 'r')}, {col(r, 'rank', 'r')}, {col(r, 'score', 'r')}, "
        f"{col(r, 'source', 'r')}, "
        f"{col(r, 'evidence', 'r')}, NULL, 1 "
        f"FROM {table(r)} r INNER JOIN {table(t)} t ON {col(r, 'run', 'r')} = t.{t_pk} "
        f"WHERE {col(r, 'product', 'r')} IN ({marks}) AND {run_filter}",
        f"SELECT 2, t.{t_pk}, NULL, NULL, 0, 0.0, NULL, "  # nosec B608
        f"{col(t, 'serving_policy', 't')}, NULL, 1 "
        f"FROM {table(t)} t WHERE {run_filter}",
    ]
    if fallback:
        parts.append(
            f"SELECT 3, NULL, {col(f, 'product', 'f')}, "  # nosec B608
            f"{col(f, 'recommended', 'f')}, {col(f, 'rank', 'f')}, {col(f, 'score', 'f')}, "
            f"{col(f, 'method', 'f')}, "
            f"{col(f, 'evidence', 'f')}, NULL, 1 FROM {table(f)} f "
            f"WHERE {col(f, 'product', 'f')} IN ({marks}) AND {col(f, 'rank', 'f')} <= %s")
    return " UNION ALL ".join(parts)


def _products_queryset(adapter, pks, anchor_pks):
    """The available products among ``pks`` and the anchors (whatever their state)."""
    available = Q(pk__in=pks) & adapter.available_q()
    if adapter.fields["price"] and "__" not in adapter.fields["price"]:
        available &= Q(**{f"{adapter.fields['price']}__isnull": False})
    return adapter.model._default_manager.filter(available | Q(pk__in=anchor_pks)).order_by()


def _first_available(connection, model, n_pks, n_anchors, limit):
    """``ORDER BY`` the anchors, then the candidates in their order, and a limit of the
    anchors plus ``limit``: SQL appended to the compiled product query, whose parameters
    are the anchors' keys then the candidates'. Built here rather than by the ORM, whose
    ordering by an alias compiles to a column position some queries do not have (Oscar's
    availability subquery on PostgreSQL)."""
    column = (f"{connection.ops.quote_name(model._meta.db_table)}."
              f"{connection.ops.quote_name(model._meta.pk.column)}")
    # The simple CASE names the column once: every call's SQL is scanned for parameters.
    whens = ["WHEN %s THEN -1"] * n_anchors + [f"WHEN %s THEN {int(i)}" for i in range(n_pks)]
    limit_sql = connection.ops.limit_offset_sql(0, limit + n_anchors)
    return f" ORDER BY CASE {column} {' '.join(whens)} ELSE {int(n_pks)} END {limit_sql}"


# Compiled product queries by shape: building and compiling the queryset cost several
# times what the database spends on it (about 1.5 of 2.5 ms per cold answer here).
_COMPILED = {}
_COMPILED_MAX = 512
_INTEGER_PKS = (models.AutoField, models.BigAutoField, models.SmallAutoField,
                models.IntegerField)


def _db_keys(field, pks, connection):
    """``field.get_db_prep_value`` of each of ``pks``. Integers for an integer key on a
    backend that passes them through unchanged (SQLite, MySQL; not PostgreSQL, which types
    them) are that already: they skip its checks (a cold answer prepares about 13)."""
    if (isinstance(field, _INTEGER_PKS) and type(connection.ops).adapt_integerfield_value
            is BaseDatabaseOperations.adapt_integerfield_value
            and all(type(pk) is int for pk in pks)):
        return list(pks)
    return [field.get_db_prep_value(pk, connection) for pk in pks]


def _sentinel(field, k):
    """A value of ``field``'s type that no real key takes, to find a key's parameter."""
    if isinstance(field, _INTEGER_PKS):
        return -(2**52) - k
    if isinstance(field, models.UUIDField):
        return uuid.UUID(int=(0xF << 124) + k)
    if isinstance(field, (models.CharField, models.TextField)):
        return f"\x1fshop_recs\x1f{k}"
    return None


def _compiled_products(adapter, pks, anchor_pks, limit=None):
    """``_products_queryset``'s instances from its SQL compiled once per shape (numbers of
    keys, limit, adapter, database, availability filter), its keys filled in per call, the rows
    converted and turned into instances the way the ORM does. Falls back to the queryset
    for key types it cannot stand in for, managers that filter, or selects that are not
    the model's own columns."""
    model = adapter.model
    using = router.db_for_read(model)
    manager = type(model._default_manager)
    # The adapter itself is in the key (kept alive, so its id is never reused by another).
    # The base adapter's filter depends on its fields only; another's may vary per call.
    base = type(adapter).available_q is ProductAdapter.available_q
    shape = (adapter, using, len(pks), len(anchor_pks), limit,
             None if base else repr(adapter.available_q()))
    compiled = _COMPILED.get(shape)
    if compiled is None:
        field = model._meta.pk
        stand_ins = [_sentinel(field, k) for k in range(len(pks) + len(anchor_pks))]
        if (None in stand_ins or manager.get_queryset is not models.Manager.get_queryset):
            return _products_queryset(adapter, pks, anchor_pks)
        queryset = _products_queryset(adapter, stand_ins[:len(pks)], stand_ins[len(pks):])
        compiler = queryset.query.get_compiler(using)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:
            return []
        columns = [expression for expression, _sql, _alias in compiler.select]
        names = [getattr(getattr(c, "target", None), "attname", None) for c in columns]
        if names != [f.attname for f in model._meta.concrete_fields]:
            return _products_queryset(adapter, pks, anchor_pks)
        connection = connections[using]
        prepared = [field.get_db_prep_value(v, connection) for v in stand_ins]
        slots = {i: prepared.index(value) for i, value in enumerate(params)
                 if any(value == p and type(value) is type(p) for p in prepared)}
        if len(slots) != len(stand_ins):
            return _products_queryset(adapter, pks, anchor_pks)
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        converters = list(compiler.get_converters(columns).items())
        if limit is not None:
            sql += _first_available(connections[using], model, len(pks), len(anchor_pks), limit)
        compiled = _COMPILED[shape] = (sql, list(params), slots, names, converters)
    sql, params, slots, names, converters = compiled
    params = list(params)  # the cached list is shared by every thread
    connection = connections[using]
    keys = _db_keys(model._meta.pk, [*pks, *anchor_pks], connection)
    for i, k in slots.items():
        params[i] = keys[k]
    if limit is not None:
        params += [*keys[len(pks):], *keys[:len(pks)]]  # the ordering's: anchors, candidates
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    instances = []
    for row in rows:
        values = list(row)
        for position, (functions, expression) in converters:
            value = values[position]
            for convert in functions:
                value = convert(value, expression, connection)
            values[position] = value
        instances.append(model.from_db(using, names, values))
    return instances
