"""Returning visitors: who is asking, what they bought, and the *boost* order.

``ranking`` applies the serving run's returning-visitor policy (``shop_recs.ml.policy``)
with these: :func:`purchases` reads a visitor's latest purchase lines (one indexed query
that also answers "any history?"), :func:`boosted` orders the candidates by the formula the
run evaluated, and :func:`personal` / :func:`has_history` decide whether the *demote* fetch
needs the visitor at all. A visitor known to have no purchases costs one cache read.
"""

import logging
from dataclasses import dataclass

from django.db import connections, router
from django.db.models import Q

from shop_recs.conf import recs_settings
from shop_recs.models import Interaction
from shop_recs.serving_cache import _cache, no_history_keys, remember_no_history
from shop_recs.serving_queries import HISTORY

logger = logging.getLogger(__name__)

HISTORY_SIZE = 50  # purchases the *demote* order relates the candidates to
BOOST_HISTORY = 256  # purchase lines the boost reads (shop_recs.ml.policy.max_history)


@dataclass(frozen=True)
class Visitor:
    """Who is asking: a user id and/or a pseudonymous visitor id (both may be empty)."""

    user_id: object = None
    visitor_id: str = ""

    def __bool__(self):
        return self.user_id is not None or bool(self.visitor_id)


def personal(visitor):
    """``visitor`` when personalisation applies; an anonymous one when it is off or the
    visitor has no purchases, so that the fetch stays the plain query.

    A visitor known to have none costs one cache read; otherwise ``has_history`` asks (one
    indexed query, remembered when the answer is no).
    """
    if not visitor or not recs_settings.PERSONALISE:
        return Visitor()
    keys = no_history_keys(visitor.user_id, visitor.visitor_id)
    try:
        if len(_cache().get_many(keys)) == len(keys):
            return Visitor()
    except Exception:  # noqa: BLE001 (cache down: ask the database)
        logger.warning("shop_recs cache unavailable", exc_info=True)
    if has_history(visitor):
        return visitor
    remember_no_history(keys)
    return Visitor()


def purchases(visitor):
    """The products ``visitor`` bought, most recent order first, once per order
    (:func:`purchased_items`, one query that also answers "any history?"); ``[]`` when
    personalisation does not apply or they bought nothing (remembered, as :func:`personal`)."""
    if not visitor or not recs_settings.PERSONALISE:
        return []
    keys = no_history_keys(visitor.user_id, visitor.visitor_id)
    try:
        if len(_cache().get_many(keys)) == len(keys):
            return []
    except Exception:  # noqa: BLE001 (cache down: ask the database)
        logger.warning("shop_recs cache unavailable", exc_info=True)
    purchased = purchased_items(visitor)
    if not purchased:
        remember_no_history(keys)
    return purchased


def boosted(candidates, purchased, policy, skip):
    """The candidates and the visitor's purchases in the order of the *boost* policy, the
    formula ``shop_recs.ml.policy.served_topk`` evaluated: the published rank's base
    ``1 - rank / top_k`` plus ``weight * 0.5 ** (position / half_life)`` per past order."""
    top_k = max(int(policy.get("top_k") or recs_settings.FBT_TOP_K), 1)
    weight, half_life = float(policy.get("weight") or 0.0), float(policy.get("half_life") or 1.0)
    score, entries = {}, {}
    for rank, candidate in enumerate(candidates):
        key = str(candidate[0])
        score[key] = max(1.0 - rank / top_k, 0.0)
        entries[key] = candidate
    for position, pk in enumerate(purchased[:BOOST_HISTORY]):
        key = str(pk)
        score[key] = score.get(key, 0.0) + weight * 0.5 ** (position / max(half_life, 1e-9))
        entries.setdefault(key, (pk, HISTORY, "bought before", 0.0, None, None, {}))
    order = {key: i for i, key in enumerate(entries)}  # ties: published order, then recency
    ranked = sorted((key for key in entries if key not in skip),
                    key=lambda key: (-score[key], order[key]))
    return [entries[key] for key in ranked]


def who(visitor):
    """A ``Q`` selecting ``visitor``'s interactions by user and/or visitor id."""
    q = Q(pk__in=[])
    if visitor.user_id is not None:
        q |= Q(user_id=visitor.user_id)
    if visitor.visitor_id:
        q |= Q(visitor_id=visitor.visitor_id)
    return q


def _who_sql(visitor, connection):
    """``(conditions, params)`` selecting ``visitor``'s rows by user and/or visitor id, for
    the plain SQL of :func:`purchased_items` and :func:`has_history` (:func:`who` as SQL)."""
    meta, quote = Interaction._meta, connection.ops.quote_name
    where, params = [], []
    for name, value in (("user", visitor.user_id), ("visitor_id", visitor.visitor_id or None)):
        if value is not None:
            field = meta.get_field(name)
            where.append(f"{quote(field.column)} = %s")
            params.append(field.get_db_prep_value(value, connection))
    return where, params


def purchased_items(visitor, limit=None):
    """The products ``visitor`` bought, most recent first, once per order: one indexed
    query over their latest ``limit`` purchase lines (``BOOST_HISTORY``), plain SQL as in
    :func:`has_history`."""
    connection = connections[router.db_for_read(Interaction)]
    meta, quote = Interaction._meta, connection.ops.quote_name
    where, params = _who_sql(visitor, connection)
    if not where:
        return []

    def column(name):
        return quote(meta.get_field(name).column)

    # Only quoted table and column names are interpolated; values are parameters.
    sql = (f"SELECT {column('product')}, {column('order_id')} "  # nosec B608
           f"FROM {quote(meta.db_table)} "
           f"WHERE {column('kind')} = %s AND ({' OR '.join(where)}) "
           f"ORDER BY {column('timestamp')} DESC, {quote(meta.pk.column)} DESC LIMIT %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [Interaction.Kind.PURCHASE.value, *params, limit or BOOST_HISTORY])
        rows = cursor.fetchall()
    key = meta.get_field("product").target_field.to_python
    seen, items = set(), []
    for product, order in rows:
        if (product, order) not in seen:  # once per order (an order may repeat a line)
            seen.add((product, order))
            items.append(key(product))
    return items


def has_history(visitor):
    """Whether ``visitor`` has purchases that personalisation would use (one query).

    ``Interaction.objects.purchases().filter(who(visitor)).exists()`` as plain SQL: it
    runs on every warm call of a visitor with a session, where compiling the queryset
    would cost more than the indexed lookup itself.
    """
    if not visitor or not recs_settings.PERSONALISE:
        return False
    connection = connections[router.db_for_read(Interaction)]
    meta, quote = Interaction._meta, connection.ops.quote_name
    where, params = _who_sql(visitor, connection)
    # Only quoted table and column names are interpolated; values are parameters.
    sql = (f"SELECT 1 FROM {quote(meta.db_table)} WHERE {quote(meta.get_field('kind').column)}"  # nosec B608
           f" = %s AND ({' OR '.join(where)}) LIMIT 1")
    with connection.cursor() as cursor:
        cursor.execute(sql, [Interaction.Kind.PURCHASE.value, *params])
        return cursor.fetchone() is not None
