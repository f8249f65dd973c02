"""Conditional GETs for the hot reads: validators from the cached entry, and 304s.

A hot read's answer carries a strong ``ETag`` naming the stored fill it came from
(``caching.entries.Frame.tag``: entry key, stamp and expiry, never a hash of the body)
plus the caller's own part (``isEnrolled`` flags); ``Cache-Control: no-cache`` (``private``
for a signed-in caller), so every cache revalidates and none serves an invalidated entry;
and ``Vary: Authorization``. ``If-None-Match`` naming the current tag answers 304. A
value loaded without the cache has no tag, and is never answered 304.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.http import HttpRequest
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from prometheus_client import Counter
from rest_framework.request import Request

from caching.manager import Served

IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="The `ETag` of an earlier answer: 304 while it is still current.",
)
NOT_MODIFIED_DOC = OpenApiResponse(
    description="Not modified: `If-None-Match` named the current `ETag` (no body). Every "
    "answer carries a strong `ETag`, `Cache-Control: no-cache` (`private, no-cache` for a "
    "signed-in caller) and `Vary: Authorization`."
)
NOT_MODIFIED = Counter(
    "http_not_modified_total",
    "Hot reads answered 304 Not Modified (If-None-Match named the current ETag).",
    ["namespace"],
)


def validators(served: Served, own: str, *, signed_in: bool) -> dict[str, str]:
    """The caching headers of an answer built from ``served`` (``own``: the caller's part)."""
    headers = {
        # Revalidate every time: an entry may be invalidated at any moment.
        "Cache-Control": "private, no-cache" if signed_in else "no-cache",
        "Vary": "Authorization",
    }
    etag = entity_tag(served, own)
    if etag is not None:
        headers["ETag"] = etag
    return headers


def not_modified(request: HttpRequest | Request, headers: Mapping[str, str]) -> bool:
    """The request's ``If-None-Match`` names the answer's ETag (see ``matches``)."""
    etag = headers.get("ETag")
    return etag is not None and matches(request.META.get("HTTP_IF_NONE_MATCH"), etag)


def entity_tag(served: Served, own: str) -> str | None:
    """A strong ETag: the stored entry's tag (one per fill) and the caller's own part;
    None for a value loaded without the cache."""
    if served.tag is None:
        return None
    return f'"{served.tag}-{own}"' if own else f'"{served.tag}"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """``If-None-Match`` names ``etag`` (weak comparison, as RFC 9110 has for it) or is
    ``*``."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip().removeprefix("W/")
        if candidate in ("*", etag):
            return True
    return False


def documented(doc: Mapping[str, Any], action: Callable[..., Any]) -> Callable[..., Any]:
    """``action`` with its OpenAPI operation: ``doc`` (``extend_schema`` arguments) plus
    the conditional GET every hot read answers."""
    full = dict(doc)
    full["parameters"] = [*full.get("parameters", []), IF_NONE_MATCH]
    full["responses"] = {**full.get("responses", {}), 304: NOT_MODIFIED_DOC}
    return extend_schema(**full)(action)  # type: ignore[no-any-return]
