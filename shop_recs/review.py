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

:func:`review_queue` orders the products that have proposals by what they sell
(revenue, then orders), then by the evidence of their best proposal, so staff time goes
first to the products that matter; it also counts the high-impact ones left.

:func:`served_lists` gives the serving run's FBT lists, filtered by where they come from
(:data:`LIST_SOURCES`: learned from orders, or chosen from the product's content because it
has no orders yet), for the lists review screen.
"""

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial

from django.apps import apps
from django.core.cache import caches
from django.db import transaction
from django.db.models import Count, DecimalField, ExpressionWrapper, F, IntegerField, Max, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from shop_recs import newproducts

from shop_recs.conf import recs_settings
from shop_recs.models import Bundle, Interaction, Recommendation, TrainingRun, bundle_signature
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
# "High impact": the best sellers that together make this share of the revenue.
HIGH_IMPACT_SHARE = Decimal("0.8")
IMPACT_CACHE_KEY = "shop_recs:review:impact:{run}"
IMPACT_CACHE_S = 6 * 3600
EVIDENCE_CHUNK = 500  # anchors per query (SQLite allows 999 parameters)

logger = logging.getLogger(__name__)


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
    if newproducts.explanation(evidence):  # stored untranslated: shown in the reader's language
        return newproducts.explanation(evidence)
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


@dataclass
class Impact:
    """What one product sold in the recorded purchases."""

    revenue: Decimal = Decimal(0)
    orders: int = 0
    high: bool = False


@dataclass
class ReviewQueue:
    """Products with proposals, most important first (see :func:`review_queue`).

    ``impact`` maps product keys to ``(revenue in cents, orders, high impact)``.
    """

    anchors: list
    impact: dict

    def __len__(self):
        return len(self.anchors)

    @property
    def high_impact_left(self):
        return sum(1 for pk in self.anchors if pk in self.impact and self.impact[pk][2])

    def of(self, anchor_pk):
        if anchor_pk not in self.impact:
            return Impact()
        cents, orders, high = self.impact[anchor_pk]
        return Impact(Decimal(cents) / 100, orders, high)

    def after(self, anchor_pk):
        """The next product in the queue after ``anchor_pk`` (wrapping round), or None."""
        rest = self.anchors
        if anchor_pk in self.anchors:
            position = self.anchors.index(anchor_pk)
            rest = self.anchors[position + 1:] + self.anchors[:position]
        return rest[0] if rest else None


def _compute_impact():
    revenue = ExpressionWrapper(F("quantity") * F("unit_price"),
                                output_field=DecimalField(max_digits=20, decimal_places=3))
    rows = (Interaction.objects.filter(kind=Interaction.Kind.PURCHASE).order_by()
            .values_list("product_id").annotate(revenue=Sum(revenue), orders=Count("pk")))
    # Plain ints (cents), so that the cached value of thousands of products unpickles fast.
    sold = {pk: (round((revenue or 0) * 100), orders) for pk, revenue, orders in rows}
    # The best sellers that make HIGH_IMPACT_SHARE of the revenue (of the orders when no
    # prices were recorded) are "high impact".
    index = 0 if any(cents for cents, _ in sold.values()) else 1
    total, running, high = sum(v[index] for v in sold.values()), 0, set()
    for pk in sorted(sold, key=lambda pk: sold[pk][index], reverse=True):
        if not total or running >= HIGH_IMPACT_SHARE * total:
            break
        high.add(pk)
        running += sold[pk][index]
    return {pk: (cents, orders, pk in high) for pk, (cents, orders) in sold.items()}


def product_impact():
    """``{product pk: (revenue in cents, orders, high impact)}`` over the recorded purchases.

    One aggregate over the purchases (read from the ``shop_recs_purchase_value`` index),
    cached per latest training run (new runs bring new proposals) for a few hours: the
    order of a review queue does not need the last minute's sales, and the review screen
    must not scan the order history on each click.
    """
    latest = TrainingRun.objects.order_by("-pk").values_list("pk", flat=True).first()
    key = IMPACT_CACHE_KEY.format(run=latest)
    cache = caches[recs_settings.CACHE_ALIAS]
    try:
        impact = cache.get(key)
    except Exception:  # noqa: BLE001 (a cache that is down only costs the aggregate)
        logger.warning("shop_recs: cache unavailable for the review queue", exc_info=True)
        impact = None
    if impact is None:
        impact = _compute_impact()
        try:
            cache.set(key, impact, IMPACT_CACHE_S)
        except Exception:  # noqa: BLE001
            logger.warning("shop_recs: cache unavailable for the review queue", exc_info=True)
    return impact


def review_queue():
    """The products with proposed bundles, in the order staff should review them.

    By the product's revenue, then its orders (:func:`product_impact`), then the best
    evidence among its proposals (orders with all products), then the best model score.
    The evidence is read only for products that sold alike (JSON is slow to scan over
    a million proposals); everything else comes from the (status, anchor, score) index.
    """
    proposed = Bundle.objects.filter(status=Bundle.Status.PROPOSED).order_by()
    best_score = dict(proposed.values_list("anchor_id").annotate(score=Max("score")))
    impact = product_impact()
    none = (0, 0, False)
    alike = {}
    for pk in best_score:
        cents, orders, _ = impact.get(pk, none)
        alike.setdefault((cents, orders), []).append(pk)
    tied = [pk for group in alike.values() if len(group) > 1 for pk in group]
    evidence = {}
    for start in range(0, len(tied), EVIDENCE_CHUNK):
        evidence.update(proposed.filter(anchor_id__in=tied[start:start + EVIDENCE_CHUNK])
                        .values_list("anchor_id").annotate(orders_with_all=Max(Cast(
                            KeyTextTransform("orders_with_all", "evidence"), IntegerField()))))

    def importance(pk):
        cents, orders, _ = impact.get(pk, none)
        score = best_score[pk]
        return (-cents, -orders, -(evidence.get(pk) or 0),
                -(score if score is not None else float("-inf")), str(pk))

    return ReviewQueue(sorted(best_score, key=importance), impact)


# Where a published list comes from: ?source= of the lists review screen.
CONTENT_LISTS, ORDER_LISTS = "content", "orders"
LIST_SOURCES = {ORDER_LISTS: gettext_lazy("learned from orders"),
                CONTENT_LISTS: gettext_lazy(newproducts.LABEL)}


def list_source(source):
    """The label of a list's ``Recommendation.source`` (the run's model name for orders)."""
    return LIST_SOURCES[CONTENT_LISTS if source == newproducts.SOURCE else ORDER_LISTS]


def served_lists(source=None, run=None):
    """The ``Recommendation`` rows of the serving run (or of ``run``; no query here), only the
    lists of ``source`` (a key of :data:`LIST_SOURCES`; None: all). Raises ``ValueError`` for
    an unknown source."""
    if source not in (None, "", *LIST_SOURCES):
        raise ValueError(f"unknown list source {source!r}; use one of {sorted(LIST_SOURCES)}")
    rows = (Recommendation.objects.filter(run=run) if run is not None
            else Recommendation.objects.filter(run__is_active=True))
    if source == CONTENT_LISTS:
        rows = rows.filter(source=newproducts.SOURCE)
    elif source == ORDER_LISTS:
        rows = rows.exclude(source=newproducts.SOURCE)
    return rows
