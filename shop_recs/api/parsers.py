"""A JSON parser that refuses bodies over ``SHOP_RECS["MAX_BODY_BYTES"]`` with 413.

Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` does not apply: DRF reads the request stream
itself. The declared length is checked first, then at most limit + 1 bytes are read,
so a client lying about the length cannot make the server buffer more.
"""

import io

from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

from shop_recs.conf import recs_settings


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


class LimitedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = recs_settings.MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request else 0
        except ValueError:
            declared = 0
        if declared > limit:
            raise PayloadTooLarge(f"Request body over {limit} bytes.")
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise PayloadTooLarge(f"Request body over {limit} bytes.")
        if not data:
            raise ParseError("Empty request body.")
        return super().parse(io.BytesIO(data), media_type, parser_context)
