"""Daily analytics roll-ups: planted events give known numbers; re-runs give the same rows."""

from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db.models import Sum

from shop_recs import privacy
from shop_recs.analytics import rollups
from shop_recs.analytics.models import ShopDayStat, WidgetDayStat
from shop_recs.models import Interaction, Product

pytestmark = pytest.mark.django_db

K = Interaction.Kind
DAY = date(2026, 3, 10)  # London is on UTC in early March: noon UTC is noon local
NOON = datetime(2026, 3, 10, 12, tzinfo=dt_timezone.utc)
FIELDS = ("day", "grain", "widget", "run_ref", "bundle_ref", "impressions", "clicks",
          "cart_adds", "orders", "lines", "units", "revenue", "order_value")


def at(minutes=0, days=0):
    return NOON + timedelta(minutes=minutes, days=days)


def event(kind, product, visitor="", minutes=0, days=0, user=None, order="", quantity=1,
          widget="", run=None, bundle=None, price=None):
    return Interaction(kind=kind, product=product, visitor_id=visitor, user=user,
                       order_id=order, quantity=quantity, unit_price=price,
                       timestamp=at(minutes, days), widget=widget, run_ref=run,
                       bundle_ref=bundle)


@pytest.fixture
def shop():
    """Five orders on DAY; what each should count for is said beside it."""
    a, b, c, x = (Product.objects.create(sku=s, name=f"<i>{s}</i>", price=p)
                  for s, p in (("A", 10), ("B", 20), ("C", 5), ("X", 100)))
    user = User.objects.create(username="u5")
    Interaction.objects.bulk_create([
        # v1 sees A and B in the FBT widget of run 7, clicks B, adds B and A from it.
        event(K.WIDGET_IMPRESSION, a, "v1", widget="fbt", run=7),
        event(K.WIDGET_IMPRESSION, b, "v1", widget="fbt", run=7),
        event(K.WIDGET_CLICK, b, "v1", 1, widget="fbt", run=7),
        event(K.CART_ADD, b, "v1", 2, widget="fbt", run=7),
        event(K.CART_ADD, a, "v1", 3, widget="fbt", run=7),
        event(K.VIEW, x, "v1", 4),
        # o1: two attributed lines of (fbt, run 7) and one unattributed line: value 150.
        event(K.PURCHASE, b, "v1", 60, order="o1", quantity=2, price=20, widget="fbt", run=7),
        event(K.PURCHASE, a, "v1", 60, order="o1", price=10, widget="fbt", run=7),
        event(K.PURCHASE, x, "v1", 60, order="o1", price=100),
        # v2 adds bundle 3 from the cart widget; A's line claims it too but v2 never touched A.
        event(K.WIDGET_IMPRESSION, c, "v2", widget="cart", run=7, bundle=3),
        event(K.BUNDLE_ADD_TO_CART, c, "v2", 5, widget="cart", run=7, bundle=3),
        event(K.PURCHASE, c, "v2", 70, order="o2", price=5, widget="cart", run=7, bundle=3),
        event(K.PURCHASE, a, "v2", 70, order="o2", price=10, widget="cart", run=7, bundle=3),
        # v3 added A from the widget ten days before buying it: outside a 7-day window.
        event(K.CART_ADD, a, "v3", days=-10, widget="fbt", run=7),
        event(K.PURCHASE, a, "v3", 80, order="o3", price=10, widget="fbt", run=7),
        # v4 buys without any widget.
        event(K.PURCHASE, x, "v4", 90, order="o4", price=100),
        # A signed-in shopper without a visitor id: matched by user (run 8).
        event(K.CART_ADD, a, "", 6, user=user, widget="fbt", run=8),
        event(K.PURCHASE, a, "", 100, user=user, order="o5", price=10, widget="fbt", run=8),
        # Tomorrow: one impression; yesterday-but-nine: nothing counted on DAY.
        event(K.WIDGET_IMPRESSION, a, "v6", days=1, widget="api"),
    ])
    return {"a": a, "b": b, "c": c, "x": x, "user": user}


def stat(grain, widget="", run=None, bundle=None, day=DAY):
    return WidgetDayStat.objects.get(day=day, grain=grain, widget=widget, run_ref=run,
                                     bundle_ref=bundle)


def counts(row):
    return {f: getattr(row, f) for f in FIELDS[5:]}


def expect(impressions=0, clicks=0, cart_adds=0, orders=0, lines=0, units=0, revenue=0,
           order_value=0):
    return {"impressions": impressions, "clicks": clicks, "cart_adds": cart_adds,
            "orders": orders, "lines": lines, "units": units, "revenue": Decimal(revenue),
            "order_value": Decimal(order_value)}


def snapshot():
    return sorted(WidgetDayStat.objects.values_list(*FIELDS), key=str)


