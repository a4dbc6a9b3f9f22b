"""Erasing a shopper's data (right to erasure) and retiring models trained on it.

Usage::

    from shop_recs import privacy

    report = privacy.erase_user(user=user)                 # or customer_id=, session_key=,
    report.interactions, report.runs_flagged               # visitor_id= (any combination)
    retired = privacy.retire_runs_with_erased_data(user=request.user)
    retired.message

``erase_user`` deletes every ``Interaction`` of the person: those linked to the user account,
those under the pseudonyms (keyed hashes) of the given customer number, session key or visitor
id, and those under any pseudonym that appears on the user's own rows (the sessions they
shopped in); and their A/B experiment ``Exposure`` rows, under the same pseudonyms and the
keyed hash of the user id. Once the transaction commits it forgets the serving cache and, when purchases
were erased, has the stored fallback lists recomputed without them (``fallbacks.refresh_soon``).

Models cannot un-learn: every training run that had already read the erased purchases (its
``data_cutoff`` is after the earliest of them) is flagged with ``config["erased_data"]``, and
``retire_runs_with_erased_data`` takes a flagged run off serving, activating the latest
succeeded run that never saw the data (or none). The next training run reads the database
after the deletion, so it excludes the erased rows by construction.

The analytics roll-ups (``shop_recs.analytics.models``) hold daily aggregates only, no
visitor, user or order id, so there is nothing of the person to delete there; the hourly
roll-up recomputes recent days from the remaining rows, and ``manage.py shop_recs_rollup
--since D`` recomputes older ones.

What is recorded about an erasure holds no personal data: counts and a time, in the
``shop_recs.privacy`` log and, when a staff member did it, in the admin log.
"""

import logging
from dataclasses import dataclass, field
from functools import partial

from django.apps import apps
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from shop_recs import fallbacks, ranking
from shop_recs.analytics.experiments import user_unit
from shop_recs.ingest import pseudonymise
from shop_recs.models import ExperimentUnitDay, Exposure, Interaction, TrainingRun
from shop_recs.signals import run_activated

logger = logging.getLogger(__name__)

FLAG = "erased_data"  # key in TrainingRun.config of runs trained on since-erased data


@dataclass
class ErasureReport:
    """What :func:`erase_user` removed; no personal data."""

    interactions: int = 0
    purchases: int = 0
    pseudonyms: int = 0
    runs_flagged: list = field(default_factory=list)
    erased_at: object = None
    exposures: int = 0

    def as_dict(self):
        return {"interactions": self.interactions, "purchases": self.purchases,
                "exposures": self.exposures,
                "pseudonyms": self.pseudonyms, "runs_flagged": list(self.runs_flagged),
                "erased_at": self.erased_at}


@dataclass
class RetireReport:
    """What :func:`retire_runs_with_erased_data` did to serving."""

    flagged: list = field(default_factory=list)
    retired: int | None = None      # the serving run taken off, if it was flagged
    activated: int | None = None    # the run now serving instead, if any
    message: str = ""

    def as_dict(self):
        return {"flagged": list(self.flagged), "retired": self.retired,
                "activated": self.activated, "message": self.message}


def pseudonyms_for(customer_id=None, session_key=None, visitor_id=None):
    """The visitor ids (keyed hashes) under which these identifiers were recorded."""
    ids = {pseudonymise("customer", customer_id), pseudonymise("session", session_key),
           (visitor_id or "").strip()}
    return {i for i in ids if i}


def erase_user(user=None, customer_id=None, session_key=None, visitor_id=None, *, actor=None):
    """Delete the person's interactions everywhere; return an :class:`ErasureReport`.

    ``user`` is a user instance (or its pk). At least one identifier is needed.
    ``actor`` (the staff member doing it) is written to the admin log with the counts.
    """
    user_id = getattr(user, "pk", user)
    visitors = pseudonyms_for(customer_id, session_key, visitor_id)
    if user_id in (None, "") and not visitors:
        raise ValueError("erase_user needs a user, customer id, session key or visitor id")
    report = ErasureReport(erased_at=timezone.now())
    with transaction.atomic():
        if user_id not in (None, ""):
            # Pseudonyms seen on the user's own rows are the sessions they shopped in.
            visitors |= set(Interaction.objects.filter(user_id=user_id).exclude(visitor_id="")
                            .values_list("visitor_id", flat=True).distinct())
        who = Q(visitor_id__in=sorted(visitors)) if visitors else Q(pk__in=[])
        if user_id not in (None, ""):
            who |= Q(user_id=user_id)
        rows = Interaction.objects.filter(who)
        # What training reads (shop_recs.data.purchases): purchases that belong to an order.
        trained_on = (rows.filter(kind=Interaction.Kind.PURCHASE).exclude(order_id="")
                      .order_by("timestamp").values_list("timestamp", flat=True))
        earliest = trained_on.first()
        report.purchases = trained_on.count()
        report.pseudonyms = len(visitors)
        report.interactions, _ = rows.order_by().delete()
        units = visitors | ({user_unit(user_id)} if user_id not in (None, "") else set())
        report.exposures, _ = Exposure.objects.filter(unit__in=sorted(units)).delete()
        ExperimentUnitDay.objects.filter(unit__in=sorted(units)).delete()  # their sums too
        if earliest is not None:
            report.runs_flagged = _flag_runs(earliest, report)
        transaction.on_commit(ranking.invalidate)
        if report.purchases:  # the stored fallback lists counted these orders
            transaction.on_commit(fallbacks.refresh_soon)
        _record(actor, report)
    return report


