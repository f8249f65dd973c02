"""Input validation and response shapes for the rewards endpoints."""

from __future__ import annotations

import re

from rest_framework import serializers
from rest_framework.request import Request

from chainlearn.errors import InvalidInput
from chainlearn.fields import StrictUUIDField

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` header, ``None`` when absent, or a 400 when malformed."""
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    if not IDEMPOTENCY_KEY_RE.match(raw):
        raise InvalidInput(
            "Invalid Idempotency-Key header",
            details={IDEMPOTENCY_HEADER: ["Must be 16-64 characters of [A-Za-z0-9_-]."]},
        )
    return raw


class ClaimSerializer(serializers.Serializer):
    submissionId = StrictUUIDField(help_text="The id of one of the caller's passed submissions.")


class ClaimResultSerializer(serializers.Serializer):
    submissionId = serializers.UUIDField()
    amount = serializers.IntegerField(min_value=1, help_text="Credits granted.")
    txHash = serializers.CharField(
        allow_null=True, help_text="Always null: rewards are database credits, not on-chain."
    )
    message = serializers.CharField()


class RewardHistoryItemSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The rewarded submission's id.")
    courseTitle = serializers.CharField()
    score = serializers.IntegerField(min_value=0, help_text="Correct answers in the submission.")
    amount = serializers.IntegerField(min_value=1)
    txHash = serializers.CharField(allow_null=True)
    claimedAt = serializers.DateTimeField()
