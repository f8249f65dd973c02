"""Hot reads: cached GET actions of DRF viewsets, each declared once, served by one mechanism.

A viewset lists its hot reads in ``hot_reads``: per action, a ``HotRead`` naming the cache
manager, the one function that parses the request's parameters, whether the entry is the
caller's own, and what is added per caller. ``HotReadViewSet`` turns each into the action
method (the DRF path) and, through ``as_view``, puts a short-circuit in front of DRF for
plain GETs (the fast path), which answers a hit in one Redis round trip:

- anonymous, shared entry: ``CacheManager.read``;
- with a bearer token that names its user: ``read_behind``, the token's principal and the
  entry looked up together, served only if the principal is cached.

Anything the fast path cannot decide the way DRF would goes to DRF unchanged: another
method, an ``Accept`` other than JSON or any, ``?format=``, a parse error (answered by DRF
in its order of checks, from the parse already made), a token without its user or whose
principal is not cached, and a per-user read without a token (401). DRF's request
wrapping, content negotiation and authentication took 9-12 % of a cached hit's CPU, and
the authentication step a second round trip; ``CACHE_FAST_PATH=false`` turns the
short-circuit off so the benchmark can show what it buys.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotModified
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.viewsets import GenericViewSet

from caching.entries import dumps
from caching.manager import CacheManager, Params, Served, read_behind
from chainlearn.api import exception_response, ok_json
from chainlearn.caches import principal_cache
from chainlearn.conditional import NOT_MODIFIED, documented, not_modified, validators
from chainlearn.errors import DomainError
from users.authentication import bearer_token, principal_params

# parse(query string, path kwargs) -> the manager's parameters; raises InvalidInput.
Parse = Callable[[Mapping[str, str], Mapping[str, Any]], Params]
# per_caller(caller's user id, the entry's data) -> (the data this caller sees, a short
# text naming the caller's own part of it, for the ETag).
PerCaller = Callable[[Any, Any], tuple[Any, str]]

_JSON_ACCEPTS = frozenset({"", "*/*", "application/json"})
# Where the fast path leaves its parse (parameters or the error) for the DRF path.
_PARSED = "hot_read_parsed"


@dataclass(frozen=True)
class HotRead:
    manager: CacheManager
    parse: Parse
    per_user: bool = False  # the entry is the caller's own (its user id is the scope)
    per_caller: PerCaller | None = None  # applied for a signed-in caller of a shared entry
    absent: Callable[[], DomainError] | None = None  # raised when the loader found nothing
    doc: Mapping[str, Any] = field(default_factory=dict)  # its ``extend_schema`` arguments

    def respond(
        self, request: HttpRequest | Request, params: Params, served: Served, user_id: Any
    ) -> HttpResponse:
        """The success envelope for ``served``: its JSON spliced in as stored, except where
        the caller's own part is added; or a 304 when the request names its ETag."""
        if served.missing and self.absent is not None:
            raise self.absent()
        data, own = served.data, ""
        if self.per_caller is not None and user_id is not None:
            value, own = self.per_caller(user_id, served.value())
            data = dumps(value)
        headers = validators(served, own, signed_in=user_id is not None)
        if not_modified(request, headers):
            NOT_MODIFIED.labels(self.manager.namespace).inc()
            return HttpResponseNotModified(headers=headers)
        pagination = None
        if served.total is not None:
            pagination = {"page": params["page"], "limit": params["limit"], "total": served.total}
        response = ok_json(request, data, pagination=pagination)
        for name, value in headers.items():
            response[name] = value
        return response

    def read_for(self, params: Params, user_id: Any) -> Params:
        return {**params, "user_id": user_id} if self.per_user else params


def no_params(query: Mapping[str, str], path: Mapping[str, Any]) -> Params:
    """The parse of a read that takes no parameters (the caller is its only one)."""
    return {}


def fast_path_applies(request: HttpRequest) -> bool:
    return (
        request.method == "GET"
        and settings.CACHE_ENABLED
        and settings.CACHE_FAST_PATH
        and request.META.get("HTTP_ACCEPT", "") in _JSON_ACCEPTS
        and "format" not in request.GET
    )


