"""Signed attribution tokens: which widget, bundle and training run led to an action.

Widgets put a token on their links, their "Add all to cart" form and their beacon::

    from shop_recs.attribution import make_token, read_token

    token = make_token(widget="fbt", bundle=12, run=7)
    read_token(token)  # -> Attribution(widget="fbt", bundle=12, run=7), or None

A token is signed with ``SECRET_KEY`` (``django.core.signing``) and expires after
``SHOP_RECS["ATTRIBUTION_MAX_AGE"]`` seconds, so a visitor cannot credit a purchase to
a bundle or run that never showed it. The events API trusts attribution only from a
token; a host cart may verify it the same way before storing the plain fields.
"""

from dataclasses import asdict, dataclass

from django.core import signing

from shop_recs.conf import recs_settings

SALT = "shop_recs.attribution"
WIDGET_MAX_LENGTH = 40
MAX_REF = 2**63 - 1


@dataclass(frozen=True)
class Attribution:
    widget: str = ""
    bundle: int | None = None
    run: int | None = None

    def as_event_fields(self):
        """Keyword arguments of ``shop_recs.ingest.record_event``."""
        return {"widget": self.widget, "bundle_ref": self.bundle, "run_ref": self.run}

    def as_dict(self):
        return asdict(self)


def make_token(widget, bundle=None, run=None):
    """A signed, URL-safe token carrying ``widget``, ``bundle`` and ``run``."""
    payload = {"w": str(widget)[:WIDGET_MAX_LENGTH]}
    if bundle is not None:
        payload["b"] = int(bundle)
    if run is not None:
        payload["r"] = int(run)
    return signing.dumps(payload, salt=SALT, compress=False)


def token_maker(widget):
    """``make_token`` for one answer: ``token(bundle, run)``, signed once per distinct pair
    (an answer's items mostly share a run, and signing dominates a cold answer's tokens)."""
    tokens = {}

    def token(bundle=None, run=None):
        key = (bundle, run)
        if key not in tokens:
            tokens[key] = make_token(widget, bundle, run)
        return tokens[key]

    return token


def _ref(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_REF:
        raise ValueError(value)
    return value


def read_token(token):
    """The :class:`Attribution` of a valid token; None when missing, forged or expired."""
    if not token or not isinstance(token, str) or len(token) > 500:
        return None
    try:
        payload = signing.loads(token, salt=SALT, max_age=recs_settings.ATTRIBUTION_MAX_AGE)
        widget = payload.get("w", "")
        if not isinstance(widget, str):
            return None
        return Attribution(widget[:WIDGET_MAX_LENGTH], _ref(payload.get("b")),
                           _ref(payload.get("r")))
    except (signing.BadSignature, ValueError, TypeError, AttributeError):
        return None
