"""Input validation and response shapes for the credentials endpoints."""

from __future__ import annotations

from rest_framework import serializers

from chainlearn.fields import StrictUUIDField


class MintSerializer(serializers.Serializer):
    courseId = StrictUUIDField(help_text="A course the caller has completed.")


class MintResultSerializer(serializers.Serializer):
    credentialId = serializers.UUIDField()
    assetCode = serializers.RegexField(r"^CL[0-9A-F]{8}$", help_text="CL + 8 upper-case hex.")
    message = serializers.CharField()


class CredentialItemSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    courseId = serializers.UUIDField()
    courseTitle = serializers.CharField()
    score = serializers.IntegerField(
        min_value=0, max_value=100, help_text="Mean quiz percentage over the course."
    )
    assetCode = serializers.RegexField(r"^CL[0-9A-F]{8}$")
    revoked = serializers.BooleanField()
    issuedAt = serializers.DateTimeField()
