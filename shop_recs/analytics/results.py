"""The results of an experiment, from its roll-ups: fast whatever the number of events.

Usage::

    from shop_recs.analytics import results

    report = results.report(experiment)      # a stats.Report
    chart = results.exposure_chart(experiment)

Exposed visitors per arm are counted from the exposures (live); what they did after their
first exposure (orders, revenue, widget revenue, clicks, impressions) comes from the
per-visitor day sums of ``experiment_rollups``, which the hourly roll-up (or
``rollup_recent``, "update now") also sums per arm into the moments the statistics need
(``Experiment.summary``): the page reads a few numbers, never the raw interactions nor a row
per visitor. See ``experiment_rollups`` for who did what.
"""

from datetime import datetime, timedelta

from django.db.models import Count
from django.utils import timezone

from shop_recs.analytics import experiment_rollups, stats
from shop_recs.analytics.days import local_day
from shop_recs.analytics.experiments import planned_visitors
from shop_recs.charts import line_chart


def rollup_recent(experiment):
    """Recompute the days the hourly roll-up has not made final (yesterday and today)."""
    today = local_day(timezone.now())
    days = [d for d in experiment_rollups.experiment_days(experiment)
            if d >= today - timedelta(days=1)]
    rows = sum(experiment_rollups.rollup_experiment_day(experiment, d) for d in days)
    experiment_rollups.summarise(experiment)
    return rows


def last_rollup(experiment):
    """When the sums the figures come from were computed (or None)."""
    at = (experiment.summary or {}).get("at")
    return datetime.fromisoformat(at) if at else None


def arm_data(experiment):
    """``[stats.ArmSums]`` in arm order (the first arm is the control): exposed visitors
    counted from the exposures (live, one GROUP BY), their outcomes from the per-arm sums
    of the last roll-up (``Experiment.summary``): no per-visitor row is read."""
    arms = list(experiment.arms.all())
    exposed = dict(experiment.exposures.order_by().values("arm_id").annotate(n=Count("pk"))
                   .values_list("arm_id", "n"))
    summary = (experiment.summary or {}).get("arms", {})
    data = []
    for arm in arms:
        sums, n = summary.get(str(arm.pk), {}), exposed.get(arm.pk, 0)

        def moments(prefix, ratio=False, sums=sums, n=n):
            names = ("sx", "sxx", "sy", "syy", "sxy") if ratio else ("sx", "sxx")
            return stats.Moments(n, *(float(sums.get(f"{prefix}_{k}") or 0) for k in names))

        conversions = float(sums.get("conv") or 0)
        data.append(stats.ArmSums(
            arm.name, arm.weight, n, {
                "conversion": stats.Moments(n, conversions, conversions),
                "rpv": moments("rpv"), "widget_rpv": moments("wr"),
                "aov": moments("aov", True), "ctr": moments("ctr", True)},
            orders_total=int(sums.get("aov_sy") or 0),
            revenue_total=float(sums.get("rpv_sx") or 0)))
    return data


def report(experiment):
    """The statistics of ``experiment`` (a ``stats.Report``)."""
    return stats.analyse(arm_data(experiment), planned=planned_visitors(experiment),
                         sequential=experiment.sequential)


def exposure_chart(experiment):
    """SVG: exposed visitors per arm, cumulative by day (a lopsided split shows); from the
    last roll-up's counts, or counted now (one GROUP BY) before the first."""
    arms = list(experiment.arms.all())
    rows = (experiment.summary or {}).get("exposures")
    if rows is None:
        rows = experiment_rollups.exposures_per_day(experiment)
    days, counts = [], {arm.pk: [] for arm in arms}
    totals = dict.fromkeys(counts, 0)
    for day, arm_pk, n in rows:
        if arm_pk not in totals:
            continue
        if not days or days[-1] != day:
            days.append(day)
            for pk in counts:
                counts[pk].append(totals[pk])
        totals[arm_pk] += n
        counts[arm_pk][-1] = totals[arm_pk]
    return line_chart([(arm.name, counts[arm.pk]) for arm in arms],
                      title="Exposed visitors per arm", y_label="visitors", x_label="day")
