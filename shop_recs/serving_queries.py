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
from django.db.models import Q

from shop_recs.conf import recs_settings
from shop_recs.models import (Bundle, BundleItem, FallbackRecommendation, Recommendation,
                              TrainingRun)

BUNDLE, MODEL, FALLBACK = "bundle", "model", "fallback"


def compute_candidates(anchor_pks, run=None):
    """Bundles, FBT rows and stored fallback rows of the anchors: one indexed query.

    ``run``: the FBT rows of that training run instead of the serving one (an experiment's
    arm)."""
    limit = recs_settings.CANDIDATES
    anchors = {str(pk) for pk in anchor_pks}
    seen, candidates, bundles = set(anchors), [], {}
    bundle_rows, fbt_rows, fallback_rows = _stored_rows(anchor_pks, run)
    for row in bundle_rows:
        info = bundles.setdefault(row["ref"], {"discount_percent": row["discount"],
                                                "anchor": row["anchor"], "items": []})
        info["items"].append(row["item"])
        if str(row["item"]) not in seen:
            seen.add(str(row["item"]))
            candidates.append((row["item"], BUNDLE, row["method"], row["score"] or 0.0, None,
                               row["ref"], row["evidence"] or {}))
    for source, rows in ((MODEL, fbt_rows), (FALLBACK, fallback_rows)):
        for row, score in _fuse(rows, single=len(anchors) == 1):
            if str(row["item"]) not in seen:
                seen.add(str(row["item"]))
                candidates.append((row["item"], source, row["method"], score,
                                   row["ref"] if source == MODEL else None, None,
                                   row["evidence"] or {}))
    return candidates[:limit], bundles


def _fuse(rows, single):
    """One anchor: its list in order. Several: reciprocal-rank fusion of their lists."""
    fused = {}
    for row in rows:
        entry = fused.setdefault(str(row["item"]), [row, 0.0])
        entry[1] += 1.0 / row["pos"]
    ordered = sorted(fused.values(), key=lambda e: (-e[1], e[0]["pos"]))
    return [(row, float(row["score"] if single else fusion)) for row, fusion in ordered]


def _stored_rows(anchor_pks, run=None):
    """``(bundle rows, FBT rows, fallback rows)`` of the anchors, from one UNION ALL of
    indexed lookups by anchor (no aggregate over interactions).

    Plain SQL over shop_recs's own tables: the ORM spent several times longer building and
    compiling the three annotated querysets than the database spent answering them.
    """
    statuses = [Bundle.Status.APPROVED]
    if not recs_settings.REQUIRE_APPROVAL:
        statuses.append(Bundle.Status.PROPOSED)
    connection = connections[router.db_for_read(Recommendation)]
    quote = connection.ops.quote_name
    prep = Recommendation._meta.get_field("product").get_db_prep_value
    anchors = [prep(pk, connection) for pk in anchor_pks]
    marks = ", ".join(["%s"] * len(anchors))

    def table(model):
        return quote(model._meta.db_table)

    def col(model, name, alias):
        return f"{alias}.{quote(model._meta.get_field(name).column)}"

    b, i, r, t, f = Bundle, BundleItem, Recommendation, TrainingRun, FallbackRecommendation
    b_pk, t_pk = quote(b._meta.pk.column), quote(t._meta.pk.column)
    # Only quoted table and column names are interpolated; values are parameters.
    parts = [
        f"SELECT 0, {col(i, 'bundle', 'i')}, {col(b, 'anchor', 'b')}, "  # nosec B608
        f"{col(i, 'product', 'i')}, {col(i, 'position', 'i')}, {col(b, 'score', 'b')}, "
        f"{col(b, 'source', 'b')}, "
        f"{col(b, 'evidence', 'b')}, {col(b, 'discount_percent', 'b')}, "
        f"CASE WHEN {col(b, 'status', 'b')} = %s THEN 1 ELSE 0 END "
        f"FROM {table(i)} i INNER JOIN {table(b)} b ON {col(i, 'bundle', 'i')} = b.{b_pk} "
        f"WHERE {col(b, 'anchor', 'b')} IN ({marks}) "
        f"AND {col(b, 'status', 'b')} IN ({', '.join(['%s'] * len(statuses))})",
        f"SELECT 1, {col(r, 'run', 'r')}, {col(r, 'product', 'r')}, "  # nosec B608
        f"{col(r, 'recommended', 'r')}, {col(r, 'rank', 'r')}, {col(r, 'score', 'r')}, "
        f"{col(r, 'source', 'r')}, "
        f"{col(r, 'evidence', 'r')}, NULL, 1 "
        f"FROM {table(r)} r INNER JOIN {table(t)} t ON {col(r, 'run', 'r')} = t.{t_pk} "
        f"WHERE {col(r, 'product', 'r')} IN ({marks}) AND "
        + (f"t.{t_pk} = %s" if run is not None else f"{col(t, 'is_active', 't')} = %s"),
    ]
    params = [Bundle.Status.APPROVED.value, *anchors, *(st.value for st in statuses),
              *anchors, True if run is None else run]
    if recs_settings.FALLBACK:
        parts.append(
            f"SELECT 2, NULL, {col(f, 'product', 'f')}, "  # nosec B608
            f"{col(f, 'recommended', 'f')}, {col(f, 'rank', 'f')}, {col(f, 'score', 'f')}, "
            f"{col(f, 'method', 'f')}, "
            f"{col(f, 'evidence', 'f')}, NULL, 1 FROM {table(f)} f "
            f"WHERE {col(f, 'product', 'f')} IN ({marks}) AND {col(f, 'rank', 'f')} <= %s")
        params += [*anchors, recs_settings.CANDIDATES]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        fetched = cursor.fetchall()
    columns = ("kind", "ref", "anchor", "item", "pos", "score", "method", "evidence",
               "discount", "approved")
    rows = [dict(zip(columns, row)) for row in fetched]
    # Raw values as the ORM would give them: keys typed like the product's pk (a UUID
    # arrives as text on SQLite), JSON decoded where the driver leaves it as text.
    key = Recommendation._meta.get_field("product").target_field.to_python
    for row in rows:
        row["anchor"], row["item"] = key(row["anchor"]), key(row["item"])
        if isinstance(row["evidence"], (str, bytes)):
            row["evidence"] = json.loads(row["evidence"])
    bundles = sorted((r for r in rows if r["kind"] == 0),
                     key=lambda r: (-r["approved"], -(r["score"] or 0.0), r["ref"], r["pos"]))
    for row in bundles:
        row["discount"] = str(Decimal(str(row["discount"] or 0)).quantize(Decimal("0.1")))
    fbt = sorted((r for r in rows if r["kind"] == 1), key=lambda r: (r["pos"], -r["score"]))
    fallback = sorted((r for r in rows if r["kind"] == 2), key=lambda r: (r["pos"], -r["score"]))
    return bundles, fbt, fallback


