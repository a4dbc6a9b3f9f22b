"""Daily roll-ups of widget analytics, aggregated in SQL from the ``Interaction`` rows.

Usage::

    from shop_recs.analytics import rollups

    rollups.rollup_day(date(2026, 11, 27))   # recompute one (past) day; idempotent
    rollups.rollup_days(rollups.days_since(date(2026, 1, 1)))
    rollups.rollup_pending()                  # what the periodic task does

A day is a calendar day in the current time zone (``TIME_ZONE``). Recomputing a day
replaces its rows in one transaction, so a re-run gives the same rows and a reader never
sees half a day. Every number comes from ``GROUP BY`` queries over that day's rows (found
through the timestamp indexes); no event row is ever loaded into Python, so memory stays
flat however many events there are.

What is counted, per widget / run / bundle (see ``WidgetDayStat``):

* impressions, clicks: ``widget_impression`` / ``widget_click`` events carrying the widget;
* adds to cart: ``cart_add`` and ``bundle_add_to_cart`` events carrying the widget;
* attributed lines, units, revenue, orders: purchase lines (of an order) that carry the
  widget's attribution *and* whose visitor (or user) clicked or added the same product from
  the same widget at most ``ATTRIBUTION_WINDOW_DAYS`` before the purchase. The cart keeps a
  line's attribution as long as the session lives; the window stops a months-old click from
  earning today's order;
* order value: the whole value of the orders holding such a line (average order value with
  a widget item); ``ShopDayStat`` holds the shop's orders and revenue of the day.
"""

import logging
import time
from datetime import timedelta
from decimal import Decimal

from django.db import connections, router, transaction
from django.db.models import (Count, DateTimeField, DecimalField, Exists, ExpressionWrapper, F,
                              Max, Min, OuterRef, Q, Sum, Value)
from django.db.models.functions import Coalesce
from django.utils import timezone

from shop_recs.analytics import experiment_rollups
from shop_recs.analytics.days import day_bounds, local_day
from shop_recs.analytics.models import ShopDayStat, WidgetDayStat
from shop_recs.conf import recs_settings
from shop_recs.models import Interaction

logger = logging.getLogger(__name__)

Kind = Interaction.Kind
Grain = WidgetDayStat.Grain
EVENT_KINDS = (Kind.WIDGET_IMPRESSION, Kind.WIDGET_CLICK, Kind.CART_ADD, Kind.BUNDLE_ADD_TO_CART)
ADD_KINDS = (Kind.CART_ADD, Kind.BUNDLE_ADD_TO_CART)
# What a visitor must have done from a widget for a later purchase of the product to count.
TOUCH_KINDS = (Kind.WIDGET_CLICK, Kind.CART_ADD, Kind.BUNDLE_ADD_TO_CART)
# (grain, the columns grouped by); a grain without "widget" is over all widgets (widget "").
GROUPINGS = (
    (Grain.WIDGET, ("widget",)), (Grain.WIDGET, ()),
    (Grain.RUN, ("widget", "run_ref")), (Grain.RUN, ("run_ref",)),
    (Grain.BUNDLE, ("widget", "bundle_ref")), (Grain.BUNDLE, ("bundle_ref",)),
)
COUNTERS = ("impressions", "clicks", "cart_adds", "orders", "lines", "units", "revenue",
            "order_value")
CENT = Decimal("0.01")
MONEY = DecimalField(max_digits=24, decimal_places=3)


def _money(value):
    # SQLite sums decimals as floats, PostgreSQL as Decimal: round both the same way.
    return Decimal(str(value or 0)).quantize(CENT)


def _value():
    return Coalesce(F("quantity") * F("unit_price"), Value(Decimal(0)), output_field=MONEY)


def _purchases(start, end):
    return (Interaction.objects.filter(kind=Kind.PURCHASE, timestamp__gte=start,
                                       timestamp__lt=end)
            .exclude(order_id="").order_by())


