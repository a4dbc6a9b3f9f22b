"""Staff decisions about what customers see: approving, rejecting and retiring bundles.

Usage::

    from shop_recs import review
    result = review.decide(Bundle.objects.filter(pk__in=ids), review.APPROVE, request.user)
    result.changed, result.skipped

Every screen that decides (the admin's actions and review page, the staff API) goes
through :func:`decide`, so each decision is validated the same way, recorded in the
admin log (who, when, what) when ``django.contrib.admin`` is installed, and announced
with ``bundles_changed`` once the transaction commits, which invalidates the serving
cache. :func:`activate_run` does the same for a run's FBT lists.

With ``SHOP_RECS["REQUIRE_APPROVAL"]`` on (the default) only approved bundles reach
customers; the serving side (``shop_recs.ranking``) applies that filter.
"""

from dataclasses import dataclass, field
from functools import partial

from django.apps import apps
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shop_recs.models import Bundle, TrainingRun, bundle_signature
from shop_recs.signals import bundles_changed, run_activated

APPROVE, REJECT, RETIRE = "approve", "reject", "retire"

# decision: (new status, statuses it may be taken from)
DECISIONS = {
    APPROVE: (Bundle.Status.APPROVED,
              {Bundle.Status.PROPOSED, Bundle.Status.REJECTED, Bundle.Status.RETIRED}),
    REJECT: (Bundle.Status.REJECTED, {Bundle.Status.PROPOSED}),
    RETIRE: (Bundle.Status.RETIRED, {Bundle.Status.APPROVED}),
}
PERMISSION = "shop_recs.review_bundle"


@dataclass
class Decision:
    """What :func:`decide` did: the bundles it changed and those it left alone."""

    decision: str
    changed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


def can_review(user):
    return user.is_active and user.has_perm(PERMISSION)


def decide(bundles, decision, user):
    """Apply ``decision`` to ``bundles`` (a queryset or iterable) as ``user``.

    Bundles whose status does not allow the decision (rejecting an approved bundle,
    retiring a proposed one) are skipped, not changed. The caller checks permissions.
    """
    new_status, allowed = DECISIONS[decision]
    if hasattr(bundles, "values_list"):
        ids = list(bundles.values_list("pk", flat=True))
    else:
        ids = [b.pk for b in bundles]
    result = Decision(decision)
    with transaction.atomic():
        rows = list(Bundle.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
        for bundle in rows:
            (result.changed if bundle.status in allowed else result.skipped).append(bundle)
        if not result.changed:
            return result
        now = timezone.now()
        Bundle.objects.filter(pk__in=[b.pk for b in result.changed]).update(
            status=new_status, reviewed_at=now, reviewed_by=user)
        by_status = {}
        for bundle in result.changed:
            by_status.setdefault(bundle.status, []).append(bundle)
            bundle.status, bundle.reviewed_at, bundle.reviewed_by = new_status, now, user
        for old_status, group in by_status.items():
            log_change(user, group, _("%(decision)s (was %(old)s)") % {
                "decision": Bundle.Status(new_status).label.capitalize(),
                "old": Bundle.Status(old_status).label,
            })
        announce_bundles({b.anchor_id for b in result.changed})
    return result


def announce_bundles(anchor_ids):
    """Send ``bundles_changed`` for these anchors once the transaction commits."""
    anchor_ids = list(dict.fromkeys(anchor_ids))
    if anchor_ids:
        transaction.on_commit(partial(bundles_changed.send, sender=Bundle, anchor_ids=anchor_ids))


def log_change(user, objects, message):
    """Record a change of ``objects`` by ``user`` in the admin log, one bulk insert."""
    if not apps.is_installed("django.contrib.admin") or not objects:
        return
    from django.contrib.admin.models import CHANGE, LogEntry  # noqa: PLC0415 (optional app)

    LogEntry.objects.log_actions(user.pk, objects, CHANGE, message)


def activate_run(run, user):
    """Serve ``run``'s FBT lists from now on (publishing by hand, or rolling back)."""
    if run.status != TrainingRun.Status.SUCCEEDED:
        raise ValueError(f"run {run.pk} is {run.status}; only a succeeded run can serve")
    with transaction.atomic():
        previous = list(TrainingRun.objects.select_for_update().filter(is_active=True))
        TrainingRun.objects.filter(is_active=True).update(is_active=False)
        TrainingRun.objects.filter(pk=run.pk).update(is_active=True)
        run.is_active = True
        was = ", ".join(str(p.pk) for p in previous if p.pk != run.pk) or _("none")
        log_change(user, [run], _("Now serving (previously serving: run %(was)s)") % {"was": was})
        transaction.on_commit(partial(run_activated.send, sender=TrainingRun, run=run))
    return run


def explanation(evidence):
    """One line a reviewer reads at a glance, e.g. "bought together in 312 orders, …"."""
    if evidence.get("explanation"):
        return str(evidence["explanation"])
    orders, lift = evidence.get("orders_with_all"), evidence.get("lift")
    parts = []
    if orders is not None:
        parts.append(_("bought together in %(n)s orders") % {"n": f"{orders:,}"})
    if lift is not None:
        parts.append(_("%(lift)s× more often than chance") % {"lift": f"{lift:,.1f}".rstrip("0")
                                                                          .rstrip(".")})
    return ", ".join(parts)


def signature(anchor_pk, item_pks):
    """Order-free key of a set of products (see ``models.bundle_signature``)."""
    return bundle_signature(anchor_pk, item_pks)
