"""The contract's envelope, error and pagination shapes for drf-spectacular (docs only).

Views build their responses with ``chainlearn.api.ok`` and the exception handler; these
serializers only describe those bodies in the OpenAPI schema, once for every app.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.drainage import set_override
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from chainlearn.api import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, PAGE_MAX


class EnvelopeMetaSerializer(serializers.Serializer):
    version = serializers.CharField()
    timestamp = serializers.DateTimeField()
    requestId = serializers.CharField()


class EnvelopePaginationSerializer(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, max_value=PAGE_MAX)
    limit = serializers.IntegerField(min_value=1, max_value=PAGE_LIMIT_MAX)
    total = serializers.IntegerField(min_value=0)


class ApiErrorSerializer(serializers.Serializer):
    statusCode = serializers.IntegerField()
    error = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField(
        required=False,
        help_text="Only for validation errors: field name → messages (a list of strings, or "
        "an object keyed by item index or sub-field for nested input).",
    )


def envelope(name: str, data: serializers.Field, *, paginated: bool = False) -> Any:
    """The schema of a success envelope ``{success, data, [pagination], meta}`` around ``data``.

    ``name`` becomes the OpenAPI component name, so it must be unique across the API.
    """
    fields: dict[str, serializers.Field] = {"success": serializers.BooleanField(), "data": data}
    if paginated:
        fields["pagination"] = EnvelopePaginationSerializer()
    fields["meta"] = EnvelopeMetaSerializer()
    # An envelope is one object, also around a list action's items.
    return set_override(inline_serializer(name=name, fields=fields), "many", False)


def error(description: str) -> OpenApiResponse:
    """An error-envelope response documented with ``description`` (code: what it means)."""
    return OpenApiResponse(response=ApiErrorSerializer, description=description)


UNAUTHORIZED = error("UNAUTHORIZED: missing, invalid or revoked bearer token.")

RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    required=True,
    description="Seconds until the rate-limit window resets.",
    response=[429],
)


def rate_limited(scope: str, what: str) -> OpenApiResponse:
    """The 429 of an endpoint limited by ``settings.RATE_LIMITS[scope]``; ``what`` is counted."""
    limit, window = settings.RATE_LIMITS[scope]
    return error(
        f"RATE_LIMITED: more than {limit} {what} within {window} seconds; retry after "
        "`Retry-After` seconds."
    )


def document_common_errors(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: responses every operation can give.

    413 for any operation with a body (the body-size middleware) and 503 for all (the
    database unavailable), both in the error envelope.
    """
    error_ref = {"$ref": "#/components/schemas/ApiError"}
    body = {"application/json": {"schema": error_ref}}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            responses = operation.setdefault("responses", {})
            if method in ("post", "put", "patch"):
                responses.setdefault(
                    "413", {"description": "PAYLOAD_TOO_LARGE: body over 100 KB.", "content": body}
                )
            responses.setdefault(
                "503",
                {
                    "description": "SERVICE_UNAVAILABLE: the database is unreachable.",
                    "content": body,
                },
            )
    return result


# The bounds ``chainlearn.api.page_params`` enforces: (minimum, maximum, default, description).
PAGE_QUERY_BOUNDS = {
    "page": (1, PAGE_MAX, 1, f"Page number, 1-{PAGE_MAX} (default 1)."),
    "limit": (
        1,
        PAGE_LIMIT_MAX,
        PAGE_LIMIT_DEFAULT,
        f"Page size, 1-{PAGE_LIMIT_MAX} (default {PAGE_LIMIT_DEFAULT}).",
    ),
}


def document_page_bounds(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every ``page``/``limit`` query parameter gets the
    minimum, maximum and default that ``page_params`` enforces, whichever view declared it.
    """
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                bounds = PAGE_QUERY_BOUNDS.get(parameter.get("name"))
                if bounds is None or parameter.get("in") != "query":
                    continue
                minimum, maximum, default, description = bounds
                parameter.setdefault("schema", {"type": "integer"}).update(
                    minimum=minimum, maximum=maximum, default=default
                )
                parameter["description"] = description
    return result
