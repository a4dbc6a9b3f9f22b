"""A/B experiments: assignment, serving each arm, exposure on render only, one experiment
per placement, ship, erasure (statistics: tests/test_stats.py)."""

import re
from collections import Counter

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core import checks
from django.test import Client
from django.urls import reverse

from shop_recs import privacy
from shop_recs.analytics import experiments
from shop_recs.models import (Arm, Experiment, ExperimentUnitDay, Exposure, Recommendation,
                              TrainingRun)
from shop_recs.ranking import Visitor
from tests.serving_data import serving_shop

pytestmark = pytest.mark.django_db

EXPOSURE_URL = "/api/shop-recs/v1/experiments/exposure/"


def other_run(products):
    """A second succeeded run that recommends p11 only for p0."""
    run = TrainingRun.objects.create(status=TrainingRun.Status.SUCCEEDED, pending=None,
                                     shipped_model="ease")
    Recommendation.objects.create(run=run, product=products[0], recommended=products[11],
                                  rank=1, score=1.0, source="ease")
    return run


def experiment(arms, placement=Experiment.Placement.FBT, start=True, **fields):
    exp = Experiment.objects.create(name="widget test", placement=placement, **fields)
    for position, (name, kind, run) in enumerate(arms):
        Arm.objects.create(experiment=exp, name=name, kind=kind, run=run, position=position)
    return experiments.start(exp) if start else exp


def page(client, product):
    html = client.get(reverse("shop_demo:product", args=[product.pk])).content.decode()
    start = html.find("shop-recs-")
    return html[start:] if start >= 0 else ""


def arm_of(client, exp):
    unit = experiments.unit_for(Visitor(None, experiments.pseudonymise(
        "session", client.session.session_key)))
    return experiments.choose(exp.salt, unit, experiments.load_plans()[exp.placement].arms)


def test_assignment_is_sticky_and_follows_the_weights():
    arms = [experiments.ArmPlan(1, 1, "a", Arm.Kind.ACTIVE_RUN, None, 1),
            experiments.ArmPlan(2, 1, "b", Arm.Kind.NO_WIDGET, None, 3)]
    picks = Counter(experiments.choose("salt", f"unit-{i}", arms).pk for i in range(8000))
    assert 0.23 <= picks[1] / 8000 <= 0.27
    assert all(experiments.choose("salt", f"unit-{i}", arms).pk
               == experiments.choose("salt", f"unit-{i}", arms).pk for i in range(200))
    # Another experiment (salt) splits the same visitors independently.
    other = Counter((experiments.choose("salt", f"unit-{i}", arms).pk,
                     experiments.choose("pepper", f"unit-{i}", arms).pk) for i in range(8000))
    assert 0.05 <= other[(1, 1)] / 8000 <= 0.075  # 1/4 x 1/4
    # A logged-in user keeps the arm whatever the session.
    assert (experiments.unit_for(Visitor(7, "session-a"))
            == experiments.unit_for(Visitor(7, "session-b")) != "session-a")
    assert experiments.unit_for(Visitor()) == ""


def test_each_visitor_sees_their_arm_and_exposure_is_logged_only_when_seen():
    p, run, _ = serving_shop()
    exp = experiment([("model", Arm.Kind.ACTIVE_RUN, None), ("ease", Arm.Kind.RUN, other_run(p)),
                      ("none", Arm.Kind.NO_WIDGET, None)])
    seen = Counter()
    for _ in range(30):
        client = Client()
        html = page(client, p[0])
        arm = arm_of(client, exp)
        seen[arm.kind] += 1
        ids = re.findall(r'data-product-id="([^"]+)"', html)
        if arm.kind == Arm.Kind.NO_WIDGET:
            assert "data-shop-recs-holdout" in html and not ids
        elif arm.kind == Arm.Kind.RUN:
            # The approved bundle (p9, p10), then the other run's list instead of the serving one.
            assert ids == [str(p[9].pk), str(p[10].pk), str(p[11].pk)]
            assert f'data-run-id="{arm.run}"' in html
        else:
            assert str(p[1].pk) in ids and f'data-run-id="{run.pk}"' in html
        assert Exposure.objects.count() == sum(seen.values()) - 1  # rendering logs nothing
        token = re.search(r'data-exposure="([^"]+)"', html).group(1)
        assert client.post(EXPOSURE_URL, {"token": token},
                           content_type="application/json").status_code == 204
        client.post(EXPOSURE_URL, {"token": token}, content_type="application/json")
    assert set(seen) == {Arm.Kind.ACTIVE_RUN, Arm.Kind.RUN, Arm.Kind.NO_WIDGET}
    # One exposure per visitor, in the arm they were shown.
    assert Exposure.objects.count() == 30
    assert Counter(Exposure.objects.values_list("arm__kind", flat=True)) == seen


