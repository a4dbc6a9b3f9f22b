"""Throttles of the API, by scope, with rates from ``SHOP_RECS["THROTTLE_RATES"]``.

The host's ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` is not needed. Clients are
identified by user id or by a keyed hash of their address, so no raw IP address is
written to the cache. A cache that fails lets the request through (fail open) and logs:
a throttle must never take the shop down.
"""

import logging

from rest_framework.throttling import SimpleRateThrottle

from shop_recs.conf import recs_settings
from shop_recs.ingest import pseudonymise

logger = logging.getLogger(__name__)


class ShopRecsThrottle(SimpleRateThrottle):
    scope = None

    def get_rate(self):
        return recs_settings.THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        user = request.user
        if user and user.is_authenticated:
            ident = f"user:{user.pk}"
        else:
            ident = pseudonymise("throttle", self.get_ident(request))
        return f"shop_recs:throttle:{self.scope}:{ident}"

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception:  # noqa: BLE001 (any cache backend error)
            logger.warning("throttle cache unavailable; request allowed", exc_info=True)
            return True


class ReadThrottle(ShopRecsThrottle):
    scope = "shop_recs.read"


class EventsThrottle(ShopRecsThrottle):
    scope = "shop_recs.events"


class StaffThrottle(ShopRecsThrottle):
    scope = "shop_recs.staff"
