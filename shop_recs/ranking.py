"""Request-time recommendations from stored rows: what a widget or API call shows.

Usage::

    from shop_recs import ranking

    result = ranking.frequently_bought_together(product, limit=3,
                                                visitor=ranking.visitor_for(request))
    result = ranking.complete_the_cart(cart_products, limit=4)
    for item in result.items:
        item.product, item.source, item.run, item.bundle, item.evidence

Order of the candidates: approved bundles around the anchor (proposed ones too when
``SHOP_RECS["REQUIRE_APPROVAL"]`` is off), then the serving run's FBT list, then, with
``SHOP_RECS["FALLBACK"]`` on, the anchor's stored fallback list (products bought in the same
orders, then bestsellers of its category; see ``shop_recs.fallbacks``). Inactive,
out-of-stock, priceless and deleted products, the anchors themselves and ``exclude`` are
removed at request time.

Personalisation follows the serving run's returning-visitor policy (``serving_policy``,
measured per shop on validation by ``shop_recs.ml.policy``; ``SHOP_RECS["PERSONALISE"]``
False turns it off). *boost*: the visitor's past purchases (by user, else by the
pseudonymous session id) join the candidates with a recency- and frequency-weighted bonus,
the formula the run evaluated (``shop_recs.returning.boosted``), so a wholesale customer sees what they re-order.
*demote* (also runs that recorded no policy): products the visitor already bought move to
the end of each source, products in the FBT lists of what they bought move up. *off*: the
anonymous list.

Cost: candidate lists are cached (key = anchors + a generation number that
``run_activated``, ``bundles_changed``, Bundle/BundleItem saves and ``SHOP_RECS``
changes bump). A warm call is one query (the live products, stock filter and
personalisation together); a cold one adds one UNION query over the stored bundle, FBT and
fallback rows of the anchors (indexed lookups; nothing is aggregated per request): never
more than 3 with the history check. A cold answer that is stored writes its candidate
lists with it (one ``set_many``).

Finished answers: the API and the widget also cache what they send (JSON body, HTML
fragment) for visitors without purchase history (:func:`shared_answer`,
:func:`store_answer`; the details are in ``shop_recs.serving_cache``). A product save or
delete (``post_save``/``pre_delete``) shows on the next request; after
``QuerySet.update()`` or raw SQL call :func:`products_changed` (or wait ``CACHE_TIMEOUT``).
"""

import logging
from dataclasses import dataclass, field

from django.db.models import BooleanField, Case, Exists, OuterRef, Value, When

from shop_recs.conf import recs_settings
from shop_recs.models import Interaction, Recommendation
from shop_recs.products import get_adapter
from shop_recs.returning import (  # noqa: F401 (re-exported: ranking's public API)
    HISTORY_SIZE, Visitor, boosted, has_history, personal, purchased_items, purchases, who)
from shop_recs.serving_queries import (  # noqa: F401 (re-exported: ranking's public API)
    BUNDLE, FALLBACK, HISTORY, MODEL, _compiled_products, _products_queryset,
    compute_candidates, evidence_of)
from shop_recs.serving_cache import (  # noqa: F401 (re-exported: ranking's public API)
    GENERATION_KEY, _cache, begin_tracking, cache_key, cached_answer, candidates_cached,
    connect_receivers, current_generation, invalidate, lookup_answer, no_history_keys,
    products_changed, remember_no_history, store_answer, store_pending, take_read)

logger = logging.getLogger(__name__)

COOCCURRENCE, POPULAR = "cooccurrence", "popular"
OFF, BOOST, DEMOTE = "off", "boost", "demote"  # returning-visitor policies (ml.policy)
MAX_ANCHORS = 50


@dataclass
class Item:
    product: object
    source: str  # bundle, model or fallback
    method: str  # the bundle's source, the run's shipped model, cooccurrence or popular
    score: float
    run: int | None = None
    bundle: int | None = None
    evidence: dict = field(default_factory=dict)
    owned: bool = False


@dataclass
class Recommendations:
    """Items in display order; ``bundles`` maps bundle pk to discount and size."""

    anchors: list
    items: list
    bundles: dict = field(default_factory=dict)
    personalised: bool = False
    # With ``track=True``: the cache values the answer depends on (see store_answer).
    versions: dict | None = None
    # With ``track=True``: cache entries computed on the way (the candidate lists), left to
    # ``store_answer`` to write with the answer in one round trip.
    pending: dict | None = None

    @property
    def run(self):
        """The serving run these items came from, if any."""
        return next((i.run for i in self.items if i.run is not None), None)

    @property
    def bundle(self):
        """The pk of the bundle whose items are all shown (the widget offers it whole)."""
        shown = {i.product.pk for i in self.items if i.bundle is not None}
        for pk, info in self.bundles.items():
            if info["items"] and set(info["items"]) <= shown:
                return pk
        return None

    def __bool__(self):
        return bool(self.items)


