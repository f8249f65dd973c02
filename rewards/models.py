"""Credit rewards granted for passed quiz submissions."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from caching.querysets import InvalidatingQuerySet


class Reward(models.Model):
    class Status(models.TextChoices):
        # Only "claimed" exists today; the field leaves room for on-chain settlement states.
        CLAIMED = "claimed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    submission = models.OneToOneField(
        "courses.QuizSubmission", on_delete=models.CASCADE, related_name="reward"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rewards"
    )
    amount = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CLAIMED)
    # Always NULL until on-chain settlement exists: the API reports txHash: null.
    tx_hash = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    claimed_at = models.DateTimeField(auto_now_add=True)

    objects = InvalidatingQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["user", "-claimed_at"], name="reward_user_claimed_idx")]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="reward_amount_gt_0"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} credits to {self.user_id}"


class IdempotencyRecord(models.Model):
    """The stored outcome of one ``Idempotency-Key`` request, replayed on retries.

    Inserted first in the claim's transaction: the unique (user, key) index makes a
    concurrent request with the same key wait for this one to commit, then replay it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_records"
    )
    key = models.CharField(max_length=64)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.key} of {self.user_id}"
