"""The template context of shop_recs' widgets: entries, bundle offer, totals, labels, links.

Built by :func:`widget_context` from a ranking result; rendered by the template tags
(``shop_recs.templatetags.shop_recs``). The per-request parts (CSRF token, element id,
stylesheet link) are markers here (:data:`CSRF_MARKER`, :data:`ID_MARKER`,
:data:`CSS_MARKER`), so that the rendered HTML can be cached and filled per request.
"""

import zlib
from decimal import Decimal

from django.contrib.humanize.templatetags.humanize import apnumber
from django.urls import NoReverseMatch, reverse
from django.utils.crypto import salted_hmac
from django.utils.functional import SimpleLazyObject
from django.utils.http import urlencode
from django.utils.translation import gettext

from shop_recs import newproducts
from shop_recs.attribution import token_maker
from shop_recs.conf import recs_settings
from shop_recs.formats import money
from shop_recs.products import get_adapter

FBT_WIDGET, CART_WIDGET = "fbt", "cart"
CENT = Decimal("0.01")
BUNDLE_EXTRA = 3  # products of a bundle besides its anchor (BUNDLE_SIZE is at most 4)
PLACEHOLDER_TONES = 6  # .shop-recs-tone-0 … -5 in widget.css


def _marker(name):
    # Placeholders in cached HTML: lowercase hex (nothing to escape), keyed with
    # SECRET_KEY so that no product name can contain one.
    return f"shoprecs{name}{salted_hmac('shop_recs.widget.marker', name).hexdigest()[:20]}"


CSRF_MARKER = SimpleLazyObject(lambda: _marker("csrf"))
ID_MARKER = SimpleLazyObject(lambda: _marker("id"))
CSS_MARKER = SimpleLazyObject(lambda: _marker("css"))


def initials(name):
    """Two initials of a product name, skipping numbers and short words.

    "WHITE HANGING HEART T-LIGHT HOLDER" -> "WH", "PACK OF 72 RETROSPOT CAKE CASES" -> "PR".
    """
    words = [word for word in str(name or "").split() if word[:1].isalnum()]
    telling = [word for word in words if len(word) > 2 and not word.isdigit()] or words
    return "".join(word[0] for word in telling[:2]).upper() or "?"


def placeholder_tone(key):
    """A stable colour (0-5) per product, so that neighbouring placeholder tiles differ."""
    return zlib.crc32(str(key).encode()) % PLACEHOLDER_TONES


def add_label(count):
    """The add-all button: "Add to cart", "Add both to cart", "Add all three to cart"."""
    if count <= 1:
        return gettext("Add to cart")
    if count == 2:
        return gettext("Add both to cart")
    return gettext("Add all %(count)s to cart") % {"count": apnumber(count)}


def _reverse(name, *args):
    if not name:
        return ""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


def _link(url, query):
    if not url:
        return ""
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _query_maker(widget, token):
    """``query(bundle, run)``: the attribution parameters of a product link, encoded once
    per (bundle, run) of an answer; ``token`` is its
    :func:`~shop_recs.attribution.token_maker`."""
    fields = recs_settings.CART_FIELDS
    made = {}

    def query(bundle, run):
        if (bundle, run) not in made:
            params = {k: v for k, v in ((fields["widget"], widget), (fields["bundle"], bundle),
                                        (fields["run"], run)) if v not in (None, "")}
            params[fields["token"]] = token(bundle, run)
            made[bundle, run] = urlencode(params)
        return made[bundle, run]

    return query


