"""Reward claim and history endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from chainlearn.api import ok, page_params
from chainlearn.caches import reward_history_cache
from chainlearn.hot_reads import HotRead, HotReadViewSet
from chainlearn.schema import RETRY_AFTER, UNAUTHORIZED, envelope, error, rate_limited
from chainlearn.throttling import ClaimRateThrottle
from rewards import services
from rewards.serializers import (
    IDEMPOTENCY_HEADER,
    ClaimResultSerializer,
    ClaimSerializer,
    RewardHistoryItemSerializer,
    idempotency_key,
)
from users.models import User

PAGE_PARAMETERS = [
    OpenApiParameter("page", OpenApiTypes.INT, description="Page number, ≥ 1 (default 1)."),
    OpenApiParameter("limit", OpenApiTypes.INT, description="Page size, 1-50 (default 20)."),
]


def history_params(query: Mapping[str, str], path: Mapping[str, Any]) -> dict[str, Any]:
    return page_params(query)


HISTORY_DOC = dict(
    operation_id="rewards_history",
    tags=["rewards"],
    summary="The caller's claimed rewards, newest first",
    parameters=PAGE_PARAMETERS,
    responses={
        200: envelope(
            "RewardHistoryEnvelope", RewardHistoryItemSerializer(many=True), paginated=True
        ),
        400: error("VALIDATION_ERROR: page or limit out of range or not an integer."),
        401: UNAUTHORIZED,
    },
)
HISTORY = HotRead(reward_history_cache, history_params, per_user=True, doc=HISTORY_DOC)


# Claims (rate-limited per caller) and the caller's history (a cached hot read).
class RewardViewSet(HotReadViewSet):
    hot_reads = {"history": HISTORY}

    def get_throttles(self) -> list[BaseThrottle]:
        return [ClaimRateThrottle()] if self.action == "claim" else []

    @extend_schema(
        operation_id="rewards_claim",
        tags=["rewards"],
        summary="Claim the credits of one of the caller's passed quiz submissions",
        description=(
            "With an `Idempotency-Key` header, the first outcome (success or a 403/404/409 "
            "rule failure) is stored per caller and key; a retry with the same key and "
            "body replays it (status and data, with an `Idempotent-Replayed: true` header) "
            "without a second effect. The same key with a different body is a 409. "
            "Concurrent requests with one key wait for the first and replay it."
        ),
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="16-64 characters of [A-Za-z0-9_-]; scoped to the caller.",
            ),
            RETRY_AFTER,
        ],
        request=ClaimSerializer,
        responses={
            200: OpenApiResponse(
                envelope("ClaimEnvelope", ClaimResultSerializer()),
                description="Credits granted (or an idempotent replay of that answer).",
            ),
            400: error("VALIDATION_ERROR: bad body, malformed submissionId or Idempotency-Key."),
            401: UNAUTHORIZED,
            403: error("FORBIDDEN: the submission did not pass."),
            404: error("NOT_FOUND: no such submission of the caller."),
            409: error("CONFLICT: already claimed, or Idempotency-Key reused with another body."),
            429: rate_limited("claims", "claim attempts by the caller"),
        },
    )
    def claim(self, request: Request) -> Response:
        serializer = ClaimSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = idempotency_key(request)
        user = cast(User, request.user)
        submission_id = serializer.validated_data["submissionId"]
        if key is None:
            reward = services.reward_claim(user=user, submission_id=submission_id)
            return ok(request, services.reward_claim_result(reward))
        outcome = services.reward_claim_idempotent(
            user=user,
            submission_id=submission_id,
            key=key,
            request_hash=services.request_fingerprint(request.data),
        )
        if outcome.status_code >= 400:
            response = Response(outcome.body, status=outcome.status_code)
        else:
            response = ok(request, outcome.body, status_code=outcome.status_code)
        if outcome.replayed:
            response["Idempotent-Replayed"] = "true"
        return response
