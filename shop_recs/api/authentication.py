"""HTTP Basic authentication that answers 401, never 500, to credentials no user can have.

Use it in ``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]`` in place of DRF's
``rest_framework.authentication.BasicAuthentication``::

    "shop_recs.api.authentication.BasicAuthentication",

DRF hands the decoded user id straight to Django's ``authenticate()``, whose lookup on
PostgreSQL raises ``DataError`` (an HTTP 500 on every endpoint, public ones included,
because DRF authenticates each request) when the id contains a NUL character, which
PostgreSQL text cannot hold. Such credentials are refused here before any query.
"""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.authentication import BasicScheme
from rest_framework import authentication, exceptions


class BasicAuthentication(authentication.BasicAuthentication):
    def authenticate_credentials(self, userid, password, request=None):
        if "\x00" in userid or "\x00" in password:
            raise exceptions.AuthenticationFailed(_("Invalid username/password."))
        return super().authenticate_credentials(userid, password, request)


class BasicAuthenticationScheme(BasicScheme):
    """The API schema describes it as DRF's: HTTP Basic (registered by subclassing)."""

    target_class = BasicAuthentication
