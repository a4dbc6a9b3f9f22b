"""The admin's widget analytics page and its CSV export, read from the roll-ups."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from shop_recs.analytics import rollups
from shop_recs.analytics.models import WidgetDayStat
from shop_recs.models import Bundle, Interaction, Product
from tests.test_analytics_rollups import DAY, shop  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

URL = "admin:shop_recs_widgetdaystat_changelist"
RANGE = {"start": (DAY - timedelta(days=10)).isoformat(), "end": DAY.isoformat()}


@pytest.fixture
def rolled_up(shop):  # noqa: F811
    Bundle.objects.create(pk=3, anchor=shop["c"], signature="s3",
                          status=Bundle.Status.APPROVED)
    rollups.rollup_days(rollups.days_since(DAY - timedelta(days=10), DAY + timedelta(days=1)))
    return shop


def page(client, **params):
    return client.get(reverse(URL), params)


def test_the_page_shows_widgets_runs_bundles_days_and_the_window(admin_client, rolled_up):
    response = page(admin_client, **RANGE)
    assert response.status_code == 200
    data = response.context["data"]
    fbt = next(r for r in data["summary"] if r["widget"] == "fbt")
    assert (fbt["orders"], fbt["revenue"], fbt["clicks"], fbt["impressions"]) == (2, 60, 1, 2)
    assert fbt["ctr"] == 0.5
    # Shop revenue 285 over 5 orders; orders with an fbt item are worth 160 over 2.
    assert fbt["share"] == Decimal(60) / 285
    assert (fbt["aov_with"], fbt["aov_without"]) == (80, Decimal(125) / 3)
    assert data["total"]["orders"] == 3 and data["windows"] == [7]
    assert [r["run_ref"] for r in data["runs"]] == [8, 7]
    assert [r["bundle_ref"] for r in data["bundles"]] == [3]
    content = response.content.decode()
    assert "at most 7 days before" in content
    assert "<svg" in content and 'aria-label="Attributed revenue' in content
    assert ">10 Mar</text>" in content  # the charts' x axis is labelled with days
    assert reverse("admin:shop_recs_trainingrun_change", args=[7]) in content
    assert "2026-03-10" in content


def test_the_widget_filter_narrows_every_table(admin_client, rolled_up):
    data = page(admin_client, widget="cart", **RANGE).context["data"]
    assert [r["widget"] for r in data["summary"]] == ["cart"]
    assert [(r["run_ref"], r["revenue"]) for r in data["runs"]] == [(7, 5)]
    assert sum(d.get("revenue") or 0 for d in data["daily"]) == 5
    data = page(admin_client, widget="fbt", **RANGE).context["data"]
    assert data["bundles"] == [] and sum(d.get("orders") or 0 for d in data["daily"]) == 2


def test_the_date_range_filters_the_days(admin_client, rolled_up):
    data = page(admin_client, start=(DAY + timedelta(days=1)).isoformat(),
                end=(DAY + timedelta(days=1)).isoformat()).context["data"]
    assert [r["widget"] for r in data["summary"]] == ["api"]
    assert [d["day"] for d in data["daily"]] == [DAY + timedelta(days=1)]
    # No range given: the 30 days up to the last rolled-up day.
    data = page(admin_client).context["data"]
    assert data["last"] == DAY + timedelta(days=1) and len(data["daily"]) == 12


@pytest.mark.parametrize("params, message", [
    ({"start": "2026-03-10", "end": "2026-03-01"}, "must not be after"),
    ({"start": "yesterday"}, "Enter a valid date"),
    ({"widget": "nope"}, "Select a valid choice"),
    ({"start": "2000-01-01", "end": "2026-03-01"}, "at most"),
])
def test_bad_filters_are_explained(admin_client, rolled_up, params, message):
    response = page(admin_client, **params)
    assert response.status_code == 200 and response.context["data"] is None
    assert message in response.content.decode()
    response = page(admin_client, format="csv", **params)
    assert response.status_code == 400 and message in response.content.decode()


def test_csv_export(admin_client, rolled_up):
    response = page(admin_client, format="csv", widget="fbt", **RANGE)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 11
    day = next(r for r in rows if r["day"] == DAY.isoformat())
    assert day == {**day, "widget": "fbt", "impressions": "2", "clicks": "1", "ctr": "0.5000",
                   "cart_adds": "3", "attributed_orders": "2", "attributed_units": "4",
                   "attributed_revenue": "60.00", "shop_orders": "5", "shop_revenue": "285.00",
                   "revenue_share": "0.2105", "aov_with_widget_item": "80.00",
                   "aov_without": "41.67", "attribution_window_days": "7"}
    quiet = next(r for r in rows if r["day"] == (DAY - timedelta(days=1)).isoformat())
    assert quiet["impressions"] == "0" and quiet["ctr"] == "" and quiet["shop_orders"] == "0"


def test_product_names_are_escaped(admin_client, rolled_up):
    Product.objects.filter(sku="C").update(name="<script>alert(1)</script>")
    content = page(admin_client, **RANGE).content.decode()
    assert "<script>alert(1)</script>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content


def test_the_page_needs_the_view_permission(client, rolled_up):
    user = User.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(user)
    assert page(client).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_widgetdaystat"))
    assert page(client).status_code == 200
    assert client.get(reverse("admin:shop_recs_widgetdaystat_add")).status_code == 403


def test_query_count_does_not_grow_with_the_data(admin_client, rolled_up,
                                                 django_assert_max_num_queries):
    with django_assert_max_num_queries(14) as few:
        page(admin_client, **RANGE)
    # Ten times the days, runs and bundles: the same queries.
    WidgetDayStat.objects.bulk_create([
        WidgetDayStat(day=DAY - timedelta(days=d), grain=grain, widget="fbt",
                      run_ref=100 + d if grain == "run" else None,
                      bundle_ref=100 + d if grain == "bundle" else None, impressions=5)
        for d in range(100) for grain in ("widget", "run", "bundle")])
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert page(admin_client, start=(DAY - timedelta(days=120)).isoformat(),
                    end=DAY.isoformat()).status_code == 200


def test_interactions_alone_show_an_empty_page_that_says_how_to_fill_it(admin_client):
    product = Product.objects.create(sku="Z", name="Z")
    Interaction.objects.create(kind="view", product=product, timestamp=rollups.timezone.now())
    content = page(admin_client).content.decode()
    assert "No day of this range is rolled up yet" in content
