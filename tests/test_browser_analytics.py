"""The analytics page in headless Chromium at 1280 px: charts drawn, tables within the page.

Needs the ``playwright`` package and Debian's Chromium (``/usr/bin/chromium``).
"""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from shop_recs.analytics import rollups
from shop_recs.models import Bundle
from tests.browser import MARKS, browser, browser_page  # noqa: F401 (fixtures)
from tests.test_analytics_rollups import DAY, shop  # noqa: F401 (fixture)

pytestmark = MARKS


def test_analytics_page_fits_1280px_with_its_charts(live_server, browser_page, shop,  # noqa: F811
                                                    tmp_path):
    Bundle.objects.create(pk=3, anchor=shop["c"], signature="s3", status="approved")
    rollups.rollup_days(rollups.days_since(DAY - timedelta(days=10), DAY + timedelta(days=1)))
    User.objects.create_superuser("owner", "owner@example.com", "correct horse")
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(live_server.url + reverse("admin:login"))
    page.fill("#id_username", "owner")
    page.fill("#id_password", "correct horse")
    page.click('input[type="submit"]')
    page.goto(live_server.url + reverse("admin:shop_recs_widgetdaystat_changelist")
              + f"?start={DAY - timedelta(days=10)}&end={DAY}")
    folder = Path(os.environ.get("SHOP_RECS_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "analytics_1280.png"), full_page=True)
    assert page.locator(".shop-recs-charts svg").count() == 4
    overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 1, f"the page is {overflow}px wider than the window"
    assert page.locator("[data-shop-recs-summary] tbody tr").count() == 3  # cart, fbt, all
    page.select_option("#id_widget", "cart")
    page.click("text=Show")
    assert page.locator("[data-shop-recs-summary] tbody tr").count() == 1
    assert "widget=cart" in page.url
