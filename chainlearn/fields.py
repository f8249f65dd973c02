"""Strict DRF input fields shared by every app's serializers.

DRF's own fields coerce JSON types (``12`` becomes ``"12"``, ``"1"`` and ``1.0`` become
``1``); these accept exactly the JSON type the contract names and nothing else.
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else: DRF's CharField would accept 12 or true as "12"."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return str(super().to_internal_value(data))


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer and nothing else (DRF's IntegerField takes "1", 1.0 and true)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


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
