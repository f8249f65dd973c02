"""``/metrics``: Prometheus exposition for every worker process together.

Readable with ``Authorization: Bearer $METRICS_TOKEN``; with no token configured, only
from loopback. Anyone else gets the same 404 as an unknown route.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from caching.metrics import HitRateCollector, local_registry
from chainlearn.api import error_response

LOOPBACK = {"127.0.0.1", "::1"}


def allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return request.META.get("REMOTE_ADDR") in LOOPBACK
    supplied = request.headers.get("Authorization", "")
    return hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode())


def metrics(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        return error_response(404, "NOT_FOUND", "Route not found")
    source = local_registry()
    derived = CollectorRegistry(auto_describe=False)
    derived.register(HitRateCollector(source))
    body = generate_latest(source) + generate_latest(derived)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
