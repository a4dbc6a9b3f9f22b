"""Template tags of shop_recs: the "frequently bought together" and cart widgets.

Usage::

    {% load shop_recs %}
    {% frequently_bought_together product %}
    {% frequently_bought_together product limit=4 template="myshop/fbt.html" %}
    {% complete_the_cart cart_products limit=4 %}
    {% shop_recs_css %}   {# optional, in <head>: else the first widget links it #}

The tags ask ``shop_recs.ranking`` and render ``shop_recs/frequently_bought_together.html``
or ``shop_recs/complete_the_cart.html`` (override them in the host's templates). The
"Add all to cart" form posts to ``SHOP_RECS["CART_URL_NAME"]`` with the field names of
``SHOP_RECS["CART_FIELDS"]``; it works without JavaScript, and
``shop_recs/widget.js`` updates the totals live and sends impression and click beacons
to the events API. A tag never raises into the page: on any error it logs and renders
nothing.

Look: ``shop_recs/widget.css`` (classes ``shop-recs-*`` only, its own visually-hidden class,
no CSS framework needed; colours are custom properties such as ``--shop-recs-accent``). The
first widget on a page links it, unless ``{% shop_recs_css %}`` already did in ``<head>``.
A product without an image gets a placeholder tile with its initials
(:func:`initials`, :func:`placeholder_tone`; the demo's product pages use the same).
An approved bundle whose products are all shown is offered as its own box (bundle price,
saving, one button); the other products are ticked choices with a total and an add-all button.

Experiments (``shop_recs.analytics.experiments``): a running experiment on the widget's
placement decides, per visitor, which arm's items it shows; the widget then carries the
arm's signed exposure token (``data-exposure``), posted by ``widget.js`` once it is seen. The
*no widget* arm renders only an empty, invisible spot with that token, and only where the
widget would have shown something, so that both arms count exposures alike.

Caching: for visitors without purchase history the FBT widget's HTML is cached whole
(``ranking.shared_answer``; invalidated by new runs, bundle changes and product saves).
The only per-request parts, the CSRF token, the element id and the stylesheet link (once
per page), are rendered as placeholders and filled in on every request, so a template that
overrides ``frequently_bought_together.html`` must not show other per-request data (the
user, the session, messages) - or set ``SHOP_RECS["CACHE_TIMEOUT"] = 0``.
"""

import logging
import uuid
import zlib
from decimal import Decimal
from functools import lru_cache

from django import template
from django.contrib.humanize.templatetags.humanize import apnumber
from django.core import signing
from django.core.signals import setting_changed
from django.middleware.csrf import CSRF_TOKEN_LENGTH, get_token
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import NoReverseMatch, get_script_prefix, reverse
from django.utils.crypto import salted_hmac
from django.utils.functional import SimpleLazyObject
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.translation import get_language, gettext

from shop_recs import newproducts, ranking
from shop_recs.analytics import experiments
from shop_recs.attribution import token_maker
from shop_recs.conf import recs_settings
from shop_recs.formats import money
from shop_recs.products import get_adapter

logger = logging.getLogger(__name__)
register = template.Library()

FBT_WIDGET, CART_WIDGET = "fbt", "cart"
CENT = Decimal("0.01")
BUNDLE_EXTRA = 3  # products of a bundle besides its anchor (BUNDLE_SIZE is at most 4)
PLACEHOLDER_TONES = 6  # .shop-recs-tone-0 … -5 in widget.css
STYLESHEET = "shop_recs/widget.css"
CSS_DONE = "_shop_recs_css_linked"  # request attribute: the page has the stylesheet
DEFER_SALT = "shop_recs.fragments.fbt"  # signs the deferred widget's parameters
INLINE = "shop_recs_inline"  # context flag: render the widget now, never a placeholder


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


def _context(context, result, *, widget, anchor=None, limit=None):
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


def _csrf_token(context, request):
    """The token the page's own ``{% csrf_token %}`` tags show (the context processor's,
    masked once per render), else a new one."""
    token = str(context.get("csrf_token") or "")
    if len(token) == CSRF_TOKEN_LENGTH and token.isalnum():  # not "NOTPROVIDED"
        return token
    return get_token(request) if request is not None else ""


def _stylesheet(request):
    """The widget stylesheet's <link>, once per page (request); "" when already linked."""
    if request is not None:
        if getattr(request, CSS_DONE, False):
            return ""
        setattr(request, CSS_DONE, True)
    return format_html('<link rel="stylesheet" href="{}">', static(STYLESHEET))


def _fill(html, context, request):
    """The per-request parts of a rendered (possibly cached) widget."""
    html = html.replace(str(CSRF_MARKER), _csrf_token(context, request))
    if str(CSS_MARKER) in html:
        html = html.replace(str(CSS_MARKER), _stylesheet(request))
    # The cached HTML was rendered with auto-escaping; only a CSRF token, a hex id and our
    # own <link> (format_html, escaped static URL) go in.
    return mark_safe(html.replace(str(ID_MARKER), uuid.uuid4().hex[:8]))  # nosec B308 B703


def _deferred(context, pk, shown, template_name):
    """The placeholder of a widget whose answer is not cached (``WIDGET_ON_MISS = "defer"``):
    ``widget.js`` replaces it with the fragment view's render (``shop_recs.fragments``)."""
    if (recs_settings.WIDGET_ON_MISS != "defer" or context.get(INLINE)
            or context.get("request") is None):
        return None
    return _placeholder(str(pk), shown, template_name, get_language(), get_script_prefix())


