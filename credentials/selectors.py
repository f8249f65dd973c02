"""Reads for the credentials app."""

from __future__ import annotations

import uuid
from typing import Any

from chainlearn.formats import iso
from credentials.models import Credential


def credential_list(*, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every credential of the learner, revoked ones included, newest first, in one query.

    Returns ``[{id, courseId, courseTitle, score, assetCode, revoked, issuedAt}]`` as plain
    JSON data.
    """
    rows = (
        Credential.objects.filter(user_id=user_id)
        .order_by("-issued_at", "-id")
        .values("id", "course_id", "course__title", "score", "asset_code", "revoked", "issued_at")
    )
    return [
        {
            "id": str(row["id"]),
            "courseId": str(row["course_id"]),
            "courseTitle": row["course__title"],
            "score": row["score"],
            "assetCode": row["asset_code"],
            "revoked": row["revoked"],
            "issuedAt": iso(row["issued_at"]),
        }
        for row in rows
    ]
