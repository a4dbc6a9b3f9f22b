"""Staff actions on A/B experiments: checks, start / pause / stop, and "ship this arm".

Re-exported by ``shop_recs.analytics.experiments`` (use them from there). Every change runs
in a transaction on a locked experiment row, so two staff pressing buttons at once cannot
run two experiments on one placement.
"""

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from shop_recs.conf import recs_settings
from shop_recs.models import Arm, Bundle, Experiment, TrainingRun
from shop_recs.serving_cache import invalidate


class ExperimentError(ValueError):
    """A state change that is not allowed; the message says why, for staff."""


def clamp_percent(value):
    """A discount in percent as a Decimal within [0, 100]: no price goes below zero."""
    try:
        value = Decimal(str(value if value is not None else 0))
    except ArithmeticError:
        return Decimal(0)
    return min(max(value, Decimal(0)), Decimal(100)) if value.is_finite() else Decimal(0)


def arm_problems(arms):
    """What is wrong with an experiment's arms (``Arm`` instances), as sentences."""
    problems = []
    if len(arms) < 2:
        problems.append("An experiment needs at least two arms.")
    for arm in arms:
        if arm.kind == Arm.Kind.RUN and (
                arm.run is None or arm.run.status != TrainingRun.Status.SUCCEEDED):
            problems.append(f"Arm {arm.name!r} needs a succeeded training run.")
        if arm.weight < 1:
            problems.append(f"Arm {arm.name!r} needs a traffic weight of at least 1.")
        if arm.kind == Arm.Kind.BUNDLE_DISCOUNT and not (
                arm.discount_percent is not None
                and 0 <= arm.discount_percent <= recs_settings.MAX_BUNDLE_DISCOUNT):
            problems.append(f"Arm {arm.name!r} needs a bundle discount from 0 to "
                            f"{recs_settings.MAX_BUNDLE_DISCOUNT} %.")
    return problems


def discount_holders(exclude=None):
    """Running or paused experiments with a bundle-discount arm (any placement)."""
    queryset = Experiment.objects.filter(
        status__in=[Experiment.Status.RUNNING, Experiment.Status.PAUSED],
        arms__kind=Arm.Kind.BUNDLE_DISCOUNT).distinct()
    return queryset.exclude(pk=exclude) if exclude is not None else queryset


def holders(placement, exclude=None):
    """Running or paused experiments on ``placement`` (but ``exclude``)."""
    queryset = Experiment.objects.filter(
        placement=placement, status__in=[Experiment.Status.RUNNING, Experiment.Status.PAUSED])
    return queryset.exclude(pk=exclude) if exclude is not None else queryset


def planned_visitors(experiment):
    """The fixed horizon of ``experiment``: its own figure, else the calculator's."""
    if experiment.planned_visitors:
        return experiment.planned_visitors
    from shop_recs.analytics import stats  # noqa: PLC0415 (SciPy: staff pages only)

    return stats.sample_size(experiment.baseline_conversion, experiment.minimum_effect,
                             arms=max(2, experiment.arms.count()))


def start(experiment):
    """Start (or resume) ``experiment``; ``ExperimentError`` says why not."""
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if experiment.status == Experiment.Status.STOPPED:
            raise ExperimentError("A stopped experiment cannot run again: copy it instead.")
        other = holders(experiment.placement, exclude=experiment.pk).first()
        if other is not None:
            raise ExperimentError(
                f"{other.name!r} already runs on the {experiment.get_placement_display()} "
                f"(or is paused there): stop it first. One experiment per placement.")
        arms = list(experiment.arms.select_related("run"))
        problems = arm_problems(arms)
        other = (discount_holders(exclude=experiment.pk).first()
                 if any(a.kind == Arm.Kind.BUNDLE_DISCOUNT for a in arms) else None)
        if other is not None:
            problems.append(f"{other.name!r} already tests bundle discounts: the cart "
                            f"charges one price per visitor, so stop it first.")
        if problems:
            raise ExperimentError(" ".join(problems))
        experiment.planned_visitors = planned_visitors(experiment)
        experiment.started_at = experiment.started_at or timezone.now()
        experiment.status = Experiment.Status.RUNNING
        experiment.save()
    return experiment


def pause(experiment):
    """Serve as usual and measure nothing until resumed (the placement stays held)."""
    return _move(experiment, {Experiment.Status.RUNNING}, Experiment.Status.PAUSED)


def stop(experiment):
    """End ``experiment`` for good; its results stay."""
    return _move(experiment, {Experiment.Status.RUNNING, Experiment.Status.PAUSED},
                 Experiment.Status.STOPPED)


def _move(experiment, allowed, status):
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if experiment.status not in allowed:
            raise ExperimentError(f"A {experiment.get_status_display()} experiment cannot "
                                  f"become {Experiment.Status(status).label}.")
        experiment.status = status
        if status == Experiment.Status.STOPPED:
            experiment.stopped_at = timezone.now()
        experiment.save()
    return experiment


def ship(arm):
    """Make ``arm`` what every visitor of its placement gets; stops its experiment. A
    discount arm's discount becomes that of every bundle served (their pks are left in
    ``arm.repriced`` for the admin's log)."""
    arm.repriced = []
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=arm.experiment_id)
        if experiment.status == Experiment.Status.DRAFT:
            raise ExperimentError("Start the experiment and read its results before shipping.")
        if experiment.holds_placement:
            experiment.status = Experiment.Status.STOPPED
            experiment.stopped_at = timezone.now()
            experiment.save()
        arm.shipped_at = timezone.now()
        arm.save(update_fields=["shipped_at"])
        if arm.kind == Arm.Kind.BUNDLE_DISCOUNT:
            arm.repriced = _reprice_bundles(clamp_percent(arm.discount_percent))
    return arm


def _reprice_bundles(percent):
    """Give every bundle customers may get ``percent`` off; return their pks."""
    statuses = [Bundle.Status.APPROVED]
    if not recs_settings.REQUIRE_APPROVAL:
        statuses.append(Bundle.Status.PROPOSED)
    bundles = Bundle.objects.filter(status__in=statuses).exclude(discount_percent=percent)
    pks = list(bundles.values_list("pk", flat=True))
    Bundle.objects.filter(pk__in=pks).update(discount_percent=percent)
    transaction.on_commit(invalidate)  # update() sends no signal: the answers show the old
    return pks
