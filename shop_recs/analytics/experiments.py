"""A/B experiments at request time: who gets which arm, and what was seen.

Usage (the template tags and the API do this)::

    from shop_recs.analytics import experiments

    assigned = experiments.assign(experiments.FBT, ranking.visitor_for(request))
    if assigned is None: ...                  # no experiment: serve as usual
    assigned.arm.kind, assigned.recommend_kwargs(), assigned.exposure  # signed token or ""

Assignment: a visitor's *unit* is a keyed hash of their user id when logged in (sticky
across sessions, devices and web processes) else of their session (the pseudonymous
``visitor_id`` of ``shop_recs.ingest``). ``bucket`` is an HMAC (key derived from
``SECRET_KEY``) of the experiment's salt and the unit, read as a number in [0, 1) and cut
by the arms' cumulative weights: the same unit always lands in the same arm, and nothing
is stored to remember it. A visitor with neither a login nor a session is not in the
experiment (served as usual, never exposed).

No query on the request path: the running experiments and the shipped arms are cached
with a counter of their own (``PLANS_GENERATION_KEY``), which every Experiment and Arm save
or delete bumps, with the serving generation (answers differ per arm), whose plans part
(``serving_cache.PLANS_STEP``) only such a change moves. Each process keeps the plans it
read last with that part of the generation, which the answer's round trip reads anyway
(``shared_answer``): while it holds, the plans cost no read, also after new runs, bundle
decisions and fallback refreshes. After a change, each process reads the plans once from
the cache, and the first request reads the experiments again (one query).

Bundle discounts: an arm of kind *bundles at this discount* serves what the serving run
serves, with every bundle offered at the arm's discount (``Assignment.adjust``); the host's
cart charges the same price through :func:`bundle_discount` (the server decides from the
assignment: nothing the visitor posts changes it). One such experiment runs at a time.

Exposure: the widget carries a signed token of its experiment and arm; ``widget.js`` posts
it to the exposure endpoint when the widget (or, for the *no widget* arm, the empty spot
where it would have been) scrolls into view. ``log_exposure`` recomputes the visitor's arm
and records the first exposure only if the token's arm is theirs.
"""

import logging
from dataclasses import dataclass, replace
from decimal import Decimal

from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django.utils.crypto import salted_hmac

from shop_recs.analytics.lifecycle import (  # noqa: F401 (staff actions: public here too)
    ExperimentError, arm_problems, clamp_percent, discount_holders, holders, pause,
    planned_visitors, ship, start, stop)
from shop_recs.conf import recs_settings
from shop_recs.ingest import pseudonymise
from shop_recs.models import Arm, Experiment, Exposure
from shop_recs.serving_cache import (GENERATION_KEY, _bump, _cache, _counter, invalidate,
                                     plans_part)
from shop_recs.serving_queries import FALLBACK

logger = logging.getLogger(__name__)

FBT, CART, API = Experiment.Placement.FBT, Experiment.Placement.CART, Experiment.Placement.API
PLANS_KEY = "shop_recs:experiments"
PLANS_GENERATION_KEY = "shop_recs:experiments:generation"
SIGNING_SALT = "shop_recs.experiments.exposure"  # nosec B105 # a signing namespace
HASH_SALT = "shop_recs.experiments.assign"


@dataclass(frozen=True)
class ArmPlan:
    """What the request path needs of an arm (plain values: cached)."""

    pk: int
    experiment: int
    name: str
    kind: str
    run: int | None
    weight: int
    discount: str | None = None  # the bundle discount of a discount arm, e.g. "10.0"

    def recommend_kwargs(self):
        """Keyword arguments of ``ranking.recommend`` that serve this arm."""
        if self.kind == Arm.Kind.RUN:
            return {"run": self.run}
        if self.kind == Arm.Kind.FALLBACK:
            return {"sources": (FALLBACK,)}
        return {}


@dataclass(frozen=True)
class Plan:
    """A placement's serving plan: a running experiment's arms, or one shipped arm."""

    experiment: int | None
    salt: str
    arms: tuple

    @property
    def shipped(self):
        return self.experiment is None


@dataclass(frozen=True)
class Assignment:
    arm: ArmPlan
    exposure: str = ""  # signed token; "" for a shipped arm (nothing to measure)
    shipped: bool = False

    @property
    def key(self):
        """Part of cache keys: answers differ per arm."""
        return f"arm{self.arm.pk}"

    @property
    def hides_widget(self):
        return self.arm.kind == Arm.Kind.NO_WIDGET

    def recommend_kwargs(self):
        return self.arm.recommend_kwargs()

    @property
    def discount(self):
        """The bundle discount this visitor gets (a string such as "10.0"), or None: the
        stored one. A shipped discount arm wrote its discount into the bundles."""
        return None if self.shipped else self.arm.discount

    def adjust(self, result):
        """``result`` (``ranking.Recommendations``) with this arm's bundle discount."""
        if self.discount is None or not result.bundles:
            return result
        return replace(result, bundles={pk: {**info, "discount_percent": self.discount}
                                        for pk, info in result.bundles.items()})


