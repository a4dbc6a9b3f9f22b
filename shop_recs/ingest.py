"""Recording what shoppers do: events, orders, and bulk import of historical orders.

Host code calls::

    from shop_recs.ingest import record_event, record_order

    record_event(Interaction.Kind.VIEW, product, request=request)
    record_order(order.number, [{"product": line.product, "quantity": line.quantity,
                                 "unit_price": line.price} for line in order.lines.all()],
                 user=order.user)

Orders are idempotent: recording the same order id twice stores its lines once.
Shoppers are identified by a keyed hash (``pseudonymise``), never by a raw session key,
customer number or IP address. The bulk importer lives in ``shop_recs.importer``.
"""

import hashlib
import logging
from decimal import Decimal

from django.db import router, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from shop_recs.conf import recs_settings
from shop_recs.models import Interaction
from shop_recs.products import get_adapter
from shop_recs.serving_cache import purchases_recorded

logger = logging.getLogger(__name__)


def pseudonymise(namespace, value):
    """Keyed hash of ``value`` (a session key, a customer number): a stable visitor id.

    The key is derived from ``SECRET_KEY``; without it the id cannot be linked back.
    """
    if value in (None, ""):
        return ""
    salt = f"{recs_settings.VISITOR_ID_SALT}:{namespace}"
    return salted_hmac(salt, str(value), algorithm="sha256").hexdigest()[:32]


def visitor_id_for_request(request):
    """The visitor id of a request's session, creating the session if needed."""
    session = getattr(request, "session", None)
    if session is None:
        return ""
    if not session.session_key:
        session.save()
    return pseudonymise("session", session.session_key)


def _who(request, user, visitor_id):
    if request is not None:
        if user is None and getattr(request, "user", None) is not None:
            user = request.user if request.user.is_authenticated else None
        visitor_id = visitor_id or visitor_id_for_request(request)
    return user, visitor_id


def order_line_key(order_id, product):
    """Stable key of one product's line in one order (re-recording adds nothing)."""
    text = f"order\x1f{order_id}\x1f{get_adapter().sku(product)}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def record_event(kind, product, *, request=None, user=None, visitor_id="", quantity=1,
                 unit_price=None, timestamp=None, widget="", bundle_ref=None, run_ref=None,
                 source=Interaction.Source.SERVER):
    """Store one interaction and return it. ``kind`` is an ``Interaction.Kind`` value."""
    if kind not in Interaction.Kind.values:
        raise ValueError(f"unknown interaction kind {kind!r}")
    user, visitor_id = _who(request, user, visitor_id)
    return Interaction.objects.create(
        product=product, kind=kind, user=user, visitor_id=visitor_id,
        quantity=max(int(quantity), 1), unit_price=unit_price,
        timestamp=timestamp or timezone.now(), widget=widget or "",
        bundle_ref=bundle_ref, run_ref=run_ref, source=source,
    )


