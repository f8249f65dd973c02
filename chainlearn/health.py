"""Liveness and readiness endpoints."""

from __future__ import annotations

from django.db import Error as DatabaseError
from django.db import connection
from django.http import HttpRequest, JsonResponse

from caching.connection import redis_ping


def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def database_answers() -> bool:
    """Whether PostgreSQL answers ``SELECT 1`` now.

    A pooled connection broken by a database restart or failover fails once even though
    the database is back; it is dropped and the check is made again on a new connection,
    so readiness reports the database, not the state of this thread's old connection. A
    failure on a new connection is final (no second connect timeout).
    """
    for _attempt in range(2):
        pooled = connection.connection is not None
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except DatabaseError:
            connection.close()
            if not pooled:  # a new connection failed: the database is really away
                return False
    return False


def ready(request: HttpRequest) -> JsonResponse:
    """200 while the database answers; Redis being down is reported, not fatal."""
    checks = {"database": "ok", "redis": "ok" if redis_ping() else "error"}
    if not database_answers():
        checks["database"] = "error"
        body = {
            "statusCode": 503,
            "error": "SERVICE_UNAVAILABLE",
            "message": "Database unavailable",
            "details": {"checks": checks},
        }
        return JsonResponse(body, status=503)
    return JsonResponse({"status": "ok", "checks": checks})