def test_a_warm_process_sees_an_experiment_start_and_stop_on_the_next_request():
    p, _, _ = serving_shop()
    client = Client()
    page(client, p[0])
    assert "data-exposure" not in page(client, p[0])  # warm: the plans are this process's
    exp = experiment([("model", Arm.Kind.ACTIVE_RUN, None), ("none", Arm.Kind.NO_WIDGET, None)])
    assert "data-exposure" in page(client, p[0])  # either arm carries its exposure token
    experiments.stop(exp)
    html = page(client, p[0])
    assert "data-exposure" not in html and "data-product-id" in html


def test_a_token_of_another_arm_or_a_paused_experiment_logs_nothing():
    p, _, _ = serving_shop()
    exp = experiment([("a", Arm.Kind.ACTIVE_RUN, None), ("b", Arm.Kind.FALLBACK, None)])
    client = Client()
    page(client, p[0])
    mine = arm_of(client, exp)
    theirs = next(a for a in experiments.load_plans()["fbt"].arms if a.pk != mine.pk)
    for token in (experiments.exposure_token(theirs), "forged", ""):
        client.post(EXPOSURE_URL, {"token": token}, content_type="application/json")
    assert not Exposure.objects.exists()
    experiments.pause(exp)
    assert "data-exposure" not in page(client, p[0])  # paused: served as usual
    client.post(EXPOSURE_URL, {"token": experiments.exposure_token(mine)},
                content_type="application/json")
    assert not Exposure.objects.exists()


def test_a_warm_widget_in_an_experiment_costs_no_query(django_assert_num_queries):
    p, _, _ = serving_shop()
    experiment([("a", Arm.Kind.ACTIVE_RUN, None), ("b", Arm.Kind.RUN, other_run(p))])
    client = Client()
    page(client, p[0])
    from django.template import Context, Template
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.session = client.session
    tag = Template("{% load shop_recs %}{% frequently_bought_together product %}")
    first = tag.render(Context({"request": request, "product": p[0]}))
    with django_assert_num_queries(0):
        again = tag.render(Context({"request": request, "product": p[0]}))
    assert "data-exposure" in first and again.count("data-product-id") == first.count(
        "data-product-id")


def test_a_new_run_leaves_the_plans_cached_and_a_cold_answer_within_three_queries(
        django_assert_max_num_queries):
    from shop_recs import ranking

    p, _, _ = serving_shop()
    exp = experiment([("a", Arm.Kind.ACTIVE_RUN, None), ("b", Arm.Kind.NO_WIDGET, None)],
                     placement=Experiment.Placement.API)
    client = Client()
    page(client, p[0])  # a session: the visitor is in the experiment
    url = f"/api/shop-recs/v1/products/{p[0].pk}/frequently-bought-together/"
    assert client.get(url).json()["exposure"]
    ranking.invalidate()  # what a new run, a bundle decision or a fallback refresh does
    with django_assert_max_num_queries(3):  # the session, the candidates, the products
        assert client.get(url).json()["exposure"]
    # An experiment change is seen at once: the plans are read again.
    for name, weight in (("a", 0), ("b", 1)):
        arm = Arm.objects.get(experiment=exp, name=name)
        arm.weight = weight
        arm.save()
    token = client.get(url).json()["exposure"]
    assert experiments.read_exposure_token(token)[1] == Arm.objects.get(experiment=exp,
                                                                        name="b").pk


