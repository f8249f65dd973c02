"""Input validation and response shapes for auth and the learner's profile.

The first section holds pieces every app's API uses (strict JSON fields, unknown-field
rejection, the envelope schemas for drf-spectacular).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field, inline_serializer
from rest_framework import serializers

from users.models import User

# --- Shared API pieces -------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else: DRF's CharField would accept 12 or true as "12"."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.UUID)
class StrictUUIDField(serializers.Field):
    """A UUID given as a JSON string (DRF's UUIDField would also take an integer)."""

    default_error_messages = {"invalid": "Must be a valid UUID."}

    def to_internal_value(self, data: Any) -> uuid.UUID:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return uuid.UUID(data)
        except ValueError:
            pass
        self.fail("invalid")

    def to_representation(self, value: uuid.UUID) -> str:
        return str(value)


class StrictSerializer(serializers.Serializer):
    """Rejects fields the endpoint does not define, with a 400 naming them."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


class EnvelopeMetaSerializer(serializers.Serializer):
    version = serializers.CharField()
    timestamp = serializers.DateTimeField()
    requestId = serializers.CharField()


class EnvelopePaginationSerializer(serializers.Serializer):
    page = serializers.IntegerField(min_value=1)
    limit = serializers.IntegerField(min_value=1, max_value=50)
    total = serializers.IntegerField(min_value=0)


class ApiErrorSerializer(serializers.Serializer):
    statusCode = serializers.IntegerField()
    error = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Only for validation errors: field name → messages.",
    )


def envelope(name: str, data: serializers.Field, *, paginated: bool = False) -> Any:
    """The schema of a success envelope whose ``data`` is ``data``."""
    fields: dict[str, serializers.Field] = {"success": serializers.BooleanField(), "data": data}
    if paginated:
        fields["pagination"] = EnvelopePaginationSerializer()
    fields["meta"] = EnvelopeMetaSerializer()
    return inline_serializer(name=name, fields=fields)


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ApiErrorSerializer, description=description)


UNAUTHORIZED = error("UNAUTHORIZED: missing, invalid or revoked bearer token.")


# --- Auth ------------------------------------------------------------------------------

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,150}$")
STELLAR_ADDRESS_RE = re.compile(r"^G[A-Z2-7]{55}$")


class RegisterSerializer(serializers.Serializer):
    username = StrictCharField(
        min_length=3, max_length=150, trim_whitespace=False, help_text="3-150 of [A-Za-z0-9_.-]"
    )
    password = StrictCharField(min_length=8, max_length=128, trim_whitespace=False, write_only=True)
    stellarAddress = StrictCharField(
        required=False,
        allow_null=True,
        trim_whitespace=False,
        help_text="A Stellar public key: G followed by 55 base32 characters.",
    )

    def validate_username(self, value: str) -> str:
        if not USERNAME_RE.match(value):
            raise serializers.ValidationError("Use 3-150 letters, digits, '_', '.' or '-'.")
        return value

    def validate_stellarAddress(self, value: str | None) -> str | None:
        if value is not None and not STELLAR_ADDRESS_RE.match(value):
            raise serializers.ValidationError("Must be a Stellar public key (G + 55 base32).")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            validate_password(attrs["password"], User(username=attrs["username"]))
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from None
        return attrs


class TokenSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150, trim_whitespace=False)
    password = StrictCharField(max_length=128, trim_whitespace=False, write_only=True)


class AuthUserSerializer(serializers.ModelSerializer):
    stellarAddress = serializers.CharField(source="stellar_address", allow_null=True)
    displayName = serializers.CharField(source="display_name")

    class Meta:
        model = User
        fields = ["id", "username", "stellarAddress", "displayName"]


class AuthResultSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Bearer token; send as `Authorization: Bearer …`.")
    user = AuthUserSerializer()


class MessageSerializer(serializers.Serializer):
    message = serializers.CharField()


# --- Profile and progress -------------------------------------------------------------------


class ProfileSerializer(serializers.ModelSerializer):
    stellarAddress = serializers.CharField(source="stellar_address", allow_null=True)
    displayName = serializers.CharField(source="display_name")
    learningGoal = serializers.CharField(source="learning_goal")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "stellarAddress",
            "displayName",
            "background",
            "learningGoal",
            "pace",
            "language",
            "credits",
            "createdAt",
        ]


class ProfileUpdateSerializer(StrictSerializer):
    displayName = StrictCharField(
        source="display_name", max_length=100, allow_blank=True, required=False
    )
    background = StrictCharField(max_length=1000, allow_blank=True, required=False)
    learningGoal = StrictCharField(
        source="learning_goal", max_length=500, allow_blank=True, required=False
    )
    pace = serializers.ChoiceField(choices=User.Pace.choices, required=False)
    language = StrictCharField(max_length=10, required=False)


class ProgressSerializer(serializers.Serializer):
    enrolledCourses = serializers.IntegerField(min_value=0)
    completedCourses = serializers.IntegerField(min_value=0)
    totalQuizScore = serializers.IntegerField(
        min_value=0, help_text="Sum of the scores (correct answers) of all submissions."
    )
    credentialsEarned = serializers.IntegerField(min_value=0, help_text="Non-revoked credentials.")
    rewardsClaimed = serializers.IntegerField(min_value=0)