def attributed_lines(start, end, window_days):
    """Purchase lines of ``[start, end)`` attributed to a widget within the window."""
    window = timedelta(days=window_days)
    touches = Interaction.objects.filter(
        kind__in=TOUCH_KINDS, product=OuterRef("product"), widget=OuterRef("widget"),
        timestamp__lte=OuterRef("timestamp"),
        timestamp__gte=ExpressionWrapper(OuterRef("timestamp") - window,
                                         output_field=DateTimeField()),
    ).order_by()
    # Two EXISTS rather than one with an OR inside: each uses its (who, kind, timestamp) index.
    by_visitor = Exists(touches.filter(visitor_id=OuterRef("visitor_id")))
    by_user = Exists(touches.filter(user=OuterRef("user")))
    return (_purchases(start, end).exclude(widget="")
            .filter((~Q(visitor_id="") & by_visitor) | (Q(user__isnull=False) & by_user)))


def _event_counts(start, end):
    """``{grain key: counters}`` of the widget events of the day (one GROUP BY)."""
    rows = (Interaction.objects.filter(timestamp__gte=start, timestamp__lt=end,
                                       kind__in=EVENT_KINDS)
            .exclude(widget="").order_by().values("widget", "run_ref", "bundle_ref")
            .annotate(impressions=Count("pk", filter=Q(kind=Kind.WIDGET_IMPRESSION)),
                      clicks=Count("pk", filter=Q(kind=Kind.WIDGET_CLICK)),
                      cart_adds=Count("pk", filter=Q(kind__in=ADD_KINDS))))
    stats = {}
    # The groups are few (widgets x runs x bundles seen that day); the counts are additive.
    for row in rows:
        for grain, columns in GROUPINGS:
            if grain == Grain.BUNDLE and row["bundle_ref"] is None:
                continue
            counters = stats.setdefault(_key(grain, {c: row[c] for c in columns}), {})
            for name in ("impressions", "clicks", "cart_adds"):
                counters[name] = counters.get(name, 0) + row[name]
    return stats


def _key(grain, values):
    return (grain, values.get("widget", ""), values.get("run_ref"), values.get("bundle_ref"))


def _grouping_sql(grain, columns, q):
    """One grain's SELECT over ``l`` (attributed lines per key and order) joined to ``o``
    (the value of each order): an order with two lines of a key counts once."""
    keyed = [f"l.{q(c)}" for c in columns]
    picked = {c: (f"x.{q(c)}" if c in columns else "''" if c == "widget"
                  else "CAST(NULL AS BIGINT)") for c in ("widget", "run_ref", "bundle_ref")}
    where = f"WHERE l.{q('bundle_ref')} IS NOT NULL" if grain == Grain.BUNDLE else ""
    group = ", ".join(f"x.{q(c)}" for c in columns)
    # Only quoted column names and this module's grain constants are interpolated.
    return (
        f"SELECT '{grain.value}', {picked['widget']}, {picked['run_ref']}, "  # nosec B608
        f"{picked['bundle_ref']}, COUNT(*), SUM(x.n_lines), SUM(x.units), SUM(x.revenue), "
        f"SUM(o.order_value) FROM (SELECT {''.join(k + ', ' for k in keyed)}"
        f"l.{q('order_id')} AS order_id, SUM(l.n_lines) AS n_lines, SUM(l.units) AS units, "
        f"SUM(l.revenue) AS revenue FROM l {where} "
        f"GROUP BY {''.join(k + ', ' for k in keyed)}l.{q('order_id')}) x "
        f"JOIN o ON o.order_id = x.order_id {'GROUP BY ' + group if group else ''}")


