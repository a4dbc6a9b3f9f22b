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
from functools import lru_cache

from django import template
from django.core import signing
from django.core.signals import setting_changed
from django.middleware.csrf import CSRF_TOKEN_LENGTH, get_token
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import get_script_prefix
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.translation import get_language

from shop_recs import ranking
from shop_recs.analytics import experiments
from shop_recs.conf import recs_settings
from shop_recs.formats import money
from shop_recs.widget_context import (  # noqa: F401 (initials, placeholder_tone, add_label: public)
    BUNDLE_EXTRA, CART_WIDGET, CSRF_MARKER, CSS_MARKER, FBT_WIDGET, ID_MARKER, _reverse,
    add_label, initials, placeholder_tone)
from shop_recs.widget_context import widget_context as _context

logger = logging.getLogger(__name__)
register = template.Library()

STYLESHEET = "shop_recs/widget.css"
CSS_DONE = "_shop_recs_css_linked"  # request attribute: the page has the stylesheet
DEFER_SALT = "shop_recs.fragments.fbt"  # signs the deferred widget's parameters
INLINE = "shop_recs_inline"  # context flag: render the widget now, never a placeholder


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
