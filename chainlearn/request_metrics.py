"""django-prometheus's per-view request metrics, trimmed to the ones that are not derivable.

``PrometheusAfterMiddleware`` records about ten series per request (by method, by
transport, by view/transport/method, by status, by status/view/method, by charset, body
sizes in and out, latency by view/method). In multiprocess mode each update is a locked
write to a memory-mapped file; together they cost about 8 % of the CPU of a cached hit.
This keeps the two series the others are sums of: responses by status, view and method,
and latency by view and method (``PrometheusBeforeMiddleware`` still counts every request
and its latency including middleware, and exceptions are still counted by type and view).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django_prometheus.middleware import PrometheusAfterMiddleware
from django_prometheus.utils import Time, TimeSince


class RequestMetricsMiddleware(PrometheusAfterMiddleware):  # type: ignore[misc]
    def process_request(self, request: HttpRequest) -> None:
        request.prometheus_after_middleware_event = Time()  # type: ignore[attr-defined]

    def process_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        return None

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> Any:
        view = self._get_view_name(request)
        method = self._method(request)
        self.metrics.responses_by_status_view_method.labels(
            status=str(response.status_code), view=view, method=method
        ).inc()
        started = getattr(request, "prometheus_after_middleware_event", None)
        if started is None:
            self.metrics.requests_unknown_latency.inc()
        else:
            self.metrics.requests_latency_by_view_method.labels(view=view, method=method).observe(
                TimeSince(started)
            )
        return response