def record_order(order_id, lines, *, request=None, user=None, customer_id=None, visitor_id="",
                 timestamp=None, source=Interaction.Source.SERVER):
    """Store the lines of a placed order as purchases; return the lines newly stored.

    ``lines`` holds dicts with ``product`` and optionally ``quantity``, ``unit_price``,
    ``widget``, ``bundle_ref`` and ``run_ref``. Lines of the same product are merged.
    ``customer_id`` (the shop's own customer number) is stored only as a keyed hash.
    """
    order_id = str(order_id).strip()
    if not order_id:
        raise ValueError("record_order needs a non-empty order id")
    user, visitor_id = _who(request, user, visitor_id)
    if not visitor_id and customer_id not in (None, ""):
        visitor_id = pseudonymise("customer", customer_id)
    timestamp = timestamp or timezone.now()
    merged = {}
    for line in lines:
        product = line["product"]
        quantity = int(line.get("quantity") or 1)
        if quantity < 1:
            raise ValueError(f"quantity must be at least 1, not {quantity}")
        key = order_line_key(order_id, product)
        if key in merged:
            merged[key].quantity += quantity
            continue
        price = line.get("unit_price")
        merged[key] = Interaction(
            product=product, kind=Interaction.Kind.PURCHASE, user=user,
            visitor_id=visitor_id, order_id=order_id, quantity=quantity,
            unit_price=None if price is None else Decimal(price), timestamp=timestamp,
            source=source, widget=line.get("widget") or "", bundle_ref=line.get("bundle_ref"),
            run_ref=line.get("run_ref"), line_key=key,
        )
    with transaction.atomic():
        existing = set(
            Interaction.objects.filter(line_key__in=list(merged)).values_list("line_key", flat=True)
        )
        new = [row for key, row in merged.items() if key not in existing]
        Interaction.objects.bulk_create(new, ignore_conflicts=True)
    if new:  # bulk_create sends no post_save: the visitor is no longer without history
        purchases_recorded(getattr(user, "pk", None), visitor_id,
                           router.db_for_write(Interaction))
    if existing:
        logger.info("order %s: %d line(s) were already recorded", order_id, len(existing))
    return new


def record_events(events, *, user=None, visitor_id="", source=Interaction.Source.API,
                  dedupe_window=None):
    """Store many events in one insert; return ``(stored, duplicates)``.

    ``events`` holds dicts with ``kind``, ``product`` (an instance) and optionally
    ``quantity``, ``unit_price``, ``timestamp``, ``widget``, ``bundle_ref``, ``run_ref``
    and, for purchases, ``order_id`` (purchases go through :func:`record_order`, grouped
    by order, so they stay idempotent). With ``dedupe_window`` (seconds), identical
    events (visitor, kind, product, attribution) within one window are stored once,
    remembered in the cache: a flood of the same beacon stores one row.
    """
    from django.core.cache import caches  # noqa: PLC0415

    now = timezone.now()
    rows, orders, keys = [], {}, {}
    for event in events:
        kind = event["kind"]
        if kind not in Interaction.Kind.values:
            raise ValueError(f"unknown interaction kind {kind!r}")
        if kind == Interaction.Kind.PURCHASE:
            orders.setdefault(str(event.get("order_id") or ""), []).append(event)
            continue
        row = Interaction(
            product=event["product"], kind=kind, user=user, visitor_id=visitor_id,
            quantity=max(int(event.get("quantity") or 1), 1), unit_price=event.get("unit_price"),
            timestamp=event.get("timestamp") or now, widget=event.get("widget") or "",
            bundle_ref=event.get("bundle_ref"), run_ref=event.get("run_ref"), source=source,
        )
        if dedupe_window:
            bucket = int(now.timestamp() // dedupe_window)
            text = "\x1f".join(str(v) for v in (visitor_id, getattr(user, "pk", ""), kind,
                                                 row.product.pk, row.widget, row.bundle_ref,
                                                 row.run_ref, bucket))
            key = "shop_recs:event:" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
            if key in keys:
                continue
            keys[key] = row
        rows.append(row)
    duplicates = 0
    if dedupe_window:
        cache = caches[recs_settings.CACHE_ALIAS]
        try:
            seen = cache.get_many(list(keys))
            cache.set_many({k: 1 for k in keys if k not in seen}, dedupe_window)
        except Exception:  # noqa: BLE001 (without a cache, store rather than lose)
            logger.warning("event de-duplication cache unavailable", exc_info=True)
            seen = {}
        kept = [row for key, row in keys.items() if key not in seen]
        duplicates = len(rows) - len(kept) + (len(events) - len(rows)
                                               - sum(len(v) for v in orders.values()))
        rows = kept
    Interaction.objects.bulk_create(rows, batch_size=1000)
    stored = len(rows)
    for order_id, lines in orders.items():
        stored += len(record_order(order_id, lines, user=user, visitor_id=visitor_id,
                                   source=source))
    return stored, duplicates