def _flag_runs(earliest, report):
    """Mark the runs that had read data at or after ``earliest``; return their pks."""
    # A run that is running now may have extracted already without a cutoff recorded yet.
    runs = list(TrainingRun.objects.select_for_update().filter(
        Q(data_cutoff__gt=earliest)
        | Q(data_cutoff__isnull=True, status=TrainingRun.Status.RUNNING)).order_by("pk"))
    for run in runs:
        mark = dict((run.config or {}).get(FLAG) or {})
        mark["erasures"] = int(mark.get("erasures", 0)) + 1
        mark["interactions"] = int(mark.get("interactions", 0)) + report.purchases
        mark["last_erasure_at"] = report.erased_at.isoformat()
        # JSON merged in Python: portable across SQLite and PostgreSQL.
        TrainingRun.objects.filter(pk=run.pk).update(config={**(run.config or {}), FLAG: mark})
    return [run.pk for run in runs]


def _record(actor, report):
    logger.info("erasure at %s: %d interactions (%d purchases) under %d pseudonym(s) deleted; "
                "runs flagged: %s", report.erased_at.isoformat(), report.interactions,
                report.purchases, report.pseudonyms,
                ", ".join(map(str, report.runs_flagged)) or "none")
    if actor is None or not apps.is_installed("django.contrib.admin"):
        return
    from django.contrib.admin.models import DELETION, LogEntry  # noqa: PLC0415 (optional app)
    from django.contrib.contenttypes.models import ContentType  # noqa: PLC0415

    LogEntry.objects.create(
        user_id=actor.pk, content_type=ContentType.objects.get_for_model(Interaction),
        object_id=None, object_repr="erasure", action_flag=DELETION,
        change_message=(f"Erased {report.interactions} interactions ({report.purchases} "
                        f"purchases); runs flagged: "
                        f"{', '.join(map(str, report.runs_flagged)) or 'none'}"))


def flagged_runs():
    """Runs trained on since-erased data, directly or by a warm start from one (pks)."""
    runs = {pk: config or {} for pk, config in TrainingRun.objects.values_list("pk", "config")}
    flagged = {pk for pk, config in runs.items() if config.get(FLAG)}
    grew = True
    while grew:  # a warm start inherits what its starting point learned
        grew = False
        for pk, config in runs.items():
            if pk not in flagged and config.get("warm_start_from") in flagged:
                flagged.add(pk)
                grew = True
    return sorted(flagged)


def retire_runs_with_erased_data(user=None):
    """Take a flagged serving run off; serve the latest succeeded unflagged run, or none."""
    report = RetireReport()
    with transaction.atomic():
        active = TrainingRun.objects.select_for_update().filter(is_active=True).first()
        report.flagged = flagged_runs()
        if active is None or active.pk not in report.flagged:
            report.message = (f"The serving run {active.pk} is not trained on erased data; "
                              "nothing to retire." if active else "No run is serving.")
            return report
        report.retired = active.pk
        replacement = (TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED)
                       .exclude(pk__in=report.flagged)
                       .order_by(F("finished_at").desc(nulls_last=True), "-created_at", "-pk")
                       .first())
        if replacement is not None and user is not None:
            from shop_recs import review  # noqa: PLC0415 (review imports admin helpers)

            review.activate_run(replacement, user)
        else:
            TrainingRun.objects.filter(pk=active.pk).update(is_active=False)
            if replacement is not None:
                TrainingRun.objects.filter(pk=replacement.pk).update(is_active=True)
                replacement.is_active = True
                transaction.on_commit(partial(run_activated.send, sender=TrainingRun,
                                              run=replacement))
            else:
                transaction.on_commit(ranking.invalidate)
        report.activated = replacement.pk if replacement is not None else None
        report.message = (
            f"Run {active.pk} was trained on erased data and no longer serves; "
            + (f"run {replacement.pk} serves instead." if replacement is not None
               else "no unaffected succeeded run exists, so no run serves (fallbacks answer) "
                    "until the next training run."))
    logger.info("retire runs with erased data: %s", report.message)
    return report
