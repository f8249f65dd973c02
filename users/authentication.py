"""Bearer-token authentication: ``Authorization: Bearer <token>``."""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from chainlearn.caches import principal_cache
from users.models import User, hash_token, token_user_id
from users.principal import to_user


def bearer_token(request: HttpRequest | Request) -> str | None:
    """The token of a well-formed ``Authorization: Bearer <token>`` header, else None."""
    parts = get_authorization_header(cast(Request, request)).split()  # reads META only
    if len(parts) != 2 or parts[0].lower() != b"bearer":
        return None
    try:
        raw = parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    return raw if 20 <= len(raw) <= 128 else None


def principal_params(raw: str) -> dict[str, Any]:
    """The ``users:principal`` entry's parameters for the bearer token ``raw``. ``user_id``
    is None for a token that names no user (issued before tokens did): its principal is
    loaded, never cached."""
    return {"user_id": token_user_id(raw), "key_hash": hash_token(raw)}


class BearerTokenAuthentication(BaseAuthentication):
    """Resolve the token through the ``users:principal`` cache (one Redis round trip on a
    hit, one query joining token and user on a miss).

    A missing, malformed or revoked token authenticates nobody rather than raising, so
    optional-auth endpoints treat it as anonymous; endpoints that require a user answer
    401 through their ``IsAuthenticated`` permission.
    """

    def authenticate(self, request: Request) -> tuple[User, str] | None:
        raw = bearer_token(request)
        if raw is None:
            return None
        params = principal_params(raw)
        if params["user_id"] is None:
            served = principal_cache.load(params)
        else:
            served = principal_cache.read(params)
        if served.missing:
            return None
        return to_user(served.value()), raw

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


def bearer_scheme_extension() -> Any:
    """Documents the scheme in the OpenAPI schema (drf-spectacular picks it up on import)."""
    from drf_spectacular.extensions import OpenApiAuthenticationExtension

    class BearerScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
        target_class = "users.authentication.BearerTokenAuthentication"
        name = "bearerAuth"

        def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
            return {"type": "http", "scheme": "bearer"}

    return BearerScheme