# Assignment ---------------------------------------------------------------------------

def unit_for(visitor):
    """The pseudonymous unit of a ``ranking.Visitor``: the user's when logged in, else the
    session's visitor id; "" when it has neither."""
    if visitor is None:
        return ""
    if visitor.user_id is not None:
        return pseudonymise("user", visitor.user_id)
    return visitor.visitor_id or ""


def user_unit(user_id):
    return pseudonymise("user", user_id)


def bucket(salt, unit):
    """A number in [0, 1), the same for the same salt and unit in every process."""
    digest = salted_hmac(HASH_SALT, f"{salt}\x1f{unit}", algorithm="sha256").digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose(salt, unit, arms):
    """The arm of ``unit`` among ``arms`` (with ``weight``), by cumulative weight."""
    total = sum(arm.weight for arm in arms)
    point = bucket(salt, unit) * total
    for arm in arms:
        point -= arm.weight
        if point < 0:
            return arm
    return arms[-1]


def _plan_arm(arm):
    discount = None
    if arm.kind == Arm.Kind.BUNDLE_DISCOUNT:
        discount = str(clamp_percent(arm.discount_percent).quantize(Decimal("0.1")))
    return ArmPlan(arm.pk, arm.experiment_id, arm.name, arm.kind, arm.run_id, arm.weight,
                   discount)


def load_plans():
    """``{placement: Plan}`` from the database (one query): a running experiment's arms,
    else the arm shipped last on that placement."""
    plans, shipped = {}, {}
    rows = (Arm.objects.select_related("experiment")
            .filter(Q(experiment__status=Experiment.Status.RUNNING) | Q(shipped_at__isnull=False))
            .order_by("position", "pk"))
    for arm in rows:
        experiment = arm.experiment
        if experiment.status == Experiment.Status.RUNNING:
            plan = plans.setdefault(experiment.placement,
                                    Plan(experiment.pk, experiment.salt, ()))
            if plan.experiment == experiment.pk:  # overlapping ones: check E030 says so
                plans[experiment.placement] = Plan(plan.experiment, plan.salt,
                                                   (*plan.arms, _plan_arm(arm)))
        if arm.shipped_at is not None:
            latest = shipped.get(experiment.placement)
            if latest is None or arm.shipped_at > latest.shipped_at:
                shipped[experiment.placement] = arm
    for placement, arm in shipped.items():
        plans.setdefault(placement, Plan(None, "", (_plan_arm(arm),)))
    return plans


def plan_keys():
    """``{key: None}`` for the cache value :func:`plans` starts from (the serving
    generation): a caller that reads it in its own round trip
    (``ranking.shared_answer(..., values=...)``) passes the values as ``read``."""
    return {GENERATION_KEY: None}


# The plans this process read last, with the plans part of the serving generation it had
# seen before reading them. Every change of the plans moves that part (``_forget_plans``;
# new runs and bundle decisions do not), so while it holds they are current (the generation
# starts at a random value: a flushed cache never brings an old one back).
_seen = (None, None)


def plans(read=None):
    """The serving plans: this process's copy while the plans part of the serving
    generation (from ``read`` or one ``get``) has not moved; else the cached plans, stored
    with the plans' own counter they were read at (one ``get_many``); else the database
    (one query, only after an experiment changed)."""
    global _seen  # noqa: PLW0603 (a per-process memo, replaced whole)
    seen_part, seen = _seen
    generation = (read or {}).get(GENERATION_KEY)
    if generation is not None and seen_part == plans_part(generation):
        return seen
    try:
        cache = _cache()
        if generation is None:  # not read yet, or not started: start it, as answers do
            generation = _counter(cache, GENERATION_KEY)
            if seen_part == plans_part(generation):
                return seen
        found = cache.get_many([PLANS_GENERATION_KEY, PLANS_KEY])
        counter, entry = found.get(PLANS_GENERATION_KEY), found.get(PLANS_KEY)
        if counter is not None and entry is not None and entry[0] == counter:
            _seen = (plans_part(generation), entry[1])
            return entry[1]
        # Read before the plans: a change from now on makes the stored entry stale.
        counter = counter if counter is not None else _counter(cache, PLANS_GENERATION_KEY)
    except Exception:  # noqa: BLE001 (cache down: ask the database)
        logger.warning("shop_recs cache unavailable; reading experiments", exc_info=True)
        return load_plans()
    value = load_plans()
    try:
        cache.set(PLANS_KEY, (counter, value), None)
    except Exception:  # noqa: BLE001
        logger.warning("could not cache the experiments", exc_info=True)
    _seen = (plans_part(generation), value)
    return value


