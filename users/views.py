"""Auth, profile and progress endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from chainlearn.api import ok
from chainlearn.caches import progress_cache
from chainlearn.hot_reads import HotRead, HotReadViewSet, no_params
from chainlearn.schema import RETRY_AFTER, UNAUTHORIZED, envelope, error, rate_limited
from chainlearn.throttling import AuthRateThrottle
from users import services
from users.models import User
from users.serializers import (
    AuthResultSerializer,
    AuthUserSerializer,
    MessageSerializer,
    ProfileSerializer,
    ProfileUpdateSerializer,
    ProgressSerializer,
    RegisterSerializer,
    TokenSerializer,
)

BAD_REQUEST = error("VALIDATION_ERROR: malformed JSON, wrong types, missing or invalid fields.")
AUTH_RATE_LIMITED = rate_limited("auth", "register, login or logout requests from one client IP")


def _auth_result(user: User, token: str) -> dict[str, object]:
    return {"token": token, "user": AuthUserSerializer(user).data}


# Register, log in (both without credentials) and log out; rate-limited per client IP.
class AuthViewSet(GenericViewSet):
    throttle_classes = [AuthRateThrottle]
    _SIGNED_IN = frozenset({"logout"})

    def _signed_in(self) -> bool:
        # DRF sets ``action`` only after it has built the request's authenticators.
        action = getattr(self, "action", None)
        if action is None and self.request is not None:
            action = self.action_map.get(str(self.request.method).lower())
        return action in self._SIGNED_IN

    def get_authenticators(self) -> list[BaseAuthentication]:
        return super().get_authenticators() if self._signed_in() else []

    def get_permissions(self) -> Sequence[Any]:
        return [IsAuthenticated()] if self._signed_in() else [AllowAny()]

    @extend_schema(
        operation_id="auth_register",
        tags=["auth"],
        summary="Create an account and log in",
        request=RegisterSerializer,
        responses={
            201: envelope("RegisterEnvelope", AuthResultSerializer()),
            400: BAD_REQUEST,
            409: error("CONFLICT: username or Stellar address already registered."),
            429: AUTH_RATE_LIMITED,
        },
        parameters=[RETRY_AFTER],
        auth=[],
    )
    def register(self, request: Request) -> Response:
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user, token = services.user_register(
            username=data["username"],
            password=data["password"],
            stellar_address=data.get("stellarAddress"),
        )
        return ok(request, _auth_result(user, token), status_code=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="auth_token",
        tags=["auth"],
        summary="Log in: exchange username and password for a new bearer token",
        request=TokenSerializer,
        responses={
            200: envelope("TokenEnvelope", AuthResultSerializer()),
            400: BAD_REQUEST,
            401: error("UNAUTHORIZED: wrong username or password."),
            429: AUTH_RATE_LIMITED,
        },
        parameters=[RETRY_AFTER],
        auth=[],
    )
    def token(self, request: Request) -> Response:
        serializer = TokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, token = services.token_obtain(
            username=serializer.validated_data["username"],
            password=serializer.validated_data["password"],
        )
        return ok(request, _auth_result(user, token))

    @extend_schema(
        operation_id="auth_logout",
        tags=["auth"],
        summary="Log out: the bearer token used for this request stops working at once",
        request=None,
        responses={
            200: envelope("LogoutEnvelope", MessageSerializer()),
            401: UNAUTHORIZED,
            429: AUTH_RATE_LIMITED,
        },
        parameters=[RETRY_AFTER],
    )
    def logout(self, request: Request) -> Response:
        services.token_revoke(raw_token=str(request.auth))
        return ok(request, {"message": "Logged out successfully"})


PROGRESS_DOC = dict(
    operation_id="users_me_progress",
    tags=["users"],
    summary="The caller's learning progress counters",
    responses={200: envelope("ProgressEnvelope", ProgressSerializer()), 401: UNAUTHORIZED},
)
PROGRESS = HotRead(progress_cache, no_params, per_user=True, doc=PROGRESS_DOC)


# The caller: profile (read and update) and progress (a cached hot read).
class MeViewSet(HotReadViewSet):
    hot_reads = {"progress": PROGRESS}

    @extend_schema(
        operation_id="users_me_retrieve",
        tags=["users"],
        summary="The caller's profile",
        responses={200: envelope("ProfileEnvelope", ProfileSerializer()), 401: UNAUTHORIZED},
    )
    def me(self, request: Request) -> Response:
        return ok(request, ProfileSerializer(request.user).data)

    @extend_schema(
        operation_id="users_me_update",
        tags=["users"],
        summary="Update any subset of the caller's profile fields",
        description="Unknown fields and wrong JSON types are a 400; omitted fields keep "
        "their value.",
        request=ProfileUpdateSerializer,
        responses={
            200: envelope("ProfileUpdateEnvelope", ProfileSerializer()),
            400: BAD_REQUEST,
            401: UNAUTHORIZED,
        },
    )
    def update_me(self, request: Request) -> Response:
        serializer = ProfileUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_update_profile(
            user=cast(User, request.user), changes=dict(serializer.validated_data)
        )
        return ok(request, ProfileSerializer(user).data)
