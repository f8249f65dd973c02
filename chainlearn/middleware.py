"""Request-level middleware: request ids, the /api → /api/v1 redirect, body size, and the
browser-only (admin) middleware."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseForbidden,
    HttpResponsePermanentRedirect,
)
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.deprecation import MiddlewareMixin

from chainlearn.api import error_response

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Handler = Callable[[HttpRequest], HttpResponse]


def new_request_id() -> str:
    """A random version-4 UUID, drawn without a system call.

    ``uuid.uuid4()`` reads ``os.urandom``: a system call that releases the GIL, and under
    load every release hands the GIL to another request thread and makes this one queue to
    get it back. A request id only has to be unique, not unguessable; the ``random``
    module reseeds itself in every forked worker.
    """
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


class RequestIdMiddleware:
    """Use the caller's ``X-Request-Id`` when it is sane, else a new UUID; echo it back."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get("X-Request-Id", "")
        rid = supplied if _REQUEST_ID.match(supplied) else new_request_id()
        request.request_id = rid  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-Id"] = rid
        return response


class ApiVersionRedirectMiddleware:
    """``/api/<rest>`` that is not under ``/api/v1/`` answers 301 to ``/api/v1/<rest>``."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if path.startswith("/api/") and not path.startswith("/api/v1/") and path != "/api/v1":
            target = "/api/v1/" + path[len("/api/") :]
            query = request.META.get("QUERY_STRING", "")
            return HttpResponsePermanentRedirect(f"{target}?{query}" if query else target)
        return self.get_response(request)


class BodySizeLimitMiddleware:
    """Refuse bodies over ``MAX_BODY_BYTES`` with 413 before anything reads them."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            too_big = int(length) > settings.MAX_BODY_BYTES
        except ValueError:
            return error_response(400, "VALIDATION_ERROR", "Invalid Content-Length")
        if too_big:
            return error_response(413, "PAYLOAD_TOO_LARGE", "Request body too large")
        return self.get_response(request)


def _browser_path(request: HttpRequest) -> bool:
    return request.path_info.startswith(settings.BROWSER_PATH_PREFIXES)


class BrowserOnly(MiddlewareMixin):
    """Run a Django middleware for browser paths (``BROWSER_PATH_PREFIXES``: the admin) only.

    The API authenticates with bearer tokens and its views are CSRF-exempt; health and
    metrics need no session either. Run on every request, sessions, CSRF, ``request.user``
    and messages cost about 8 % of the CPU of a cached API read (the messages storage alone
    builds two cookie signers), so other paths skip them.
    """

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if _browser_path(request):
            return cast(HttpResponseBase, super().__call__(request))
        return cast(HttpResponseBase, self.get_response(request))


class BrowserSessionMiddleware(BrowserOnly, SessionMiddleware):
    pass


class BrowserCsrfMiddleware(BrowserOnly, CsrfViewMiddleware):
    def process_view(
        self, request: HttpRequest, callback: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponseForbidden | None:
        if not _browser_path(request):
            return None
        return super().process_view(request, callback, args, kwargs)


class BrowserAuthenticationMiddleware(BrowserOnly, AuthenticationMiddleware):
    pass


class BrowserMessageMiddleware(BrowserOnly, MessageMiddleware):
    pass
