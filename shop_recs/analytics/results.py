"""The results of an experiment, from its roll-ups: fast whatever the number of events.

Usage::

    from shop_recs.analytics import results

    report = results.report(experiment)      # a stats.Report
    chart = results.exposure_chart(experiment)

Exposed visitors per arm are counted from the exposures (live); what they did after their
first exposure (orders, revenue, widget revenue, clicks, impressions) comes from the
per-visitor day sums of ``experiment_rollups`` (the hourly roll-up; ``rollup_recent`` for an
update now), so the page reads a table of one row per active visitor and day, summed in SQL
into the moments the statistics need, never the raw interactions. See
``experiment_rollups`` for who did what.
"""

from datetime import timedelta

from django.db.models import Case, Count, F, Max, Sum, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from shop_recs.analytics import experiment_rollups, stats
from shop_recs.analytics.days import local_day
from shop_recs.analytics.experiments import planned_visitors
from shop_recs.charts import line_chart
from shop_recs.models import ExperimentUnitDay, ShopDayStat


def rollup_recent(experiment):
    """Recompute the days the hourly roll-up has not made final (yesterday and today)."""
    today = local_day(timezone.now())
    days = [d for d in experiment_rollups.experiment_days(experiment)
            if d >= today - timedelta(days=1)]
    return sum(experiment_rollups.rollup_experiment_day(experiment, d) for d in days)


def last_rollup(experiment):
    """When the roll-ups that the figures come from were last computed (or None)."""
    return ShopDayStat.objects.aggregate(last=Max("computed_at"))["last"] if (
        ExperimentUnitDay.objects.filter(experiment=experiment).exists()) else None


def _moments(rows, x, y=None):
    """``stats.Moments`` of per-unit columns ``x`` (and ``y``) over ``rows`` (per-unit
    sums); units without a row count as zeros through ``n``."""
    sums = {"sx": Sum(x), "sxx": Sum(F(x) * F(x))}
    if y is not None:
        sums.update(sy=Sum(y), syy=Sum(F(y) * F(y)), sxy=Sum(F(x) * F(y)))
    return sums


def arm_data(experiment):
    """``[stats.ArmSums]`` in arm order (the first arm is the control): exposed visitors
    counted from the exposures, their outcomes summed from the roll-ups in SQL (one
    aggregate per arm over the per-visitor sums; no raw interaction is read)."""
    arms = list(experiment.arms.all())
    exposed = dict(experiment.exposures.order_by().values("arm_id").annotate(n=Count("pk"))
                   .values_list("arm_id", "n"))
    data = []
    for arm in arms:
        per_unit = (ExperimentUnitDay.objects.filter(experiment=experiment, arm=arm).order_by()
                    .values("unit").annotate(r=Sum("revenue"), o=Sum("orders"),
                                             w=Sum("widget_revenue"), c=Sum("clicks"),
                                             i=Sum("impressions"),
                                             b=Case(When(o__gt=0, then=Value(1)),
                                                    default=Value(0))))
        sums = per_unit.aggregate(
            **{f"rpv_{k}": v for k, v in _moments(per_unit, "r").items()},
            **{f"aov_{k}": v for k, v in _moments(per_unit, "r", "o").items()},
            **{f"wr_{k}": v for k, v in _moments(per_unit, "w").items()},
            **{f"ctr_{k}": v for k, v in _moments(per_unit, "c", "i").items()},
            conv=Sum("b"))
        n = exposed.get(arm.pk, 0)

        def moments(prefix, ratio=False, sums=sums, n=n):
            names = ("sx", "sxx", "sy", "syy", "sxy") if ratio else ("sx", "sxx")
            return stats.Moments(n, *(float(sums[f"{prefix}_{k}"] or 0) for k in names))

        conversions = float(sums["conv"] or 0)
        data.append(stats.ArmSums(
            arm.name, arm.weight, n, {
                "conversion": stats.Moments(n, conversions, conversions),
                "rpv": moments("rpv"), "widget_rpv": moments("wr"),
                "aov": moments("aov", True), "ctr": moments("ctr", True)},
            orders_total=int(sums["aov_sy"] or 0), revenue_total=float(sums["rpv_sx"] or 0)))
    return data


def report(experiment):
    """The statistics of ``experiment`` (a ``stats.Report``)."""
    return stats.analyse(arm_data(experiment), planned=planned_visitors(experiment),
                         sequential=experiment.sequential)


def exposure_chart(experiment):
    """SVG: exposed visitors per arm, cumulative by day (a lopsided split shows); one
    ``GROUP BY`` day and arm."""
    arms = list(experiment.arms.all())
    rows = (experiment.exposures.order_by().annotate(day=TruncDate("first_exposed_at"))
            .values("day", "arm_id").annotate(n=Count("pk")).order_by("day"))
    days, counts = [], {arm.pk: [] for arm in arms}
    totals = dict.fromkeys(counts, 0)
    for row in rows:
        if not days or days[-1] != row["day"]:
            days.append(row["day"])
            for pk in counts:
                counts[pk].append(totals[pk])
        totals[row["arm_id"]] += row["n"]
        counts[row["arm_id"]][-1] = totals[row["arm_id"]]
    return line_chart([(arm.name, counts[arm.pk]) for arm in arms],
                      title="Exposed visitors per arm", y_label="visitors", x_label="day")