def test_api_serves_the_arm_with_its_exposure_token():
    p, _, _ = serving_shop()
    exp = experiment([("none", Arm.Kind.NO_WIDGET, None), ("none too", Arm.Kind.NO_WIDGET, None)],
                     placement=Experiment.Placement.API)
    client = Client()
    page(client, p[0])  # a session
    body = client.get(f"/api/shop-recs/v1/products/{p[0].pk}/frequently-bought-together/").json()
    assert body["items"] == [] and body["exposure"]
    assert experiments.read_exposure_token(body["exposure"])[0] == exp.pk
    anonymous = Client().get(
        f"/api/shop-recs/v1/products/{p[0].pk}/frequently-bought-together/").json()
    assert anonymous["items"] and anonymous["exposure"] == ""  # no session: not in it


def test_one_experiment_per_placement_in_start_and_in_the_check():
    p, _, _ = serving_shop()
    first = experiment([("a", Arm.Kind.ACTIVE_RUN, None), ("b", Arm.Kind.NO_WIDGET, None)])
    second = experiment([("a", Arm.Kind.ACTIVE_RUN, None), ("b", Arm.Kind.FALLBACK, None)],
                        start=False)
    with pytest.raises(experiments.ExperimentError, match="One experiment per placement"):
        experiments.start(second)
    assert not [e for e in checks.run_checks(databases=["default"]) if e.id == "shop_recs.E030"]
    Experiment.objects.filter(pk=second.pk).update(status=Experiment.Status.RUNNING)
    errors = [e for e in checks.run_checks(databases=["default"]) if e.id == "shop_recs.E030"]
    assert len(errors) == 1 and "widget test" in errors[0].msg
    experiments.stop(first)
    assert experiments.start(Experiment.objects.get(pk=second.pk)).status == "running"
    # Another placement is free.
    third = experiment([("a", Arm.Kind.ACTIVE_RUN, None), ("b", Arm.Kind.NO_WIDGET, None)],
                       placement=Experiment.Placement.CART)
    assert third.status == "running"


def test_start_refuses_broken_arms():
    serving_shop()
    lonely = experiment([("a", Arm.Kind.ACTIVE_RUN, None)], start=False)
    with pytest.raises(experiments.ExperimentError, match="at least two arms"):
        experiments.start(lonely)
    runless = experiment([("a", Arm.Kind.ACTIVE_RUN, None), ("b", Arm.Kind.RUN, None)],
                         start=False)
    with pytest.raises(experiments.ExperimentError, match="succeeded training run"):
        experiments.start(runless)


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