@lru_cache(maxsize=4096)
def _placeholder(pk, shown, template_name, language, _prefix):
    """The placeholder's HTML, the same on every miss of one widget (kept per process: the
    signature, the URL and the static path cost more than the lookup that missed)."""
    url = _reverse("shop_recs:widget-fbt")
    if not url:
        return None
    signed = signing.dumps([pk, shown, template_name, language], salt=DEFER_SALT,
                           compress=True)
    return format_html(
        '{}<div class="shop-recs shop-recs-deferred" data-shop-recs-defer="{}" '
        'aria-busy="true"></div><script src="{}" defer></script>',
        str(CSS_MARKER), f"{url}?{urlencode({'w': signed})}", static("shop_recs/widget.js"))


def _forget_placeholders(**kwargs):
    _placeholder.cache_clear()  # a new SECRET_KEY, STATIC_URL or URLconf (tests)


setting_changed.connect(_forget_placeholders, dispatch_uid="shop_recs.placeholders")


def _holdout(context, widget, assigned):
    """The *no widget* arm: an empty spot that logs the exposure (HTML; "" when shipped)."""
    if not assigned.exposure:
        return ""
    return render_to_string("shop_recs/experiment_holdout.html", {
        "widget": widget, "exposure": assigned.exposure,
        "exposure_url": _reverse("shop_recs:api-exposure"), "csrf_token": str(CSRF_MARKER),
    }, request=context.get("request"))


def _exposure(extra, assigned):
    """Put the arm's exposure token into a widget's context."""
    if assigned is not None and assigned.exposure:
        extra["exposure"] = assigned.exposure
        extra["exposure_url"] = _reverse("shop_recs:api-exposure")
    return extra


def _render(name, context, template_name, build):
    """``build()`` returns None (nothing), rendered HTML (from the cache) or a context;
    a context may hold ``"shop_recs_store"``, called with the HTML rendered from it."""
    try:
        extra = build()
        if extra is None:
            return ""
        request = context.get("request")
        if isinstance(extra, str):
            return _fill(extra, context, request)
        store = extra.pop("shop_recs_store", None)
        html = render_to_string(template_name, extra, request=request)
        if store is not None:
            store(str(html))
        return _fill(html, context, request)
    except Exception:  # noqa: BLE001 (a widget must never break the page)
        logger.exception("shop_recs: the %s widget failed and was left out", name)
        return ""


@register.simple_tag(takes_context=True)
def frequently_bought_together(context, product, limit=None, template=None):
    """Render the "frequently bought together" widget of ``product``.

    Syntax::

        {% frequently_bought_together product [limit=3] [template="..."] %}
    """
    template_name = template or "shop_recs/frequently_bought_together.html"

    def build():
        if product is None or getattr(product, "pk", None) is None:
            return None
        request = context.get("request")
        visitor = ranking.visitor_for(request)
        shown = ranking.clamp_limit(limit)
        parts = ("widget-fbt", template_name, product.pk, shown, get_language())
        html, assigned, parts = experiments.shared_answer(experiments.FBT, parts, [product.pk],
                                                          visitor)
        if html is not None:
            return html  # "" when there is nothing to show
        placeholder = _deferred(context, product.pk, shown, template_name)
        if placeholder is not None:
            return placeholder
        # A bundle offer shows its items apart: ask for enough to fill the choices too.
        hidden = assigned is not None and assigned.hides_widget
        result = ranking.frequently_bought_together(
            product, limit=ranking.clamp_limit(shown + BUNDLE_EXTRA), visitor=visitor,
            track=True, **(assigned.recommend_kwargs() if assigned else {}))
        if assigned is not None:
            result = assigned.adjust(result)  # a discount arm's bundle price
        if not result or hidden:
            html = _holdout(context, FBT_WIDGET, assigned) if result else ""
            ranking.store_answer(parts, result, html)
            return html or None
        extra = _context(context, result, widget=FBT_WIDGET, anchor=product, limit=shown)
        extra["shop_recs_store"] = lambda rendered: ranking.store_answer(parts, result, rendered)
        return _exposure(extra, assigned)

    return _render(FBT_WIDGET, context, template_name, build)


@register.simple_tag(takes_context=True)
def complete_the_cart(context, cart_items, limit=None, template=None):
    """Render products that complete a cart of ``cart_items`` (products).

    Syntax::

        {% complete_the_cart cart_products [limit=4] [template="..."] %}
    """
    def build():
        products = [getattr(i, "product", i) for i in (cart_items or ())]
        if not products:
            return None
        visitor = ranking.visitor_for(context.get("request"))
        assigned = experiments.assign(experiments.CART, visitor)
        result = ranking.complete_the_cart(
            products, limit=limit or recs_settings.WIDGET_LIMIT + 1, visitor=visitor,
            **(assigned.recommend_kwargs() if assigned else {}))
        if not result:
            return None
        if assigned is not None and assigned.hides_widget:
            return _holdout(context, CART_WIDGET, assigned) or None
        return _exposure(_context(context, result, widget=CART_WIDGET), assigned)

    return _render(CART_WIDGET, context, template or "shop_recs/complete_the_cart.html", build)


@register.simple_tag(takes_context=True)
def shop_recs_css(context):
    """``<link>`` to the widgets' stylesheet, for a page's ``<head>``; the widgets on the
    page then leave theirs out. Optional: without it the first widget links it."""
    return _stylesheet(context.get("request"))


@register.filter
def shop_recs_money(amount, currency):
    return money(amount, currency)