def _products_queryset(adapter, pks, anchor_pks):
    available = Q(pk__in=pks) & adapter.available_q()
    if adapter.fields["price"] and "__" not in adapter.fields["price"]:
        available &= Q(**{f"{adapter.fields['price']}__isnull": False})
    return adapter.model._default_manager.filter(available | Q(pk__in=anchor_pks))


# Compiled product queries by shape: building and compiling the queryset cost several
# times what the database spends on it (about 1.5 of 2.5 ms per cold answer here).
_COMPILED = {}
_COMPILED_MAX = 512
_INTEGER_PKS = (models.AutoField, models.BigAutoField, models.SmallAutoField,
                models.IntegerField)


def _sentinel(field, k):
    """A value of ``field``'s type that no real key takes, to find a key's parameter."""
    if isinstance(field, _INTEGER_PKS):
        return -(2**52) - k
    if isinstance(field, models.UUIDField):
        return uuid.UUID(int=(0xF << 124) + k)
    if isinstance(field, (models.CharField, models.TextField)):
        return f"\x1fshop_recs\x1f{k}"
    return None


def _compiled_products(adapter, pks, anchor_pks):
    """``_products_queryset`` as a raw query compiled once per shape (numbers of keys,
    adapter, database, availability filter), its keys filled in per call. Falls back to
    the queryset for key types it cannot stand in for or managers that filter."""
    model = adapter.model
    using = router.db_for_read(model)
    manager = type(model._default_manager)
    available = adapter.available_q()
    shape = (id(adapter), using, len(pks), len(anchor_pks), repr(available))
    compiled = _COMPILED.get(shape)
    if compiled is None:
        field = model._meta.pk
        stand_ins = [_sentinel(field, k) for k in range(len(pks) + len(anchor_pks))]
        if (None in stand_ins or manager.get_queryset is not models.Manager.get_queryset):
            return _products_queryset(adapter, pks, anchor_pks)
        queryset = _products_queryset(adapter, stand_ins[:len(pks)], stand_ins[len(pks):])
        try:
            sql, params = queryset.order_by().query.sql_with_params()
        except EmptyResultSet:
            return []
        connection = connections[using]
        prepared = [field.get_db_prep_value(v, connection) for v in stand_ins]
        slots = {i: prepared.index(value) for i, value in enumerate(params)
                 if any(value == p and type(value) is type(p) for p in prepared)}
        if len(slots) != len(stand_ins):
            return _products_queryset(adapter, pks, anchor_pks)
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        compiled = _COMPILED[shape] = (sql, list(params), slots)
    sql, params, slots = compiled
    params = list(params)  # the cached list is shared by every thread
    prep = model._meta.pk.get_db_prep_value
    keys = [prep(pk, connections[using]) for pk in [*pks, *anchor_pks]]
    for i, k in slots.items():
        params[i] = keys[k]
    return model._default_manager.db_manager(using).raw(sql, params)
