"""Per-visitor day sums of A/B experiments (``ExperimentUnitDay``), rolled up from interactions.

Usage::

    from shop_recs.analytics import experiment_rollups

    experiment_rollups.rollup_day(date(2026, 11, 27))   # every experiment live that day
    experiment_rollups.rollup_experiment(experiment)    # every day of one experiment

The hourly analytics roll-up (``rollups.rollup_days``, task ``shop_recs.rollup_analytics``)
calls :func:`rollup_day` for each day it recomputes (yesterday and today, normally), which
then sums each experiment's visitors per arm (:func:`summarise`, into ``Experiment.summary``:
n is counted live from the exposures; Σx, Σx², Σy, Σy², Σxy of each visitor's totals), so
the results page (``shop_recs.analytics.results``) reads a few numbers instead of the raw
interactions on every view. A day is replaced whole in one transaction: re-running it
gives the same rows, and an exposure or event recorded late is counted by the next run.

What counts (the definitions the results page states): a purchase, widget click or widget
impression belongs to the unit of its user (the keyed hash ``experiments.user_unit``) when it
has one, else to its pseudonymous ``visitor_id``; it counts for an exposed unit from that
unit's first exposure, within the experiment's window (start to stop). Orders are distinct
order ids of purchase lines; revenue is quantity x unit price (what the shop recorded as
paid); widget revenue is that of the lines attributed to a widget.

Anonymous visitors (most traffic) are summed in SQL, joined to their exposure through its
``(experiment, unit)`` index; logged-in users' rows are read in Python (their unit is a keyed
hash that SQL cannot compute), only for users who are exposed.
"""

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from django.db import router, transaction
from django.db.models import (Case, Count, DecimalField, F, OuterRef, Q, Subquery, Sum, Value,
                              When)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from shop_recs.analytics.days import day_bounds, local_day
from shop_recs.analytics.experiments import user_unit
from shop_recs.models import Experiment, ExperimentUnitDay, Exposure, Interaction

Kind = Interaction.Kind
KINDS = (Kind.PURCHASE, Kind.WIDGET_CLICK, Kind.WIDGET_IMPRESSION)
MONEY = DecimalField(max_digits=24, decimal_places=3)
CENT = Decimal("0.01")
IN_CHUNK = 500  # users per IN (...) list


def _money(value):
    return Decimal(str(value or 0)).quantize(CENT)


def live_on(start, end):
    """Experiments that ran at some moment of ``[start, end)``."""
    return (Experiment.objects.filter(started_at__lt=end)
            .filter(Q(stopped_at__isnull=True) | Q(stopped_at__gte=start)).order_by("pk"))


def _rows(experiment, start, end):
    """The experiment's countable interactions of ``[start, end)``."""
    rows = Interaction.objects.filter(kind__in=KINDS, timestamp__gte=max(start,
                                                                         experiment.started_at),
                                      timestamp__lt=end).order_by()
    if experiment.stopped_at is not None:
        rows = rows.filter(timestamp__lte=experiment.stopped_at)
    return rows


def _anonymous(experiment, rows):
    """``{unit: (arm, sums)}`` of visitors without a user, summed in SQL."""
    exposure = Exposure.objects.filter(experiment=experiment, unit=OuterRef("visitor_id"),
                                       first_exposed_at__lte=OuterRef("timestamp"))
    value = Coalesce(F("quantity") * F("unit_price"), Value(Decimal(0)), output_field=MONEY)
    bought = Q(kind=Kind.PURCHASE) & ~Q(order_id="")
    grouped = (rows.filter(user__isnull=True).exclude(visitor_id="")
               .annotate(arm=Subquery(exposure.values("arm_id")[:1]))
               .filter(arm__isnull=False).values("visitor_id", "arm")
               .annotate(revenue=Sum(value, filter=bought),
                         orders=Count("order_id", distinct=True, filter=bought),
                         widget_revenue=Sum(value, filter=bought & ~Q(widget="")),
                         clicks=Count("pk", filter=Q(kind=Kind.WIDGET_CLICK)),
                         impressions=Count("pk", filter=Q(kind=Kind.WIDGET_IMPRESSION))))
    return {row["visitor_id"]: (row["arm"], {
        "revenue": _money(row["revenue"]), "orders": row["orders"],
        "widget_revenue": _money(row["widget_revenue"]), "clicks": row["clicks"],
        "impressions": row["impressions"]}) for row in grouped.iterator()}


