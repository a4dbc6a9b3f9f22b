"""The results page reads the experiments' roll-ups: moments summed in SQL give the same
statistics as per-visitor arrays; the hourly task and "Update the figures now" write them;
the page states its method (fixed horizon or sequential)."""

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from shop_recs.analytics import experiments, rollups, stats
from shop_recs.models import Arm, Experiment, ExperimentUnitDay, Exposure, Interaction
from tests.serving_data import serving_shop


def test_moments_give_the_statistics_of_the_per_visitor_arrays():
    rng = np.random.default_rng(1)
    orders = rng.poisson(0.3, 500).astype(float)
    revenue = orders * rng.lognormal(2, 1, 500)
    clicks, impressions = rng.poisson(0.5, 500).astype(float), rng.poisson(3, 500).astype(float)
    arrays = stats.ArmData("a", 1, revenue, orders, revenue / 3, clicks, impressions)

    def moments(x, y=None):
        if y is None:
            return stats.Moments(500, x.sum(), (x * x).sum())
        return stats.Moments(500, x.sum(), (x * x).sum(), y.sum(), (y * y).sum(), (x * y).sum())

    converted = (orders > 0).astype(float)
    sums = stats.ArmSums("a", 1, 500, {
        "conversion": moments(converted), "rpv": moments(revenue),
        "widget_rpv": moments(revenue / 3), "aov": moments(revenue, orders),
        "ctr": moments(clicks, impressions)})
    for key in stats.METRICS:
        expected, got = arrays.estimate(key), sums.estimate(key)
        assert got.value == pytest.approx(expected.value, rel=1e-9)
        assert got.variance == pytest.approx(expected.variance, rel=1e-6)


@pytest.mark.django_db
def test_the_hourly_task_rolls_up_and_the_page_reads_it_and_states_its_method(client):
    p, _, _ = serving_shop()
    exp = Experiment.objects.create(name="seq", placement="fbt", sequential=True)
    for position, kind in enumerate((Arm.Kind.NO_WIDGET, Arm.Kind.ACTIVE_RUN)):
        Arm.objects.create(experiment=exp, name=kind, kind=kind, position=position)
    exp = experiments.start(exp)
    a, b = exp.arms.order_by("position")
    now = timezone.now()
    Exposure.objects.bulk_create([Exposure(experiment=exp, arm=arm, unit=f"v{i}",
                                           first_exposed_at=now)
                                  for i, arm in enumerate([a, b] * 5)])
    Interaction.objects.bulk_create([
        Interaction(product=p[1], kind=Interaction.Kind.PURCHASE, order_id=f"o{i}", quantity=1,
                    unit_price=Decimal("7.50"), visitor_id=f"v{i}",
                    timestamp=now + timedelta(seconds=1)) for i in range(4)])
    client.force_login(get_user_model().objects.create_superuser("boss", "b@example.com", "pw"))
    url = reverse("admin:shop_recs_experiment_results", args=[exp.pk])
    html = client.get(url).content.decode()
    assert 'data-analysis-mode="sequential"' in html and "always-valid" in html
    assert not ExperimentUnitDay.objects.exists()  # the page itself reads no raw events
    rollups.rollup_pending()  # what the hourly task runs
    assert ExperimentUnitDay.objects.count() == 4
    html = client.get(url).content.decode()
    assert "<td>15.00</td>" in html  # two orders of 7.50 in each arm
    ExperimentUnitDay.objects.all().delete()
    # The page reads the per-arm sums the roll-up stored, not a row per visitor.
    assert "<td>15.00</td>" in client.get(url).content.decode()
    client.post(reverse("admin:shop_recs_experiment_rollup", args=[exp.pk]))
    assert ExperimentUnitDay.objects.count() == 4
    Experiment.objects.filter(pk=exp.pk).update(sequential=False)
    assert 'data-analysis-mode="fixed"' in client.get(url).content.decode()
