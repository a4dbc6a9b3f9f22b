"""Headless Chromium: staff create and start an A/B experiment in the admin, the storefront
shows each visitor their arm (and logs the exposure when the widget, or the empty spot of
"no widget", is in view), and the results page renders its chart and verdict.

Needs the ``playwright`` package and Debian's Chromium (``/usr/bin/chromium``).
"""

import time

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from shop_recs.analytics import experiments
from shop_recs.ingest import pseudonymise
from shop_recs.models import Experiment, Exposure
from shop_recs.ranking import Visitor
from tests.browser import MARKS, browser  # noqa: F401 (fixture)
from tests.serving_data import serving_shop

pytestmark = MARKS


def wait_for(predicate, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_staff_run_an_experiment_and_shoppers_see_their_arms(live_server, browser):
    products, run, _ = serving_shop()
    User.objects.create_superuser("boss", "boss@example.com", "correct horse")
    staff = browser.new_page()
    staff.set_default_timeout(15_000)
    staff.goto(live_server.url + reverse("admin:login"))
    staff.fill("#id_username", "boss")
    staff.fill("#id_password", "correct horse")
    staff.click('input[type="submit"]')

    staff.goto(live_server.url + reverse("admin:shop_recs_experiment_add"))
    staff.fill("#id_name", "Widget or not")
    staff.select_option("#id_placement", "fbt")
    staff.fill("#id_arms-0-name", "no widget")
    staff.select_option("#id_arms-0-kind", "no_widget")
    staff.fill("#id_arms-1-name", "model")
    staff.select_option("#id_arms-1-kind", "active_run")
    staff.fill("#id_arms-1-position", "1")
    with staff.expect_navigation():
        staff.click('input[name="_continue"]')
    with staff.expect_navigation():
        staff.click('[data-experiment-action="start"]')
    assert "running" in staff.content()
    experiment = Experiment.objects.get()
    assert experiment.status == "running"
    arms = {arm.kind: arm for arm in experiment.arms.all()}

    seen = set()
    for _ in range(16):
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(live_server.url + reverse("shop_demo:product", args=[products[0].pk]))
        key = next(c["value"] for c in context.cookies() if c["name"] == "sessionid")
        unit = experiments.unit_for(Visitor(None, pseudonymise("session", key)))
        arm = experiments.choose(experiment.salt, unit,
                                 experiments.load_plans()["fbt"].arms)
        widget = page.locator('section.shop-recs-fbt[data-shop-recs-widget="fbt"]')
        if arm.kind == "no_widget":
            assert widget.count() == 0
            assert page.locator("[data-shop-recs-holdout]").count() == 1
        else:
            widget.wait_for()
            assert widget.get_attribute("data-run-id") == str(run.pk)
            ids = widget.locator("[data-product-id]").evaluate_all(
                "nodes => nodes.map(n => n.dataset.productId)")
            assert str(products[1].pk) in ids
        # widget.js posts the exposure once the spot is in view: the visitor's own arm.
        assert wait_for(lambda: Exposure.objects.filter(unit=unit).exists()), arm.kind
        assert Exposure.objects.get(unit=unit).arm_id == arms[arm.kind].pk
        seen.add(arm.kind)
        context.close()
        if len(seen) == 2 and Exposure.objects.count() >= 4:
            break
    assert seen == {"no_widget", "active_run"}

    staff.goto(live_server.url + reverse("admin:shop_recs_experiment_results",
                                         args=[experiment.pk]))
    verdict = staff.locator("[data-verdict]")
    assert verdict.get_attribute("data-verdict") == "early"
    assert "Keep it running" in verdict.inner_text()
    assert staff.locator("[data-experiment-chart] svg").count() == 1
    rows = staff.locator("[data-experiment-arms] tbody tr")
    assert rows.count() == 2 and staff.locator("[data-ship-arm]").count() == 2
