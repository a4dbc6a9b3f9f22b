"""Template tags of shop_recs: the "frequently bought together" and cart widgets.

Usage::

    {% load shop_recs %}
    {% frequently_bought_together product %}
    {% frequently_bought_together product limit=4 template="myshop/fbt.html" %}
    {% complete_the_cart cart_products limit=4 %}

The tags ask ``shop_recs.ranking`` and render ``shop_recs/frequently_bought_together.html``
or ``shop_recs/complete_the_cart.html`` (override them in the host's templates). The
"Add all to cart" form posts to ``SHOP_RECS["CART_URL_NAME"]`` with the field names of
``SHOP_RECS["CART_FIELDS"]``; it works without JavaScript, and
``shop_recs/widget.js`` updates the totals live and sends impression and click beacons
to the events API. A tag never raises into the page: on any error it logs and renders
nothing.

Caching: for visitors without purchase history the FBT widget's HTML is cached whole
(``ranking.shared_answer``; invalidated by new runs, bundle changes and product saves).
The only per-request parts, the CSRF token and the element id, are rendered as
placeholders and filled in on every request, so a template that overrides
``frequently_bought_together.html`` must not show other per-request data (the user, the
session, messages) - or set ``SHOP_RECS["CACHE_TIMEOUT"] = 0``.
"""

import logging
import uuid
from decimal import Decimal

from django import template
from django.middleware.csrf import CSRF_TOKEN_LENGTH, get_token
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils.crypto import salted_hmac
from django.utils.functional import SimpleLazyObject
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.translation import get_language

from shop_recs import ranking
from shop_recs.attribution import make_token
from shop_recs.conf import recs_settings
from shop_recs.formats import money
from shop_recs.products import get_adapter

logger = logging.getLogger(__name__)
register = template.Library()

FBT_WIDGET, CART_WIDGET = "fbt", "cart"
CENT = Decimal("0.01")


def _marker(name):
    # Placeholders in cached HTML: lowercase hex (nothing to escape), keyed with
    # SECRET_KEY so that no product name can contain one.
    return f"shoprecs{name}{salted_hmac('shop_recs.widget.marker', name).hexdigest()[:20]}"


CSRF_MARKER = SimpleLazyObject(lambda: _marker("csrf"))
ID_MARKER = SimpleLazyObject(lambda: _marker("id"))


def _reverse(name, *args):
    if not name:
        return ""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


def _link(url, params):
    if not url:
        return ""
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def _entry(product, item=None, *, widget):
    """What the partial needs of one product (the anchor has no ``item``)."""
    adapter = get_adapter()
    price = adapter.price(product)
    fields = recs_settings.CART_FIELDS
    bundle = item.bundle if item else None
    run = item.run if item else None
    params = {k: v for k, v in ((fields["widget"], widget), (fields["bundle"], bundle),
                                (fields["run"], run)) if v not in (None, "")}
    params[fields["token"]] = make_token(widget, bundle, run)
    return {
        "product": product, "pk": str(product.pk), "name": adapter.name(product),
        "price": price, "price_text": money(price, adapter.get(product, "currency")),
        "image_url": str(adapter.get(product, "image_url") or ""),
        "url": _link(adapter.url(product), params) if item else adapter.url(product),
        "source": item.source if item else "anchor", "run": run, "bundle": bundle,
        "purchasable": price is not None and bool(adapter.get(product, "in_stock")),
    }


def _context(context, result, *, widget, anchor=None):
    request = context.get("request")
    adapter = get_adapter()
    currency = (adapter.get(anchor or result.items[0].product, "currency")
                or recs_settings.DEFAULT_CURRENCY)
    entries = [_entry(item.product, item, widget=widget) for item in result.items]
    first = _entry(anchor, widget=widget) if anchor is not None else None
    selected = [e for e in ([first] if first else []) + entries if e["purchasable"]]
    total = sum((e["price"] for e in selected), Decimal("0"))
    bundle = result.bundle
    discount = Decimal(result.bundles[bundle]["discount_percent"]) if bundle else Decimal("0")
    discounted = (total * (100 - discount) / 100).quantize(CENT) if discount else total
    fields = recs_settings.CART_FIELDS
    return {
        "widget": widget, "widget_id": f"shop-recs-{widget}-{ID_MARKER}",
        "anchor": first, "items": entries, "result": result, "run": result.run,
        "bundle": bundle, "discount_percent": discount, "currency": currency,
        "total": total, "total_text": money(total, currency),
        "discounted_total": discounted, "discounted_text": money(discounted, currency),
        "cart_url": _reverse(recs_settings.CART_URL_NAME), "fields": fields,
        "token": make_token(widget, bundle, result.run),
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


def _fill(html, context, request):
    """The per-request parts of a rendered (possibly cached) widget."""
    html = html.replace(str(CSRF_MARKER), _csrf_token(context, request))
    # The cached HTML was rendered with auto-escaping; only a CSRF token and a hex id go in.
    return mark_safe(html.replace(str(ID_MARKER), uuid.uuid4().hex[:8]))  # nosec B308 B703


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
        html = ranking.shared_answer(parts, [product.pk], visitor)
        if html is not None:
            return html  # "" when there is nothing to show
        result = ranking.frequently_bought_together(product, limit=shown, visitor=visitor,
                                                    track=True)
        if not result:
            ranking.store_answer(parts, result, "")
            return None
        extra = _context(context, result, widget=FBT_WIDGET, anchor=product)
        extra["shop_recs_store"] = lambda rendered: ranking.store_answer(parts, result, rendered)
        return extra

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
        result = ranking.complete_the_cart(
            products, limit=limit or recs_settings.WIDGET_LIMIT + 1,
            visitor=ranking.visitor_for(context.get("request")))
        if not result:
            return None
        return _context(context, result, widget=CART_WIDGET)

    return _render(CART_WIDGET, context, template or "shop_recs/complete_the_cart.html", build)


@register.filter
def shop_recs_money(amount, currency):
    return money(amount, currency)