def answer_from_cache(read: HotRead, request: HttpRequest, params: Params) -> HttpResponse | None:
    """A plain GET's answer from the cache, or None to hand the request to DRF."""
    if "HTTP_AUTHORIZATION" not in request.META:
        if read.per_user:
            return None
        return read.respond(request, params, read.manager.read(params), None)
    raw = bearer_token(request)
    if raw is None:
        return None
    gate = principal_params(raw)
    if gate["user_id"] is None:
        return None
    user_id = gate["user_id"]
    served = read_behind(principal_cache, gate, read.manager, read.read_for(params, user_id))
    if served is None:
        return None
    return read.respond(request, params, served, user_id)


# A viewset whose ``hot_reads`` actions are generated and served as the module says; its
# other actions are written as usual and need ``permission_classes``' user. (A comment, not
# a docstring: drf-spectacular would print a docstring into every operation's description.)
class HotReadViewSet(GenericViewSet):
    hot_reads: ClassVar[dict[str, HotRead]] = {}
    permission_classes = [IsAuthenticated]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, read in cls.hot_reads.items():
            if name not in cls.__dict__:
                setattr(cls, name, documented(read.doc, _action(name)))

    def get_permissions(self) -> Sequence[Any]:
        # A method the route does not map (a 405 to be) is checked as the route's action.
        read = self.hot_reads.get(self.action or next(iter(self.action_map.values()), ""))
        if read is None:
            return super().get_permissions()
        return [IsAuthenticated()] if read.per_user else [AllowAny()]

    def serve_hot_read(self, request: Request, **kwargs: Any) -> HttpResponse:
        """The DRF path of the action being served."""
        read = self.hot_reads[str(self.action)]
        parsed = getattr(request._request, _PARSED, None)
        if parsed is None:
            parsed = read.parse(request.query_params, kwargs)
        elif isinstance(parsed, DomainError):
            raise parsed
        user_id = request.user.pk if request.user.is_authenticated else None
        served = read.manager.read(read.read_for(parsed, user_id))
        return read.respond(request, parsed, served, user_id)

    @classmethod
    def as_view(cls, actions: dict[str, Any] | None = None, **initkwargs: Any) -> Any:
        drf_view = super().as_view(actions, **initkwargs)
        read = cls.hot_reads.get((actions or {}).get("get", ""))
        if read is None:
            return drf_view
        allow = _allow_header(cls, actions or {})

        def view(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
            if fast_path_applies(request):
                try:
                    params = read.parse(request.GET, kwargs)
                except DomainError as exc:
                    setattr(request, _PARSED, exc)
                    return drf_view(request, **kwargs)
                setattr(request, _PARSED, params)
                try:
                    response = answer_from_cache(read, request, params)
                except Exception as exc:  # not found, or the database down on a miss
                    response = exception_response(exc)
                if response is not None:
                    response["Allow"] = allow  # as DRF adds to every response of the view
                    return response
            return drf_view(request, **kwargs)

        # Django, DRF and drf-spectacular find the viewset and its actions (``cls``,
        # ``actions``, ``initkwargs``, ``csrf_exempt``) on the view, as on DRF's.
        return functools.wraps(drf_view)(view)


def _action(name: str) -> Callable[..., HttpResponse]:
    def action(self: HotReadViewSet, request: Request, **kwargs: Any) -> HttpResponse:
        return self.serve_hot_read(request, **kwargs)

    action.__name__ = action.__qualname__ = name
    return action


def _allow_header(cls: type[GenericViewSet], actions: Mapping[str, Any]) -> str:
    """``Allow`` as DRF computes it for a view routed with ``actions`` (HEAD with GET)."""
    methods = set(actions) | ({"head"} if "get" in actions else set())
    return ", ".join(
        m.upper()
        for m in cls.http_method_names
        if m in methods or (m == "options" and hasattr(cls, m))
    )
