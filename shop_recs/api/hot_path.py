"""The FBT endpoint's hot path: a plain JSON GET answered without DRF's dispatch.

DRF's dispatch (the ``Request`` wrapper, content negotiation, one object per authenticator,
permission and throttle) costs more CPU than finding a cached answer (about 80 of 400 µs
in the demo's process; ``python -m benchmarks.serving_cpu``). For the requests where that
machinery has nothing to decide, :func:`answer` serves the endpoint itself:

- a GET without an ``Authorization`` header or a test client's forced credentials, to a
  view whose authenticators are DRF's session, basic and token ones and shop_recs' basic
  one: none of them then authenticates anyone but the session's user, whom Django's
  ``AuthenticationMiddleware`` already holds as ``request.user`` (a GET needs no CSRF
  check), so the caller is who DRF would find;
- asking for JSON: no ``Accept`` header, ``*/*`` or ``application/json``, no
  ``?format=``, to a view whose first renderer is DRF's ``JSONRenderer``: what DRF's
  negotiation would choose; no versioning;
- permissions all ``AllowAny``; throttles all shop_recs' (``ShopRecsThrottle``), which
  read only the user and the client's address, so they are checked here, on the plain
  request, exactly as DRF checks them.

Anything else goes through DRF's dispatch unchanged: other methods, credentials or media
types, and a request that a throttle refuses (DRF answers its 429 with ``Retry-After``).
An error met here (a malformed id or limit, an unknown product) is raised again from the
view through DRF, which answers it as always; :func:`counted` then keeps the throttles from
counting that request twice. The response carries DRF's headers (``Allow``, and ``Vary:
Accept`` when the view has more than one renderer).
"""

from functools import lru_cache

from django.http import HttpResponse
from rest_framework import authentication
from rest_framework.exceptions import APIException
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings

from shop_recs.api.authentication import BasicAuthentication
from shop_recs.api.throttling import ShopRecsThrottle

# Authenticators that look at nothing but the session and the Authorization header.
HEADER_OR_SESSION = (authentication.SessionAuthentication, authentication.BasicAuthentication,
                     authentication.TokenAuthentication, BasicAuthentication)
JSON_ACCEPT = frozenset({None, "", "*/*", "application/json"})
COUNTED = "_shop_recs_throttles_counted"  # set on the HttpRequest the throttles allowed
ERROR = "_shop_recs_error"  # an error met on the hot path, for the view to raise via DRF


@lru_cache(maxsize=None)
def plan(view_class):
    """``(headers, session_auth)`` of the hot path for ``view_class``, or None when its
    configuration needs DRF's dispatch (read once per class: DRF's settings are bound to
    the class when it is created)."""
    view = view_class()
    if (view.versioning_class is not None
            or view.content_negotiation_class is not DefaultContentNegotiation
            or not view.renderer_classes or view.renderer_classes[0] is not JSONRenderer
            or any(cls not in HEADER_OR_SESSION for cls in view.authentication_classes)
            or any(cls is not AllowAny for cls in view.permission_classes)
            or not all(issubclass(cls, ShopRecsThrottle) for cls in view.throttle_classes)):
        return None
    if hasattr(view, "get") and not hasattr(view, "head"):
        view.head = view.get  # as Django's View.setup does, so that Allow lists HEAD
    headers = {"Allow": ", ".join(view.allowed_methods)}
    if len(view.renderer_classes) > 1:
        headers["Vary"] = "Accept"
    session_auth = any(issubclass(cls, authentication.SessionAuthentication)
                       for cls in view.authentication_classes)
    return headers, session_auth


def caller(view, request):
    """Django's ``request.user`` when DRF would authenticate the same caller without its
    dispatch (see the module docstring), else None."""
    if request.method != "GET" or "HTTP_AUTHORIZATION" in request.META:
        return None
    if request.META.get("HTTP_ACCEPT") not in JSON_ACCEPT:
        return None
    if (getattr(request, "_force_auth_user", None) is not None
            or getattr(request, "_force_auth_token", None) is not None):
        return None  # DRF's test client's force_authenticate(): DRF authenticates them
    config = plan(type(view))
    user = getattr(request, "user", None)  # set by AuthenticationMiddleware (lazy)
    if config is None or user is None:
        return None
    if user.is_authenticated and not (config[1] and user.is_active):
        return None  # DRF would not take the session's user: let it decide
    return user


def query(request):
    """The query parameters, or None when they ask DRF for a format."""
    if not request.META.get("QUERY_STRING"):
        return {}
    params = request.GET
    return None if api_settings.URL_FORMAT_OVERRIDE in params else params


def answer(view, request, respond):
    """The response for ``request`` (a Django ``HttpRequest``), or None to go through DRF.
    ``respond(params)``: the JSON body (bytes) of the view's answer for the query
    parameters; it may raise DRF's exceptions."""
    if caller(view, request) is None:
        return None
    params = query(request)
    if params is None:
        return None
    for throttle in view.get_throttles():
        if not throttle.allow_request(request, view):
            return None  # DRF checks again and answers the 429
    setattr(request, COUNTED, True)
    try:
        body = respond(params)
    except APIException as exc:
        setattr(request, ERROR, exc)
        return None
    response = HttpResponse(body, content_type=JSONRenderer.media_type)
    for key, value in plan(type(view))[0].items():
        response[key] = value
    return response


def counted(request):
    """Whether the hot path already counted this request (a DRF ``Request``) against the
    throttles."""
    return getattr(request._request, COUNTED, False)


def take_error(request):
    """The error the hot path met for this request (a DRF ``Request``), once."""
    error = getattr(request._request, ERROR, None)
    if error is not None:
        delattr(request._request, ERROR)
    return error