def test_staff_create_start_read_results_and_ship_in_the_admin(staff):
    p, run, _ = serving_shop()
    prefix = "arms"
    form = {"name": "Model vs nothing", "placement": "fbt", "baseline_conversion": "0.05",
            "minimum_effect": "0.1", "planned_visitors": "",
            f"{prefix}-TOTAL_FORMS": "2", f"{prefix}-INITIAL_FORMS": "0",
            f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000",
            f"{prefix}-0-position": "0", f"{prefix}-0-name": "none",
            f"{prefix}-0-kind": "no_widget", f"{prefix}-0-weight": "1",
            f"{prefix}-1-position": "1", f"{prefix}-1-name": "model",
            f"{prefix}-1-kind": "active_run", f"{prefix}-1-weight": "1"}
    add = reverse("admin:shop_recs_experiment_add")
    one_arm = {**form, f"{prefix}-TOTAL_FORMS": "1"}
    assert "at least two arms" in staff.post(add, one_arm).content.decode()
    lonely = experiment([("a", Arm.Kind.ACTIVE_RUN, None)], start=False)
    response = staff.get(reverse("admin:shop_recs_experiment_results", args=[lonely.pk]))
    assert response.status_code == 302
    lonely.delete()
    assert staff.post(add, form).status_code == 302
    exp = Experiment.objects.get()
    change = staff.get(reverse("admin:shop_recs_experiment_change", args=[exp.pk])).content
    assert b"visitors per arm" in change and b'data-experiment-action="start"' in change
    staff.post(reverse("admin:shop_recs_experiment_start", args=[exp.pk]))
    exp.refresh_from_db()
    assert exp.status == "running" and exp.planned_visitors > 1000
    arms_seen, shoppers = set(), 0
    while len(arms_seen) < 2 or shoppers < 6:  # new sessions land in either arm at random
        shopper = Client()
        token = re.search(r'data-exposure="([^"]+)"', page(shopper, p[0])).group(1)
        shopper.post(EXPOSURE_URL, {"token": token}, content_type="application/json")
        arms_seen.add(experiments.read_exposure_token(token)[1])
        shoppers += 1
        assert shoppers < 60
    results = staff.get(reverse("admin:shop_recs_experiment_results", args=[exp.pk]))
    html = results.content.decode()
    assert 'data-verdict="early"' in html and "<svg" in html and "Keep it running" in html
    none = exp.arms.get(kind="no_widget")
    staff.post(reverse("admin:shop_recs_experiment_ship", args=[exp.pk, none.pk]))
    exp.refresh_from_db()
    assert exp.status == "stopped" and exp.arms.get(pk=none.pk).shipped_at is not None
    assert LogEntry.objects.filter(object_id=str(exp.pk),
                                   change_message__contains="Shipped arm").exists()
    assert LogEntry.objects.filter(object_id=str(exp.pk), change_message="Started").exists()
    # Shipped "no widget": nobody sees the widget, and nothing is measured any more.
    assert "shop-recs-fbt" not in page(Client(), p[0])
    assert "data-exposure" not in page(Client(), p[0])


def test_erasure_removes_the_visitors_exposures():
    p, _, _ = serving_shop()
    exp = experiment([("a", Arm.Kind.ACTIVE_RUN, None), ("b", Arm.Kind.NO_WIDGET, None)])
    user = get_user_model().objects.create_user("shopper", password="pw")
    client = Client()
    client.force_login(user)
    token = re.search(r'data-exposure="([^"]+)"', page(client, p[0])).group(1)
    client.post(EXPOSURE_URL, {"token": token}, content_type="application/json")
    stranger = Client()
    token = re.search(r'data-exposure="([^"]+)"', page(stranger, p[0])).group(1)
    stranger.post(EXPOSURE_URL, {"token": token}, content_type="application/json")
    assert Exposure.objects.filter(unit=experiments.user_unit(user.pk)).exists()
    for exposure in Exposure.objects.all():  # their rolled-up sums
        ExperimentUnitDay.objects.create(experiment=exp, arm=exposure.arm, unit=exposure.unit,
                                         day=exposure.first_exposed_at.date(), orders=1)
    report = privacy.erase_user(user=user)
    assert report.exposures == 1
    assert list(Exposure.objects.values_list("experiment", flat=True)) == [exp.pk]
    assert list(ExperimentUnitDay.objects.values_list("unit", flat=True)) == [
        Exposure.objects.get().unit]


def test_check_reports_a_running_arm_that_lost_its_run():
    p, _, _ = serving_shop()
    run = other_run(p)
    experiment([("a", Arm.Kind.ACTIVE_RUN, None), ("b", Arm.Kind.RUN, run)])
    assert not [e for e in checks.run_checks(databases=["default"]) if e.id == "shop_recs.E031"]
    run.delete()  # the arm's run is set to NULL
    errors = [e for e in checks.run_checks(databases=["default"]) if e.id == "shop_recs.E031"]
    assert len(errors) == 1 and "succeeded training run" in errors[0].msg


def test_the_cart_widget_serves_its_placement_arm():
    from django.template import Context, Template
    from django.test import RequestFactory

    p, run, _ = serving_shop()
    exp = experiment([("model", Arm.Kind.ACTIVE_RUN, None), ("ease", Arm.Kind.RUN, other_run(p))],
                     placement=Experiment.Placement.CART)
    tag = Template("{% load shop_recs %}{% complete_the_cart products %}")
    kinds = set()
    for _ in range(12):
        client = Client()
        page(client, p[0])  # a session; the product page is another placement
        request = RequestFactory().get("/")
        request.session = client.session
        html = tag.render(Context({"request": request, "products": [p[0]]}))
        arm = arm_of(client, exp)
        kinds.add(arm.kind)
        ids = re.findall(r'data-product-id="([^"]+)"', html)
        assert (str(p[11].pk) in ids) == (arm.kind == Arm.Kind.RUN)
        assert experiments.read_exposure_token(
            re.search(r'data-exposure="([^"]+)"', html).group(1)) == (exp.pk, arm.pk)
    assert kinds == {Arm.Kind.ACTIVE_RUN, Arm.Kind.RUN}


