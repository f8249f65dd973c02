"""The authenticated user as a cache value: a user row minus its password hash.

``users.selectors.token_principal`` loads it; ``BearerTokenAuthentication`` turns it back
into a ``User`` without touching the database. The password hash never goes to Redis; the
instance loads it from the database only if something asks for it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS

from users.models import User

_FIELDS = [f for f in User._meta.concrete_fields if f.attname != "password"]
FIELDS = tuple(f.attname for f in _FIELDS)


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def to_value(row: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready form of a ``values(*FIELDS)`` row."""
    return {name: _json(row[name]) for name in FIELDS}


def to_user(value: dict[str, Any]) -> User:
    """A ``User`` with every field but ``password`` loaded from ``value``."""
    values = [field.to_python(value[field.attname]) for field in _FIELDS]
    return User.from_db(DEFAULT_DB_ALIAS, list(FIELDS), values)
