"""Input validation and response shapes for auth and the learner's profile."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from chainlearn.fields import StrictCharField, StrictSerializer
from users.models import User

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
