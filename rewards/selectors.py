"""Reads for the rewards app."""

from __future__ import annotations

import uuid
from typing import Any

from chainlearn.formats import iso
from rewards.models import Reward


def reward_history(*, user_id: uuid.UUID, page: int, limit: int) -> dict[str, Any]:
    """One page of the learner's claimed rewards, newest first, in two queries.

    Takes the user's id and validated ``page`` (≥ 1) and ``limit`` (1-50). Returns
    ``{"items": [{id (the submission id), courseTitle, score, amount, txHash,
    claimedAt}], "total": <claimed rewards in all pages>}`` as plain JSON data.
    """
    rewards = Reward.objects.filter(user_id=user_id)
    total = rewards.count()
    offset = (page - 1) * limit
    rows = rewards.order_by("-claimed_at", "-id").values(
        "submission_id",
        "submission__quiz__module__course__title",
        "submission__score",
        "amount",
        "tx_hash",
        "claimed_at",
    )[offset : offset + limit]
    items = [
        {
            "id": str(row["submission_id"]),
            "courseTitle": row["submission__quiz__module__course__title"],
            "score": row["submission__score"],
            "amount": row["amount"],
            "txHash": row["tx_hash"],
            "claimedAt": iso(row["claimed_at"]),
        }
        for row in rows
    ]
    return {"items": items, "total": total}