def _users(experiment, rows):
    """``{unit: (arm, sums)}`` of logged-in users who are exposed (rows read in Python)."""
    user_ids = list(rows.filter(user__isnull=False).values_list("user_id", flat=True)
                    .distinct())
    units = {user_unit(uid): uid for uid in user_ids}
    exposed = {}
    for start in range(0, len(units), IN_CHUNK):
        chunk = list(units)[start:start + IN_CHUNK]
        for unit, arm, first in Exposure.objects.filter(experiment=experiment,
                                                        unit__in=chunk).values_list(
                "unit", "arm_id", "first_exposed_at"):
            exposed[units[unit]] = (unit, arm, first)
    found = {}
    orders = defaultdict(set)
    ids = list(exposed)
    for start in range(0, len(ids), IN_CHUNK):
        for uid, kind, order_id, quantity, price, widget, when in (
                rows.filter(user_id__in=ids[start:start + IN_CHUNK]).values_list(
                    "user_id", "kind", "order_id", "quantity", "unit_price", "widget",
                    "timestamp").iterator(chunk_size=5000)):
            unit, arm, first = exposed[uid]
            if when < first:
                continue
            sums = found.setdefault(unit, (arm, {"revenue": Decimal(0), "orders": 0,
                                                 "widget_revenue": Decimal(0), "clicks": 0,
                                                 "impressions": 0}))[1]
            if kind == Kind.WIDGET_CLICK:
                sums["clicks"] += 1
            elif kind == Kind.WIDGET_IMPRESSION:
                sums["impressions"] += 1
            elif order_id:
                value = Decimal(quantity) * (price or Decimal(0))
                sums["revenue"] += value
                sums["widget_revenue"] += value if widget else Decimal(0)
                orders[unit].add(order_id)
    for unit, (_, sums) in found.items():
        sums["orders"] = len(orders[unit])
        sums["revenue"], sums["widget_revenue"] = (_money(sums["revenue"]),
                                                   _money(sums["widget_revenue"]))
    return found


def rollup_experiment_day(experiment, day):
    """Recompute ``experiment``'s unit sums of ``day``; return the number of rows."""
    start, end = day_bounds(day)
    using = router.db_for_write(ExperimentUnitDay)
    rows = []
    if experiment.started_at is not None and experiment.started_at < end:
        interactions = _rows(experiment, start, end)
        units = _anonymous(experiment, interactions)
        units.update(_users(experiment, interactions))
        rows = [ExperimentUnitDay(experiment=experiment, arm_id=arm, unit=unit, day=day, **sums)
                for unit, (arm, sums) in sorted(units.items())]
    with transaction.atomic(using=using):
        ExperimentUnitDay.objects.using(using).filter(experiment=experiment, day=day).delete()
        ExperimentUnitDay.objects.using(using).bulk_create(rows, batch_size=1000)
    return len(rows)


def rollup_day(day):
    """Recompute every experiment that ran on ``day`` (and its per-arm sums); return the
    number of rows."""
    start, end = day_bounds(day)
    rows = 0
    for experiment in live_on(start, end):
        rows += rollup_experiment_day(experiment, day)
        summarise(experiment)
    return rows


def _moments(x, y=None):
    sums = {"sx": Sum(x), "sxx": Sum(F(x) * F(x))}
    if y is not None:
        sums.update(sy=Sum(y), syy=Sum(F(y) * F(y)), sxy=Sum(F(x) * F(y)))
    return sums


def arm_sums(experiment, arm):
    """The sums over ``arm``'s visitors of their totals x (and y) and of the squares and
    products (``stats.Moments`` without n): one aggregate over the per-visitor GROUP BY."""
    per_unit = (ExperimentUnitDay.objects.filter(experiment=experiment, arm=arm).order_by()
                .values("unit").annotate(r=Sum("revenue"), o=Sum("orders"),
                                         w=Sum("widget_revenue"), c=Sum("clicks"),
                                         i=Sum("impressions"),
                                         b=Case(When(o__gt=0, then=Value(1)),
                                                default=Value(0))))
    sums = per_unit.aggregate(
        **{f"rpv_{k}": v for k, v in _moments("r").items()},
        **{f"aov_{k}": v for k, v in _moments("r", "o").items()},
        **{f"wr_{k}": v for k, v in _moments("w").items()},
        **{f"ctr_{k}": v for k, v in _moments("c", "i").items()},
        conv=Sum("b"))
    return {key: float(value or 0) for key, value in sums.items()}


def exposures_per_day(experiment):
    """``[[day, arm pk, first exposures]]`` in day order (the results page's chart)."""
    rows = (experiment.exposures.order_by().annotate(day=TruncDate("first_exposed_at"))
            .values("day", "arm_id").annotate(n=Count("pk")).order_by("day"))
    return [[str(row["day"]), row["arm_id"], row["n"]] for row in rows]


def summarise(experiment):
    """Store the per-arm sums in ``experiment.summary`` (an UPDATE: no signal, so the
    serving plans stay cached); the results page reads only these."""
    summary = {"at": timezone.now().isoformat(),
               "arms": {str(arm.pk): arm_sums(experiment, arm)
                        for arm in experiment.arms.all()},
               "exposures": exposures_per_day(experiment)}
    Experiment.objects.filter(pk=experiment.pk).update(summary=summary)
    experiment.summary = summary
    return summary


def experiment_days(experiment):
    """The days of ``experiment`` so far (start through stop, or today)."""
    if experiment.started_at is None:
        return []
    first = local_day(experiment.started_at)
    last = local_day(experiment.stopped_at or timezone.now())
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def rollup_experiment(experiment):
    """Recompute every day of ``experiment`` (``manage.py shop_recs_rollup`` covers days;
    this is for one experiment, e.g. after importing old orders)."""
    rows = sum(rollup_experiment_day(experiment, day) for day in experiment_days(experiment))
    summarise(experiment)
    return rows
