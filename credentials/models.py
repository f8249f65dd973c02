"""Platform-issued course credentials."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from caching.querysets import InvalidatingQuerySet


class Credential(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credentials"
    )
    course = models.ForeignKey(
        "courses.Course", on_delete=models.CASCADE, related_name="credentials"
    )
    score = models.PositiveSmallIntegerField()
    asset_code = models.CharField(max_length=10, unique=True)
    issued_at = models.DateTimeField(auto_now_add=True)
    revoked = models.BooleanField(default=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvalidatingQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "course"], name="credential_user_course_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(asset_code__regex=r"^CL[0-9A-F]{8}$"),
                name="credential_asset_code_format",
            ),
            models.CheckConstraint(
                condition=models.Q(score__lte=100), name="credential_score_lte_100"
            ),
            models.CheckConstraint(
                condition=models.Q(revoked=False, revoked_at__isnull=True)
                | models.Q(revoked=True, revoked_at__isnull=False),
                name="credential_revoked_at_consistent",
            ),
        ]
        indexes = [models.Index(fields=["user", "-issued_at"], name="credential_user_issued_idx")]

    def __str__(self) -> str:
        return self.asset_code