def visitor_for(request):
    """The :class:`Visitor` of a request, without creating a session or a query."""
    from shop_recs.ingest import pseudonymise  # noqa: PLC0415 (ingest is heavier)

    if request is None:
        return Visitor()
    user = getattr(request, "_cached_user", None) or getattr(request, "user", None)
    user_id = user.pk if user is not None and user.is_authenticated else None
    session = getattr(request, "session", None)
    key = session.session_key if session is not None else None
    return Visitor(user_id, pseudonymise("session", key) if key else "")


def frequently_bought_together(product, *, limit=None, exclude=(), visitor=None, track=False,
                               **arm):
    """The recommendations shown next to ``product`` (an instance); ``arm``: the ``run``
    and ``sources`` of :func:`recommend`."""
    return recommend([product.pk], anchors=[product], limit=limit, exclude=exclude,
                     visitor=visitor, track=track, **arm)


def complete_the_cart(products, *, limit=None, visitor=None, **arm):
    """Products that complete a cart of ``products`` (instances), none already in it."""
    products = list(products)[:MAX_ANCHORS]
    return recommend([p.pk for p in products], anchors=products, limit=limit, visitor=visitor,
                     **arm)


def clamp_limit(limit):
    """The number of items a call for ``limit`` shows (default and maximum applied)."""
    return max(1, min(int(limit or recs_settings.WIDGET_LIMIT), recs_settings.MAX_LIMIT))


def recommend(anchor_pks, *, anchors=None, limit=None, exclude=(), visitor=None,
              strict=True, track=False, run=None, sources=None):
    """Recommendations for ``anchor_pks``; anchors not given are fetched with the items.

    When ``anchors`` is None and an anchor does not exist or is not active, raises
    ``LookupError`` if ``strict`` (the API answers 404), else leaves it out. With
    ``track``, the result carries what :func:`store_answer` needs (no query; one cache
    read). An experiment's arm may ask for the FBT list of another ``run`` than
    the serving one, or only some ``sources`` (e.g. ``(FALLBACK,)``).
    """
    limit = clamp_limit(limit)
    anchor_pks = list(dict.fromkeys(anchor_pks))[:MAX_ANCHORS]
    if not anchor_pks:
        return Recommendations([], [])
    read = take_read(anchor_pks)  # what this request's answer lookup read, if it missed
    versions = begin_tracking(anchor_pks, read) if track else None
    pending = {} if track else None
    candidates, bundles, policy = cached_candidates(anchor_pks, run=run, read=read,
                                                    pending=pending)
    if sources is not None:
        candidates = [c for c in candidates if c[1] in sources]
        bundles = bundles if BUNDLE in sources else {}
    skip = {str(pk) for pk in anchor_pks} | {str(pk) for pk in exclude}
    mode = policy.get("mode", DEMOTE) if recs_settings.PERSONALISE else OFF
    reordered = None
    if mode == BOOST:
        purchased = purchases(visitor)
        visitor = Visitor()  # the fetch stays the plain query: the order is decided here
        if purchased:
            reordered = boosted(candidates, purchased, policy, skip)
    else:
        visitor = personal(visitor) if mode == DEMOTE else Visitor()
    # Three times the limit survives the stock filter in practice and keeps the query small;
    # the query returns the first ``limit`` available of them.
    wanted = (reordered or [c for c in candidates if str(c[0]) not in skip])[:limit * 3]
    products, found_anchors = _fetch(wanted, anchor_pks if anchors is None else [], visitor,
                                     limit)
    if anchors is None:
        if strict and len(found_anchors) != len(anchor_pks):
            store_pending(pending)  # no answer to store them with
            raise LookupError("unknown or inactive product")
        anchors = [found_anchors[str(pk)] for pk in anchor_pks if str(pk) in found_anchors]
    items = []
    history = False
    for pk, source, method, score, run, bundle, evidence in wanted:
        product = products.get(str(pk))
        if product is None:
            continue
        history = history or bool(getattr(product, "shop_recs_history", False))
        items.append(Item(product, source, method, score, run, bundle, evidence,
                          owned=bool(getattr(product, "shop_recs_owned", False))))
    if history:
        items = _personalise(items)
    history = history or reordered is not None
    items = items[:limit]
    for item in items:  # decoded for the items shown only
        item.evidence = evidence_of(item.evidence)
    get_adapter().prepare([*anchors, *(item.product for item in items)])
    shown = {i.bundle for i in items}
    # Personalised: the visitor has purchases to re-rank with. Without any, the order
    # is the anonymous one (nothing is owned or related), so that answer may be shared.
    return Recommendations(anchors, items, {pk: b for pk, b in bundles.items() if pk in shown},
                           personalised=history, versions=None if history else versions,
                           pending=pending)


