"""CORS for the API: browsers on the configured origins may call ``/api/``; no one else.

Origins are listed exactly in ``CORS_ALLOWED_ORIGINS`` (``scheme://host[:port]``; no
wildcards, and ``null`` never matches). Auth is a bearer header, never a cookie, so
credentials are not allowed. Every API response says ``Vary: Origin`` so a shared cache never
hands one origin's answer to another. Preflights (``OPTIONS`` with
``Access-Control-Request-Method``) are answered here with 204 and never reach a view; only an
allowed origin gets CORS headers on it, so the browser refuses the real request of any other.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

Handler = Callable[[HttpRequest], HttpResponse]

API_PREFIX = "/api/"
ALLOW_METHODS = "GET, POST, PUT, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id"
EXPOSE_HEADERS = "X-Request-Id, Retry-After, Idempotent-Replayed"


def normalize_origin(origin: str) -> str:
    """``Scheme://Host:Port/`` → ``scheme://host:port`` (origins compare case-insensitively)."""
    return origin.strip().rstrip("/").lower()


class CorsMiddleware:
    """Adds CORS headers to ``/api/`` responses for allowed origins; answers preflights."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    @staticmethod
    def allowed_origins() -> frozenset[str]:
        """The configured origins, normalized (read per request, so overrides apply)."""
        origins = {normalize_origin(origin) for origin in settings.CORS_ALLOWED_ORIGINS}
        return frozenset(origins - {"", "null", "*"})

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        origin = request.headers.get("Origin")
        allowed = origin if origin and normalize_origin(origin) in self.allowed_origins() else None
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response = HttpResponse(status=204)
            if allowed:
                response["Access-Control-Allow-Methods"] = ALLOW_METHODS
                response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
                response["Access-Control-Max-Age"] = str(settings.CORS_PREFLIGHT_MAX_AGE)
        else:
            response = self.get_response(request)
            if allowed:
                response["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if allowed:
            response["Access-Control-Allow-Origin"] = allowed
        patch_vary_headers(response, ("Origin",))
        return response
