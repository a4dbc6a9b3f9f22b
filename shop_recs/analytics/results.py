"""The results of an experiment: per exposed visitor outcomes from the stored interactions.

Usage::

    from shop_recs.analytics import results

    report = results.report(experiment)      # a stats.Report
    chart = results.exposure_chart(experiment)

Who did what: a purchase, click or impression belongs to the unit of its user (the keyed
hash ``experiments.user_unit``) when it has one, else to its pseudonymous ``visitor_id``;
it counts for an exposed unit from that unit's first exposure until the experiment stopped.
Orders are purchases with an order id; revenue is quantity x unit price; widget revenue is
that of the order lines attributed to a widget. The interactions are read in one pass per
kind over the experiment's time window (``Interaction.kind, timestamp`` index).
"""

from collections import defaultdict
from decimal import Decimal

import numpy as np

from shop_recs.analytics import stats
from shop_recs.analytics.experiments import planned_visitors, user_unit
from shop_recs.charts import line_chart
from shop_recs.models import Interaction


def _window(experiment):
    rows = Interaction.objects.filter(timestamp__gte=experiment.started_at).order_by()
    if experiment.stopped_at is not None:
        rows = rows.filter(timestamp__lte=experiment.stopped_at)
    return rows


def arm_data(experiment):
    """``[stats.ArmData]`` in arm order (the first arm is the control)."""
    arms = list(experiment.arms.all())
    exposures = {unit: (arm, first) for unit, arm, first in
                 experiment.exposures.values_list("unit", "arm_id", "first_exposed_at")
                 .iterator()}
    revenue, widget, clicks, impressions = (defaultdict(Decimal), defaultdict(Decimal),
                                            defaultdict(int), defaultdict(int))
    orders = defaultdict(set)
    if experiment.started_at is not None and exposures:
        users = {}

        def unit_of(user_id, visitor_id):
            if user_id is None:
                return visitor_id
            if user_id not in users:
                users[user_id] = user_unit(user_id)
            return users[user_id]

        kinds = [Interaction.Kind.PURCHASE, Interaction.Kind.WIDGET_CLICK,
                 Interaction.Kind.WIDGET_IMPRESSION]
        for kind, user_id, visitor_id, order_id, quantity, price, source, timestamp in (
                _window(experiment).filter(kind__in=kinds).values_list(
                    "kind", "user_id", "visitor_id", "order_id", "quantity", "unit_price",
                    "widget", "timestamp").iterator(chunk_size=5000)):
            unit = unit_of(user_id, visitor_id)
            seen = exposures.get(unit)
            if seen is None or timestamp < seen[1]:
                continue
            if kind == Interaction.Kind.WIDGET_CLICK:
                clicks[unit] += 1
            elif kind == Interaction.Kind.WIDGET_IMPRESSION:
                impressions[unit] += 1
            elif order_id:
                value = Decimal(quantity) * (price or Decimal(0))
                orders[unit].add(order_id)
                revenue[unit] += value
                if source:
                    widget[unit] += value
    data = []
    for arm in arms:
        units = [u for u, (arm_pk, _) in exposures.items() if arm_pk == arm.pk]
        data.append(stats.ArmData(
            arm.name, arm.weight,
            revenue=np.array([float(revenue[u]) for u in units]),
            orders=np.array([len(orders[u]) for u in units]),
            widget_revenue=np.array([float(widget[u]) for u in units]),
            clicks=np.array([clicks[u] for u in units]),
            impressions=np.array([impressions[u] for u in units])))
    return data


def report(experiment):
    """The statistics of ``experiment`` (a ``stats.Report``)."""
    return stats.analyse(arm_data(experiment), planned=planned_visitors(experiment),
                         sequential=experiment.sequential)


def exposure_chart(experiment):
    """SVG: exposed visitors per arm, cumulative by day (a lopsided split shows)."""
    arms = list(experiment.arms.all())
    rows = experiment.exposures.values_list("arm_id", "first_exposed_at").order_by(
        "first_exposed_at")
    days, counts = [], {arm.pk: [] for arm in arms}
    totals = dict.fromkeys(counts, 0)
    for arm_pk, when in rows.iterator():
        day = when.date()
        if not days or days[-1] != day:
            days.append(day)
            for pk in counts:
                counts[pk].append(totals[pk])
        totals[arm_pk] += 1
        counts[arm_pk][-1] = totals[arm_pk]
    return line_chart([(arm.name, counts[arm.pk]) for arm in arms],
                      title="Exposed visitors per arm", y_label="visitors", x_label="day")
