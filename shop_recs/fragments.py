"""The FBT widget as an HTML fragment, for pages that defer it on a cache miss.

With ``SHOP_RECS["WIDGET_ON_MISS"] = "defer"`` the ``frequently_bought_together`` tag answers
a cache miss with an empty placeholder whose ``data-shop-recs-defer`` URL points here;
``widget.js`` fetches it and puts the widget in the placeholder's place. The view renders the
same tag for the same visitor (the page's cookies come along), so the widget, its experiment
arm, its escaping and its CSRF token are what an inline render would have given, and the
answer it computes is cached: the next page view of that product renders it inline.

The query parameter ``w`` is signed by the tag (product, limit, template, language), so a
client can neither choose a template nor ask for a widget no page offered. The read throttle
of the API applies.
"""

from django.core import signing
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.template import Context
from django.utils import translation
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_GET

from shop_recs.api.throttling import ReadThrottle
from shop_recs.products import get_adapter
from shop_recs.templatetags import shop_recs as tags

MAX_TOKEN = 2048


def _unsign(token):
    try:
        pk, limit, template_name, language = signing.loads(token, salt=tags.DEFER_SALT)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(template_name, str) or not (limit is None or isinstance(limit, int)):
        return None
    return pk, limit, template_name, language


@require_GET
def frequently_bought_together(request):
    """``GET ?w=<signed>``: the widget's HTML, or an empty body when it has nothing to show."""
    token = request.GET.get("w", "")
    parts = _unsign(token) if 0 < len(token) <= MAX_TOKEN else None
    if parts is None:
        return HttpResponseBadRequest("invalid widget parameter", content_type="text/plain")
    throttle = ReadThrottle()
    if not throttle.allow_request(request, None):
        response = HttpResponse("too many requests", status=429, content_type="text/plain")
        wait = throttle.wait()
        if wait is not None:
            response["Retry-After"] = str(max(1, int(wait)))
        return response
    pk, limit, template_name, language = parts
    model = get_adapter().model
    try:
        product = model._default_manager.get(pk=pk)
    except (model.DoesNotExist, ValueError, TypeError):
        raise Http404("no such product") from None
    # the placeholder's page linked the stylesheet already
    setattr(request, tags.CSS_DONE, True)
    context = Context({"request": request, tags.INLINE: True})
    with translation.override(language or translation.get_language()):
        html = tags.frequently_bought_together(context, product, limit=limit,
                                               template=template_name)
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    # per visitor (CSRF token, experiment arm): never stored by a shared cache
    patch_cache_control(response, private=True, no_cache=True)
    patch_vary_headers(response, ("Cookie",))
    response["X-Robots-Tag"] = "noindex"
    return response