def _entry(product, item=None, *, query):
    """What the partial needs of one product (the anchor has no ``item``); ``query`` is the
    answer's :func:`_query_maker`."""
    adapter = get_adapter()
    price = adapter.price(product)
    bundle = item.bundle if item else None
    run = item.run if item else None
    name = adapter.name(product)
    # Numbers go to the template as text: ``data-price`` must not be localised ("2,95"
    # would read as 2 in widget.js), and text renders without the localisation step.
    return {
        "product": product, "pk": str(product.pk), "name": name,
        "price": price, "price_attr": "" if price is None else str(price),
        "price_text": money(price, adapter.get(product, "currency")),
        "image_url": str(adapter.get(product, "image_url") or ""),
        "view_label": gettext("View %(name)s") % {"name": name},  # the link's text
        "initials": initials(name),
        "tone": str(placeholder_tone(adapter.sku(product) or product.pk)),
        "url": (_link(adapter.url(product), query(bundle, run)) if item
                else adapter.url(product)),
        "source": item.source if item else "anchor", "method": item.method if item else "",
        "run": _text(run), "bundle": _text(bundle), "is_anchor": item is None,
        "purchasable": price is not None and bool(adapter.get(product, "in_stock")),
    }


def _text(number):
    return "" if number is None else str(number)


def _slots(entries, prefix):
    """``(entry, slot)`` pairs: the slot makes the element ids of an entry unique in the
    widget (an entry may be shown in the bundle offer and in the choices)."""
    return [(entry, f"{prefix}{i}") for i, entry in enumerate(entries)]


def _total(entries):
    return sum((e["price"] for e in entries if e["purchasable"]), Decimal("0"))


def _offer(result, first, entries, currency):
    """The approved bundle as its own offer: anchor + its items, price, saving; or None."""
    bundle = result.bundle
    if bundle is None or first is None:
        return None
    items = [first] + [e for e in entries if e["bundle"] == str(bundle)]
    discount = Decimal(result.bundles[bundle]["discount_percent"] or 0)
    total = _total(items)
    price = (total * (100 - discount) / 100).quantize(CENT)
    return {
        "bundle": _text(bundle), "items": items, "rows": _slots(items, "o"),
        "discount_percent": discount,
        "purchasable": all(e["purchasable"] for e in items),
        "total_text": money(total, currency), "price_text": money(price, currency),
        "saving_text": money(total - price, currency), "price": price,
    }


def widget_context(context, result, *, widget, anchor=None, limit=None):
    """The template context of a widget; ``limit`` caps the ticked choices (the FBT widget
    asks ranking for a few more, so that a bundle offer does not use up its choices)."""
    adapter = get_adapter()
    currency = (adapter.get(anchor or result.items[0].product, "currency")
                or recs_settings.DEFAULT_CURRENCY)
    token = token_maker(widget)
    query = _query_maker(widget, token)
    entries = [_entry(item.product, item, query=query) for item in result.items]
    first = _entry(anchor, query=query) if anchor is not None else None
    offer = _offer(result, first, entries, currency)
    # The ticked choices: the anchor and every product not already in the bundle offer.
    others = [e for e in entries if offer is None or e["bundle"] != offer["bundle"]][:limit]
    if limit is not None:
        entries = (offer["items"][1:] if offer else []) + others
    choices = ([first] if first else []) + others if others else []
    total = _total(choices)
    bundle = result.bundle
    # a list scored from the anchor's content says so (it has no orders yet)
    content = next((i for i in result.items if i.method == newproducts.SOURCE), None)
    return {
        "content_note": (newproducts.explanation(content.evidence) or "") if content else "",
        "widget": widget, "widget_id": f"shop-recs-{widget}-{ID_MARKER}",
        "stylesheet": str(CSS_MARKER),
        "anchor": first, "items": entries, "result": result, "run": _text(result.run),
        "offer": offer, "choices": choices, "choice_rows": _slots(choices, ""),
        "add_label": add_label(sum(1 for e in choices if e["purchasable"])),
        "bundle": _text(bundle), "currency": currency,
        "total": total, "total_text": money(total, currency),
        "cart_url": _reverse(recs_settings.CART_URL_NAME), "fields": recs_settings.CART_FIELDS,
        # The bundle offer's adds are attributed to the bundle; the choices' to the widget.
        "token": token(bundle, result.run),
        "choices_token": token(None, result.run),
        "events_url": _reverse("shop_recs:api-events"),
        "csrf_token": str(CSRF_MARKER),
    }
