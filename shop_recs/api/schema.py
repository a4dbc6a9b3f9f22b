"""OpenAPI generation that works whatever DRF schema class the host configured.

drf-spectacular needs its own ``AutoSchema`` on every view it documents; a host that
keeps DRF's default ``DEFAULT_SCHEMA_CLASS`` (``rest_framework.schemas.openapi.AutoSchema``)
would get a 500 from ``/api/shop-recs/v1/schema/`` ("Incompatible AutoSchema used on
View"). ``shop_recs.api.urls`` imports the views inside :func:`spectacular_decorators`,
so that their ``@extend_schema`` classes are drf-spectacular's, and
:class:`SchemaGenerator` gives the views without a decorator drf-spectacular's schema
while it generates. No global setting changes: the host's other APIs keep theirs.
"""

import contextlib

from drf_spectacular.generators import SchemaGenerator as SpectacularGenerator
from drf_spectacular.openapi import AutoSchema
from rest_framework.settings import api_settings


@contextlib.contextmanager
def spectacular_decorators():
    """While importing shop_recs' API views, make ``@extend_schema`` build its schema
    classes on drf-spectacular's AutoSchema whatever the host's DEFAULT_SCHEMA_CLASS;
    the host's setting is restored at once (its own views keep their schema class)."""
    missing = object()
    saved = api_settings.__dict__.get("DEFAULT_SCHEMA_CLASS", missing)
    setattr(api_settings, "DEFAULT_SCHEMA_CLASS", AutoSchema)
    try:
        yield
    finally:
        if saved is missing:
            delattr(api_settings, "DEFAULT_SCHEMA_CLASS")
        else:
            setattr(api_settings, "DEFAULT_SCHEMA_CLASS", saved)


class SchemaGenerator(SpectacularGenerator):
    """drf-spectacular's generator, tolerant of the host's ``DEFAULT_SCHEMA_CLASS``."""

    def create_view(self, callback, method, request=None):
        view = super().create_view(callback, method, request)
        schema = view.schema
        if not isinstance(schema, AutoSchema):  # a view without @extend_schema
            self._set_schema_to_view(view, AutoSchema())
        return view
