"""Domain errors: business-rule failures, each mapped to one status and error code.

Services and selectors raise these; the API's exception handler (``chainlearn.api``) turns
them into the contract's error envelope. This module imports nothing of HTTP or DRF.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError


class DomainError(Exception):
    """A business-rule failure that maps to one status and error code."""

    status_code: int = 400
    code: str = "VALIDATION_ERROR"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Unauthorized(DomainError):
    status_code = 401
    code = "UNAUTHORIZED"


class NotFound(DomainError):
    status_code = 404
    code = "NOT_FOUND"


class Forbidden(DomainError):
    status_code = 403
    code = "FORBIDDEN"


class Conflict(DomainError):
    status_code = 409
    code = "CONFLICT"


class InvalidInput(DomainError):
    status_code = 400
    code = "VALIDATION_ERROR"


def constraint_name(exc: IntegrityError) -> str:
    """The name of the constraint an ``IntegrityError`` violated ("" if unknown)."""
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) or ""