def _attributed_counts(start, end, window_days, using):
    """``{grain key: counters}`` of attributed orders, every grain in one statement: the
    attributed lines (``a``, the window's EXISTS) are found once, grouped per key and
    order (``l``), then per grain."""
    q = connections[using].ops.quote_name
    line_sql, line_params = (attributed_lines(start, end, window_days).annotate(value=_value())
                             .values("order_id", "widget", "run_ref", "bundle_ref", "quantity",
                                     "value").query.sql_with_params())
    order_sql, order_params = (_purchases(start, end).values("order_id")
                               .annotate(order_value=Sum(_value()))
                               .values("order_id", "order_value").query.sql_with_params())
    columns = ", ".join(f"a.{q(c)}" for c in ("widget", "run_ref", "bundle_ref", "order_id"))
    sql = (  # the ORM's own compiled SQL, quoted names and constants only
        f"WITH a AS ({line_sql}), "  # nosec B608
        f"l AS (SELECT {columns}, COUNT(*) AS n_lines, SUM(a.{q('quantity')}) AS units, "
        f"SUM(a.{q('value')}) AS revenue FROM a GROUP BY {columns}), "
        f"o AS ({order_sql}) "
        + " UNION ALL ".join(_grouping_sql(grain, cols, q) for grain, cols in GROUPINGS))
    stats = {}
    with connections[using].cursor() as cursor:
        cursor.execute(sql, [*line_params, *order_params])
        for grain, widget, run, bundle, orders, n_lines, units, revenue, value in cursor:
            if orders:
                stats[(grain, widget or "", run, bundle)] = {
                    "orders": orders, "lines": n_lines, "units": units or 0,
                    "revenue": _money(revenue), "order_value": _money(value)}
    return stats


def rollup_day(day, *, window_days=None):
    """Recompute the roll-ups of ``day`` (a ``date``); return the number of widget rows."""
    window_days = window_days or recs_settings.ATTRIBUTION_WINDOW_DAYS
    using = router.db_for_write(WidgetDayStat)
    start, end = day_bounds(day)
    stats = _event_counts(start, end)
    for key, counters in _attributed_counts(start, end, window_days, using).items():
        stats.setdefault(key, {}).update(counters)
    shop = _purchases(start, end).aggregate(orders=Count("order_id", distinct=True),
                                            lines=Count("pk"), revenue=Sum(_value()))
    rows = [WidgetDayStat(day=day, grain=grain, widget=widget, run_ref=run, bundle_ref=bundle,
                          **counters)
            for (grain, widget, run, bundle), counters in sorted(stats.items(), key=str)]
    with transaction.atomic(using=using):
        WidgetDayStat.objects.using(using).filter(day=day).delete()
        WidgetDayStat.objects.using(using).bulk_create(rows, batch_size=500)
        ShopDayStat.objects.using(using).update_or_create(day=day, defaults={
            "orders": shop["orders"], "lines": shop["lines"],
            "revenue": _money(shop["revenue"]), "attribution_window_days": window_days,
            "computed_at": timezone.now()})
    return len(rows)


def days_since(first, last=None):
    """The days from ``first`` through ``last`` (default: today), in order."""
    last = last or local_day(timezone.now())
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def pending_days():
    """What the periodic task recomputes: from the day before the last rolled-up day (events
    recorded late, the day that was still running) through today; on the first run, every
    day since the first interaction. Older days: ``shop_recs_rollup --since``."""
    last = ShopDayStat.objects.aggregate(last=Max("day"))["last"]
    if last is not None:
        return days_since(last - timedelta(days=1))
    first = Interaction.objects.aggregate(first=Min("timestamp"))["first"]
    return days_since(local_day(first)) if first is not None else []


def rollup_days(days, *, window_days=None, progress=None):
    """Recompute each of ``days``; return a summary dict (days, rows, seconds)."""
    began = time.monotonic()
    rows = 0
    for day in days:
        rows += rollup_day(day, window_days=window_days)
        # The experiments' per-visitor sums of the same day (their results page reads them).
        rows += experiment_rollups.rollup_day(day)
        if progress is not None:
            progress(day)
    summary = {"days": len(days), "rows": rows, "seconds": round(time.monotonic() - began, 2)}
    logger.info("analytics roll-up: %(days)d day(s), %(rows)d row(s) in %(seconds)s s", summary)
    return summary


def rollup_pending():
    return rollup_days(pending_days())
