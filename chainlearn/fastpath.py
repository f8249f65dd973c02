"""Cached GETs served without DRF: the hot reads' fast path.

A cache hit costs one Redis round trip. DRF's per-request machinery (request wrapping,
permission checks, content negotiation, response finalization) took 9-12 % of a cached
hit's CPU in the benchmark's profiles, and its authentication step a second round trip
for every signed-in read. ``hot_read(ViewClass)`` routes a
plain GET to the view's ``fast_get(request, **kwargs)``, which answers from the cache
through the managers, or returns None to hand the request to the DRF view unchanged. It
hands over as well for anything the fast path does not decide the way DRF would: another
method, an ``Accept`` header other than JSON or any, a ``?format=`` override, the cache
turned off, and any ``DomainError`` (validation, not found, a wrong token), which the DRF
view raises again and answers in the contract's envelope, in DRF's order of checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from rest_framework.views import APIView

from chainlearn.api import DomainError, exception_response

_JSON_ACCEPTS = frozenset({"", "*/*", "application/json"})


def fast_path_applies(request: HttpRequest) -> bool:
    return (
        request.method == "GET"
        and settings.CACHE_ENABLED
        and request.META.get("HTTP_ACCEPT", "") in _JSON_ACCEPTS
        and "format" not in request.GET
    )


def hot_read(view_class: type[APIView]) -> Callable[..., HttpResponseBase]:
    """The URL view for ``view_class``: its ``fast_get`` first, DRF when that declines."""
    full = view_class.as_view()
    fast_get: Callable[..., HttpResponse | None] = view_class.fast_get  # type: ignore[attr-defined]
    # As DRF computes it on a set-up view (where Django's ``setup`` adds HEAD for GET).
    allow = ", ".join(
        m.upper()
        for m in view_class.http_method_names
        if hasattr(view_class, m) or (m == "head" and hasattr(view_class, "get"))
    )

    def view(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
        if fast_path_applies(request):
            try:
                response = fast_get(request, **kwargs)
            except DomainError:
                response = None
            except Exception as exc:  # e.g. the database is down on a miss: same as DRF
                response = exception_response(exc)
            if response is not None:
                response["Allow"] = allow  # as DRF adds to every response of the view
                return response
        return full(request, **kwargs)

    # drf-spectacular and DRF's tooling find the API view through these, as on as_view().
    view.cls = view_class  # type: ignore[attr-defined]
    view.initkwargs = {}  # type: ignore[attr-defined]
    view.__doc__ = view_class.__doc__
    return csrf_exempt(view)
