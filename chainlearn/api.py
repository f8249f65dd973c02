"""The API's envelopes, errors and pagination: one home for the contract's shapes."""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from chainlearn.errors import DomainError, InvalidInput
from chainlearn.formats import iso

logger = logging.getLogger("chainlearn.api")

API_VERSION = "v1"
PAGE_LIMIT_MAX = 50
PAGE_LIMIT_DEFAULT = 20
# `page` is at most 6 digits (``_DIGITS``); the error message and the schema state this bound.
PAGE_MAX = 999_999


def request_id(request: HttpRequest | Request) -> str:
    rid = getattr(request, "request_id", None)
    return rid if isinstance(rid, str) else str(uuid.uuid4())  # outside the middleware


def meta(request: HttpRequest | Request) -> dict[str, str]:
    return {
        "version": API_VERSION,
        "timestamp": iso(timezone.now()) or "",
        "requestId": request_id(request),
    }


def ok(
    request: Request,
    data: Any,
    *,
    status_code: int = status.HTTP_200_OK,
    pagination: dict[str, int] | None = None,
) -> Response:
    """The success envelope; ``meta`` is built per response, never cached."""
    body: dict[str, Any] = {"success": True, "data": data}
    if pagination is not None:
        body["pagination"] = pagination
    body["meta"] = meta(request)
    return Response(body, status=status_code)


def ok_json(
    request: HttpRequest | Request,
    data_json: bytes,
    *,
    pagination: dict[str, int] | None = None,
    status_code: int = status.HTTP_200_OK,
) -> HttpResponse:
    """``ok`` for data that is already JSON (a cache hit), spliced in without re-encoding."""
    parts = [b'{"success":true,"data":', data_json]
    if pagination is not None:
        parts += [b',"pagination":', json.dumps(pagination, separators=(",", ":")).encode()]
    parts += [b',"meta":', json.dumps(meta(request), separators=(",", ":")).encode(), b"}"]
    return HttpResponse(b"".join(parts), status=status_code, content_type="application/json")


def error_body(
    status_code: int, code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"statusCode": status_code, "error": code, "message": message}
    if details is not None:
        body["details"] = details
    return body


def error_response(
    status_code: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JsonResponse:
    """The error envelope for code outside DRF (middleware, URL handlers)."""
    return JsonResponse(error_body(status_code, code, message, details), status=status_code)


_DRF_CODES: list[tuple[type[Exception], int, str]] = [
    (exceptions.NotAuthenticated, 401, "UNAUTHORIZED"),
    (exceptions.AuthenticationFailed, 401, "UNAUTHORIZED"),
    (exceptions.PermissionDenied, 403, "FORBIDDEN"),
    (exceptions.NotFound, 404, "NOT_FOUND"),
    (exceptions.MethodNotAllowed, 405, "METHOD_NOT_ALLOWED"),
    (exceptions.NotAcceptable, 406, "NOT_ACCEPTABLE"),
    (exceptions.UnsupportedMediaType, 415, "UNSUPPORTED_MEDIA_TYPE"),
    (exceptions.Throttled, 429, "RATE_LIMITED"),
    (exceptions.ParseError, 400, "VALIDATION_ERROR"),
]


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {str(k): _flatten(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_flatten(v) for v in detail]
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Map every exception raised in a view to the contract's error envelope."""
    status_code, body, headers = error_parts(exc)
    request = context.get("request")
    if isinstance(exc, exceptions.NotAuthenticated) and "HTTP_AUTHORIZATION" in getattr(
        request, "META", {}
    ):
        # Credentials were sent but named nobody: not "not provided".
        body["message"] = "Invalid or expired token."
    return Response(body, status=status_code, headers=headers)


def exception_response(exc: Exception) -> HttpResponse:
    """``exception_handler`` for views outside DRF (the hot reads' fast path), encoded as
    DRF encodes it."""
    status_code, body, headers = error_parts(exc)
    encoded = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return HttpResponse(
        encoded, status=status_code, headers=headers, content_type="application/json"
    )


def error_parts(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, error envelope, headers) for an exception raised while serving a request."""
    headers: dict[str, str] = {}
    details: dict[str, Any] | None = None
    status_code: int
    code: str
    message: str
    if isinstance(exc, DomainError):
        status_code, code, message, details = exc.status_code, exc.code, exc.message, exc.details
    elif isinstance(exc, exceptions.ValidationError):
        status_code, code, message = 400, "VALIDATION_ERROR", "Invalid request"
        detail = _flatten(exc.detail)
        details = detail if isinstance(detail, dict) else {"non_field_errors": detail}
    elif isinstance(exc, Http404):
        status_code, code, message = 404, "NOT_FOUND", "Not found"
    elif isinstance(exc, DjangoPermissionDenied):
        status_code, code, message = 403, "FORBIDDEN", "Forbidden"
    elif isinstance(exc, RequestDataTooBig):
        status_code, code, message = 413, "PAYLOAD_TOO_LARGE", "Request body too large"
    elif isinstance(exc, OperationalError | InterfaceError):
        logger.error("database unavailable: %s", exc.__class__.__name__)
        status_code, code, message = 503, "SERVICE_UNAVAILABLE", "Database unavailable"
        headers["Retry-After"] = "5"
    elif isinstance(exc, exceptions.APIException):
        status_code, code = exc.status_code, "ERROR"
        for exc_type, mapped_status, mapped_code in _DRF_CODES:
            if isinstance(exc, exc_type):
                status_code, code = mapped_status, mapped_code
                break
        message = str(exc.detail) if isinstance(exc.detail, str) else "Invalid request"
        wait = getattr(exc, "wait", None)
        if wait is not None:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
    elif isinstance(exc, DatabaseError):
        logger.exception("database error")
        status_code, code, message = 500, "INTERNAL_ERROR", "Internal server error"
    else:
        logger.exception("unhandled error")
        status_code, code, message = 500, "INTERNAL_ERROR", "Internal server error"
    return status_code, error_body(status_code, code, message, details), headers


_DIGITS = re.compile(r"^[0-9]{1,6}$")


def page_params(query: Mapping[str, str]) -> dict[str, int]:
    """Strictly parse ``page`` (1 to ``PAGE_MAX``) and ``limit`` (1 to 50) of a query
    string: else a 400. Returns ``{"page", "limit"}``."""
    errors: dict[str, list[str]] = {}
    values: dict[str, int] = {}
    bounds = (("page", 1, PAGE_MAX), ("limit", PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX))
    for name, default, maximum in bounds:
        raw = query.get(name)
        if raw is None:
            values[name] = default
            continue
        if not _DIGITS.match(raw) or not 1 <= int(raw) <= maximum:
            errors[name] = [f"Must be an integer between 1 and {maximum}."]
            continue
        values[name] = int(raw)
    if errors:
        raise InvalidInput("Invalid pagination parameters", details=errors)
    return {"page": values["page"], "limit": values["limit"]}


def choice_param(query: Mapping[str, str], name: str, choices: frozenset[str]) -> str | None:
    """An optional query parameter that must be one of ``choices`` (empty is invalid)."""
    raw = query.get(name)
    if raw is None:
        return None
    if raw not in choices:
        allowed = ", ".join(sorted(choices))
        raise InvalidInput(
            f"Invalid {name}", details={name: [f'"{raw[:50]}" is not one of: {allowed}.']}
        )
    return raw


def parse_uuid(raw: str, *, field: str = "id") -> uuid.UUID:
    """A path or body UUID, or a 400 naming the field."""
    try:
        return uuid.UUID(str(raw))
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"Invalid {field}", details={field: ["Must be a valid UUID."]}) from None