def test_planted_day_per_widget_run_and_bundle(shop):
    rollups.rollup_day(DAY)
    day = ShopDayStat.objects.get(day=DAY)
    assert (day.orders, day.lines, day.revenue) == (5, 8, Decimal("285.00"))
    assert day.attribution_window_days == 7
    assert counts(stat("widget", "fbt")) == expect(2, 1, 3, 2, 3, 4, 60, 160)
    assert counts(stat("widget", "cart")) == expect(1, 0, 1, 1, 1, 1, 5, 15)
    assert counts(stat("widget")) == expect(3, 1, 4, 3, 4, 5, 65, 175)
    assert counts(stat("run", "fbt", run=7)) == expect(2, 1, 2, 1, 2, 3, 50, 150)
    assert counts(stat("run", "fbt", run=8)) == expect(0, 0, 1, 1, 1, 1, 10, 10)
    assert counts(stat("run", run=7)) == expect(3, 1, 3, 2, 3, 4, 55, 165)
    assert counts(stat("bundle", "cart", bundle=3)) == expect(1, 0, 1, 1, 1, 1, 5, 15)
    assert counts(stat("bundle", bundle=3)) == expect(1, 0, 1, 1, 1, 1, 5, 15)
    # Only bundles have bundle rows; tomorrow's impression is tomorrow's.
    assert not WidgetDayStat.objects.filter(grain="bundle", bundle_ref__isnull=True).exists()
    assert not WidgetDayStat.objects.filter(widget="api").exists()


def test_a_longer_window_credits_the_older_add(shop):
    rollups.rollup_day(DAY, window_days=14)
    assert counts(stat("widget", "fbt")) == expect(2, 1, 3, 3, 4, 5, 70, 170)
    assert ShopDayStat.objects.get(day=DAY).attribution_window_days == 14


def test_a_rerun_gives_the_same_rows(shop):
    rollups.rollup_days(rollups.days_since(DAY - timedelta(days=10), DAY + timedelta(days=1)))
    first = snapshot()
    assert len(first) > 10
    rollups.rollup_days(rollups.days_since(DAY - timedelta(days=10), DAY + timedelta(days=1)))
    assert snapshot() == first
    assert ShopDayStat.objects.count() == 12


def test_a_past_day_is_recomputed_alone(shop):
    rollups.rollup_days([DAY - timedelta(days=10), DAY, DAY + timedelta(days=1)])
    others = [r for r in snapshot() if r[0] != DAY]
    Interaction.objects.create(kind=K.WIDGET_IMPRESSION, product=shop["b"], visitor_id="v9",
                               timestamp=at(300), widget="fbt", run_ref=7)
    rollups.rollup_day(DAY)
    assert stat("widget", "fbt").impressions == 3
    assert [r for r in snapshot() if r[0] != DAY] == others


def test_pending_days_start_at_the_first_event_then_at_the_last_rolled_up_day(shop):
    today = rollups.local_day(rollups.timezone.now())
    days = rollups.pending_days()
    assert days[0] == DAY - timedelta(days=10) and days[-1] == today
    rollups.rollup_days([DAY])
    assert rollups.pending_days()[0] == DAY - timedelta(days=1)


def test_command_and_task_roll_up(shop):
    from shop_recs.tasks import rollup_analytics

    call_command("shop_recs_rollup", "--day", DAY.isoformat(), verbosity=0)
    assert stat("widget", "fbt").orders == 2
    call_command("shop_recs_rollup", "--since", (DAY + timedelta(days=1)).isoformat(),
                 verbosity=0)
    assert stat("widget", "api", day=DAY + timedelta(days=1)).impressions == 1
    WidgetDayStat.objects.all().delete()
    ShopDayStat.objects.all().delete()
    summary = rollup_analytics.apply().get()
    assert summary["days"] >= 12 and stat("widget", "cart").revenue == Decimal("5.00")


@pytest.mark.parametrize("args, message", [
    (["--day", "2026-13-01"], "YYYY-MM-DD"),
    (["--day", "2026-03-01", "--since", "2026-01-01"], "not both"),
    (["--since", "2999-01-01"], "future"),
])
def test_command_refuses_bad_days(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("shop_recs_rollup", *args, verbosity=0)


def test_roll_ups_hold_aggregates_only_and_follow_an_erasure(shop):
    """No visitor, user or order id is stored: erasure has nothing to delete here, and a
    recompute of the day drops the erased shopper's numbers."""
    columns = {f.name for f in WidgetDayStat._meta.fields} | {
        f.name for f in ShopDayStat._meta.fields}
    assert not columns & {"visitor_id", "user", "order_id", "session_key"}
    rollups.rollup_day(DAY)
    privacy.erase_user(visitor_id="v1")
    rollups.rollup_day(DAY)
    assert counts(stat("widget", "fbt")) == expect(0, 0, 1, 1, 1, 1, 10, 10)
    assert WidgetDayStat.objects.filter(day=DAY).aggregate(n=Sum("clicks"))["n"] == 0


def test_migrate_schedules_the_hourly_roll_up_enabled():
    from django_celery_beat.models import PeriodicTask

    from shop_recs.schedule import ROLLUP_TASK_NAME

    task = PeriodicTask.objects.get(name=ROLLUP_TASK_NAME)
    assert task.task == "shop_recs.rollup_analytics" and task.enabled is True
    assert (str(task.crontab.minute), str(task.crontab.hour)) == ("10", "*")
