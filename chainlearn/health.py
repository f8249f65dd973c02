"""Liveness and readiness endpoints."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse

from caching.backend import redis_ping


def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    """200 while the database answers; Redis being down is reported, not fatal."""
    checks = {"database": "ok", "redis": "ok" if redis_ping() else "error"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        checks["database"] = "error"
        body = {
            "statusCode": 503,
            "error": "SERVICE_UNAVAILABLE",
            "message": "Database unavailable",
            "details": {"checks": checks},
        }
        return JsonResponse(body, status=503)
    return JsonResponse({"status": "ok", "checks": checks})