def shared_answer(placement, parts, anchor_pks, visitor):
    """``(payload, assigned, parts)``: the visitor's :class:`Assignment` on ``placement``
    (or None), the answer cached for it (``ranking.shared_answer``, else None) and the parts
    of its cache key. The plans are read in the same round trip as the answer served
    without an experiment, so that a page without one costs no round trip more; a visitor
    in an experiment costs a second one, for their arm's answer."""
    from shop_recs import ranking  # noqa: PLC0415 (ranking is heavier; request path only)

    read = plan_keys()
    plain = (*parts, "")
    payload = ranking.shared_answer(plain, anchor_pks, visitor, values=read)
    assigned = assign(placement, visitor, read)
    if assigned is None:
        return payload, None, plain
    keyed = (*parts, assigned.key)
    return ranking.shared_answer(keyed, anchor_pks, visitor), assigned, keyed


def assign(placement, visitor, read=None):
    """The :class:`Assignment` of ``visitor`` on ``placement``, or None (serve as usual);
    ``read``: see :func:`plans`."""
    plan = plans(read).get(placement)
    if plan is None or not plan.arms:
        return None
    if plan.shipped:
        return Assignment(plan.arms[0], shipped=True)
    unit = unit_for(visitor)
    if not unit:
        return None
    arm = choose(plan.salt, unit, plan.arms)
    return Assignment(arm, exposure_token(arm))


# Bundle discounts (for the host's cart) ----------------------------------------------

def discount_override(request_or_visitor):
    """The bundle discount (Decimal) of the visitor's arm in the running discount
    experiment, or None when they are in none (the bundles' stored discounts apply).
    Cached plans: no query."""
    visitor = request_or_visitor
    if visitor is not None and hasattr(visitor, "META"):  # a request
        from shop_recs import ranking  # noqa: PLC0415 (request path only)

        visitor = ranking.visitor_for(visitor)
    unit = unit_for(visitor)
    if not unit:
        return None
    running = plans()  # one cache read
    for placement in Experiment.Placement.values:
        plan = running.get(placement)
        if plan is None or plan.shipped or not any(a.discount is not None for a in plan.arms):
            continue
        discount = choose(plan.salt, unit, plan.arms).discount
        return None if discount is None else clamp_percent(discount)
    return None


def bundle_discount(request_or_visitor, bundle):
    """The discount in percent (a Decimal in [0, 100]) that the host's cart must give
    ``bundle`` (a ``shop_recs.Bundle``) for this request's visitor (or a
    ``ranking.Visitor``): their discount arm's, else the bundle's own. The server decides
    from the assignment; a discount posted by the visitor is never read."""
    override = discount_override(request_or_visitor)
    return override if override is not None else clamp_percent(bundle.discount_percent)


# Exposure -----------------------------------------------------------------------------

def exposure_token(arm):
    return signing.dumps({"e": arm.experiment, "a": arm.pk}, salt=SIGNING_SALT, compress=False)


def read_exposure_token(token):
    """``(experiment pk, arm pk)`` of a valid token, else None."""
    if not token or not isinstance(token, str) or len(token) > 300:
        return None
    try:
        payload = signing.loads(token, salt=SIGNING_SALT,
                                max_age=recs_settings.ATTRIBUTION_MAX_AGE)
        experiment, arm = payload["e"], payload["a"]
    except (signing.BadSignature, KeyError, TypeError):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (experiment, arm)):
        return None
    return experiment, arm


def log_exposure(token, visitor, when=None):
    """Record the first exposure of ``visitor`` to the token's arm; True when the token
    is valid and the arm is theirs in a running experiment (stored now or before)."""
    ids = read_exposure_token(token)
    unit = unit_for(visitor)
    if ids is None or not unit:
        return False
    experiment, arm_pk = ids
    plan = next((p for p in plans().values() if p.experiment == experiment), None)
    if plan is None:
        return False  # paused, stopped or unknown: nothing is measured
    if choose(plan.salt, unit, plan.arms).pk != arm_pk:
        return False  # a token copied from another visitor's page
    try:
        with transaction.atomic():
            Exposure.objects.bulk_create(
                [Exposure(experiment_id=experiment, arm_id=arm_pk, unit=unit,
                          first_exposed_at=when or timezone.now())],
                ignore_conflicts=True)
    except IntegrityError:  # the experiment was deleted meanwhile
        return False
    return True


def connect_receivers():
    """Experiment and Arm changes start a new serving generation (idempotent)."""
    for model in (Experiment, Arm):
        for signal in (post_save, post_delete):
            uid = f"shop_recs.experiments.{model.__name__}.{signal is post_save}"
            signal.connect(_changed, sender=model, dispatch_uid=uid)


def _changed(sender, using=None, **kwargs):
    # Now, for this process, and after the commit, for requests that read before it.
    _forget_plans()
    transaction.on_commit(_forget_plans, using=using)


def _forget_plans():
    """A new plans counter (the cached plans are stale) and a new serving generation (the
    answers cached per arm are)."""
    try:
        _bump(_cache(), PLANS_GENERATION_KEY)
    except Exception:  # noqa: BLE001 (a cache that is down holds nothing stale)
        logger.warning("could not invalidate the cached experiments", exc_info=True)
    invalidate(plans=True)
