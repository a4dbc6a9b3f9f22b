"""What the analytics pages show, read from the daily roll-ups only (a few indexed queries).

Usage::

    from shop_recs.analytics import report

    data = report.build(first_day, last_day, widget="fbt")   # widget "" = all widgets
    data["summary"], data["runs"], data["bundles"], data["daily"], data["windows"]
    report.csv_rows(data)   # header + one row per day, for the CSV export

Metrics of a set of roll-up rows (:func:`metrics`):

* CTR = clicks / impressions (both counted per product shown / clicked);
* attributed orders and revenue; share = attributed revenue / the shop's revenue;
* AOV with = value of the orders holding an attributed line / their number; AOV without =
  the rest of the shop's orders (shop revenue less that value, over the other orders).
"""

from decimal import Decimal

from django.db.models import Max, Min, Sum

from shop_recs.analytics.models import ShopDayStat, WidgetDayStat
from shop_recs.models import Bundle
from shop_recs.products import get_adapter

Grain = WidgetDayStat.Grain
SUMMED = ("impressions", "clicks", "cart_adds", "orders", "lines", "units", "revenue",
          "order_value")
MAX_BUNDLES = 50  # bundle rows on the page, most attributed revenue first
CSV_HEADER = ("day", "widget", "impressions", "clicks", "ctr", "cart_adds", "attributed_orders",
              "attributed_units", "attributed_revenue", "shop_orders", "shop_revenue",
              "revenue_share", "aov_with_widget_item", "aov_without", "attribution_window_days")


def _ratio(numerator, denominator):
    if not denominator:
        return None
    return Decimal(numerator or 0) / Decimal(denominator)


def metrics(row, shop_orders, shop_revenue):
    """``row`` (sums of the counters) with CTR, share of revenue and AOV with / without."""
    shop_revenue = Decimal(shop_revenue or 0)
    orders = row.get("orders") or 0
    order_value = Decimal(row.get("order_value") or 0)
    ctr = _ratio(row.get("clicks"), row.get("impressions"))
    share = _ratio(row.get("revenue"), shop_revenue)
    return {
        **row,
        "ctr": ctr, "ctr_pct": None if ctr is None else ctr * 100,
        "share": share, "share_pct": None if share is None else share * 100,
        "aov_with": _ratio(order_value, orders),
        "aov_without": _ratio(shop_revenue - order_value, (shop_orders or 0) - orders),
    }


def _sums(queryset, *group):
    return queryset.values(*group).order_by().annotate(**{f: Sum(f) for f in SUMMED})


def build(first, last, widget=""):
    """The page's numbers for the days ``first``..``last`` and ``widget`` ("" = all)."""
    rows = WidgetDayStat.objects.filter(day__gte=first, day__lte=last)
    days = ShopDayStat.objects.filter(day__gte=first, day__lte=last)
    shop = days.aggregate(orders=Sum("orders"), revenue=Sum("revenue"), lines=Sum("lines"),
                          window_low=Min("attribution_window_days"),
                          window_high=Max("attribution_window_days"),
                          computed_at=Max("computed_at"))
    shop_orders, shop_revenue = shop["orders"] or 0, shop["revenue"] or Decimal(0)
    per_widget = {r["widget"]: r for r in _sums(rows.filter(grain=Grain.WIDGET), "widget")}
    summary = [metrics(per_widget[w], shop_orders, shop_revenue)
               for w in sorted(per_widget) if w and (not widget or w == widget)]
    total = per_widget.get(widget or "")
    runs = [metrics(r, shop_orders, shop_revenue) for r in
            _sums(rows.filter(grain=Grain.RUN, widget=widget), "run_ref")]
    runs.sort(key=lambda r: (r["run_ref"] is None, -(r["run_ref"] or 0)))
    bundles = [metrics(r, shop_orders, shop_revenue) for r in
               _sums(rows.filter(grain=Grain.BUNDLE, widget=widget), "bundle_ref")
               .order_by("-revenue", "-cart_adds", "bundle_ref")[:MAX_BUNDLES]]
    _describe_bundles(bundles)
    return {
        "first": first, "last": last, "widget": widget,
        "shop": shop, "summary": summary,
        "total": metrics(total, shop_orders, shop_revenue) if total else None,
        "runs": runs, "bundles": bundles,
        "daily": daily(first, last, widget, days),
        "windows": sorted({shop["window_low"], shop["window_high"]} - {None}),
    }


def _describe_bundles(rows):
    """Give each bundle row its bundle (status, anchor name) in one query."""
    found = {b.pk: b for b in Bundle.objects.filter(pk__in=[r["bundle_ref"] for r in rows])
             .select_related("anchor")}
    adapter = get_adapter()
    for row in rows:
        bundle = found.get(row["bundle_ref"])
        row["bundle"] = bundle
        row["anchor_name"] = adapter.name(bundle.anchor) if bundle else ""


def daily(first, last, widget, days):
    """One dict per day that has a roll-up: the widget's (or all widgets') numbers and the
    shop's, in day order (two queries)."""
    shop_by_day = {d["day"]: d for d in days.values("day", "orders", "revenue",
                                                    "attribution_window_days")}
    rows = {r["day"]: r for r in _sums(WidgetDayStat.objects.filter(
        day__gte=first, day__lte=last, grain=Grain.WIDGET, widget=widget), "day")}
    out = []
    for day in sorted(shop_by_day):
        shop = shop_by_day[day]
        row = rows.get(day) or {"day": day}
        out.append({**metrics(row, shop["orders"], shop["revenue"]), "day": day,
                    "shop_orders": shop["orders"], "shop_revenue": shop["revenue"],
                    "window": shop["attribution_window_days"]})
    return out


def _ratio_cell(value):
    return "" if value is None else f"{value:.4f}"


def _money_cell(value):
    return "" if value is None else f"{Decimal(value):.2f}"


def _text_cell(value):
    # A spreadsheet runs a cell that starts like a formula: keep it text.
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def csv_rows(data):
    """The CSV export: the header, then one row per day of ``data["daily"]``."""
    yield CSV_HEADER
    for d in data["daily"]:
        yield (d["day"].isoformat(), _text_cell(data["widget"] or "all"),
               d.get("impressions") or 0, d.get("clicks") or 0, _ratio_cell(d["ctr"]),
               d.get("cart_adds") or 0, d.get("orders") or 0, d.get("units") or 0,
               _money_cell(d.get("revenue") or 0), d["shop_orders"],
               _money_cell(d["shop_revenue"] or 0), _ratio_cell(d["share"]),
               _money_cell(d["aov_with"]), _money_cell(d["aov_without"]), d["window"])