def test_results_count_each_visitors_outcomes_after_their_first_exposure():
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from shop_recs.analytics import experiment_rollups, results, rollups
    from shop_recs.models import ExperimentUnitDay, Interaction

    p, _, _ = serving_shop()
    exp = experiment([("a", Arm.Kind.NO_WIDGET, None), ("b", Arm.Kind.ACTIVE_RUN, None)])
    a, b = exp.arms.order_by("position")
    user = get_user_model().objects.create_user("buyer")
    # Started 10 minutes ago, so every event below is in the past, whatever the time of day
    # (the roll-up covers the experiment's days through today).
    Experiment.objects.filter(pk=exp.pk).update(
        started_at=timezone.now() - timedelta(minutes=10))
    exp.refresh_from_db()
    now = exp.started_at + timedelta(minutes=1)  # exposed a minute after the start
    Exposure.objects.bulk_create([
        Exposure(experiment=exp, arm=a, unit="visitor-a", first_exposed_at=now),
        Exposure(experiment=exp, arm=b, unit=experiments.user_unit(user.pk), first_exposed_at=now),
        Exposure(experiment=exp, arm=b, unit="visitor-idle", first_exposed_at=now)])

    def line(order, product, price, when, widget="", **who):
        Interaction.objects.create(product=product, kind=Interaction.Kind.PURCHASE,
                                   order_id=order, quantity=2, unit_price=Decimal(price),
                                   timestamp=when, widget=widget, **who)

    later = now + timedelta(minutes=5)
    # During the experiment but before this visitor's exposure: not theirs to count.
    line("before", p[1], "100", now - timedelta(seconds=30), visitor_id="visitor-a")
    line("o1", p[1], "3", later, visitor_id="visitor-a")
    line("o1", p[2], "4", later, visitor_id="visitor-a")
    line("o2", p[3], "5", later, widget="fbt", user=user, visitor_id="some-session")
    line("o3", p[4], "1", later, user=user)
    line("stranger", p[5], "9", later, visitor_id="not-exposed")
    Interaction.objects.create(product=p[3], kind=Interaction.Kind.WIDGET_CLICK,
                               timestamp=later, user=user)
    # The hourly roll-up (here: every day of the experiment) writes the per-visitor sums.
    rollups.rollup_days(experiment_rollups.experiment_days(exp))
    assert {(r.unit, r.orders, r.revenue) for r in ExperimentUnitDay.objects.all()} == {
        ("visitor-a", 1, Decimal("14")), (experiments.user_unit(user.pk), 2, Decimal("12"))}
    exp.refresh_from_db()  # the roll-up stored the per-arm sums on it
    arm_a, arm_b = results.arm_data(exp)
    assert (arm_a.visitors, arm_a.revenue_total, arm_a.orders_total) == (1, 14.0, 1)
    assert (arm_b.visitors, arm_b.revenue_total, arm_b.orders_total) == (2, 12.0, 2)
    assert arm_b.moments["widget_rpv"].sx == 10.0 and arm_b.moments["ctr"].sx == 1
    assert arm_b.estimate("rpv").value == 6.0  # the idle visitor counts as a zero
    assert arm_b.estimate("conversion").value == 0.5
    # Re-running a day changes nothing (it is replaced whole).
    rows = sorted(ExperimentUnitDay.objects.values_list("unit", "day", "revenue", "clicks"))
    rollups.rollup_days(experiment_rollups.experiment_days(exp))
    assert sorted(ExperimentUnitDay.objects.values_list("unit", "day", "revenue",
                                                        "clicks")) == rows