def _personalise(items):
    order = {BUNDLE: 0, MODEL: 1, FALLBACK: 2}
    return [item for _, item in sorted(
        enumerate(items),
        key=lambda pair: (order[pair[1].source], pair[1].owned,
                          not getattr(pair[1].product, "shop_recs_related", False), pair[0]))]


def _fetch(candidates, anchor_pks, visitor, limit=None):
    """The live, available products among ``candidates`` and the anchors: one query. With
    ``limit``, the plain compiled query returns only the first ``limit`` of them in the
    candidates' order (a personal fetch, which reorders, reads them all)."""
    adapter = get_adapter()
    pks = [c[0] for c in candidates]
    if not pks and not anchor_pks:
        return {}, {}
    related = {path.rsplit("__", 1)[0] for path in adapter.fields.values()
               if path and "__" in path}
    if (visitor and pks) or related:
        queryset = _products_queryset(adapter, pks, anchor_pks)
        if related:
            queryset = queryset.select_related(*related)
    else:
        queryset = _compiled_products(adapter, pks, anchor_pks, limit)
    if visitor and pks:
        mine = Interaction.objects.purchases().filter(who(visitor))
        history = mine.order_by("-timestamp").values("product")[:HISTORY_SIZE]
        # "Owned" as an uncorrelated IN: evaluated once through the visitor's index, where a
        # correlated EXISTS may walk each product's purchases (SQLite without statistics).
        queryset = queryset.annotate(
            shop_recs_history=Exists(mine),
            shop_recs_owned=Case(When(pk__in=mine.values("product"), then=Value(True)),
                                 default=Value(False), output_field=BooleanField()),
            shop_recs_related=Exists(Recommendation.objects.filter(
                run__is_active=True, recommended=OuterRef("pk"), product__in=history)),
        )
    anchor_keys = {str(pk) for pk in anchor_pks}
    products, anchors = {}, {}
    for product in queryset:
        key = str(product.pk)
        if key in anchor_keys:
            if adapter.get(product, "is_active"):
                anchors[key] = product
        else:
            products[key] = product
    return products, anchors


def shared_answer(parts, anchor_pks, visitor, values=None):
    """The answer stored for ``parts`` (:func:`store_answer`) if still valid and meant for
    ``visitor``: anonymous, or known to have no purchase history. One cache read
    (see ``lookup_answer``, which also reads the keys of ``values`` into it); for a visitor
    not seen lately, one query more, asked only when the candidate lists are cached too, so
    that a personalised call stays within three."""
    keys = (no_history_keys(visitor.user_id, visitor.visitor_id)
            if visitor and recs_settings.PERSONALISE else [])
    payload, known, generation = lookup_answer(parts, anchor_pks, keys, values)
    if payload is None or len(known) == len(keys):
        return payload
    if not candidates_cached(anchor_pks, generation) or has_history(visitor):
        return None
    remember_no_history(keys)
    return payload


def cached_candidates(anchor_pks, run=None, read=None, pending=None):
    """``(candidates, bundles, policy)`` for the anchors (``compute_candidates``), from the
    cache when it has them (``run``: another run's FBT rows, cached apart; ``read``: what
    the answer lookup read, ``take_read``). Computed ones are cached now, or with
    ``pending`` (a dict) put in it for the caller to write later (``store_pending``).

    A cache that fails (Redis down) is logged and bypassed: pages keep working.
    """
    try:
        cache = _cache()
        key = cache_key(anchor_pks, current_generation(cache, read))
        if run is not None:
            key = f"{key}:run{int(run)}"
        value = cache.get(key)
    except Exception:  # noqa: BLE001 (any cache backend error)
        logger.warning("shop_recs cache unavailable; computing recommendations", exc_info=True)
        return compute_candidates(anchor_pks, run)
    if value is None:
        value = compute_candidates(anchor_pks, run)
        if pending is not None:
            pending[key] = value
            return value
        try:
            cache.set(key, value, recs_settings.CACHE_TIMEOUT)
        except Exception:  # noqa: BLE001
            logger.warning("could not cache recommendations", exc_info=True)
    return value
