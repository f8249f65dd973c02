"""Reads for the users app."""

from __future__ import annotations

import uuid
from typing import Any, cast

from django.db.models import Count, IntegerField, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from courses.models import Enrollment, QuizSubmission
from credentials.models import Credential
from rewards.models import Reward
from users.models import ApiToken, User
from users.principal import FIELDS, to_value

PROGRESS_KEYS = (
    "enrolledCourses",
    "completedCourses",
    "totalQuizScore",
    "credentialsEarned",
    "rewardsClaimed",
)


def _scalar(queryset: QuerySet[Any], aggregate: Count | Sum) -> Coalesce:
    """``(SELECT <aggregate> FROM …)`` as a scalar subquery, 0 when there are no rows.

    ``queryset`` is filtered on one user, so grouping by its ``user_id`` yields one row.
    """
    inner = queryset.order_by().values("user_id").annotate(result=aggregate).values("result")
    return Coalesce(Subquery(inner, output_field=IntegerField()), Value(0))


def user_progress(*, user_id: uuid.UUID) -> dict[str, int]:
    """The learner's progress counters, computed in one SQL query.

    Takes the user's id; returns ``{enrolledCourses, completedCourses, totalQuizScore,
    credentialsEarned, rewardsClaimed}`` as integers (all 0 for an unknown user).
    ``totalQuizScore`` sums the score (correct answers) of every submission;
    ``credentialsEarned`` counts only non-revoked credentials.
    """
    enrollments = Enrollment.objects.filter(user_id=user_id)
    row = (
        User.objects.filter(pk=user_id)
        .values(
            enrolledCourses=_scalar(enrollments, Count("pk")),
            completedCourses=_scalar(enrollments.filter(completed_at__isnull=False), Count("pk")),
            totalQuizScore=_scalar(QuizSubmission.objects.filter(user_id=user_id), Sum("score")),
            credentialsEarned=_scalar(
                Credential.objects.filter(user_id=user_id, revoked=False), Count("pk")
            ),
            rewardsClaimed=_scalar(
                Reward.objects.filter(user_id=user_id, status=Reward.Status.CLAIMED),
                Count("pk"),
            ),
        )
        .first()
    )
    if row is None:
        return dict.fromkeys(PROGRESS_KEYS, 0)
    return {key: int(value) for key, value in cast(dict[str, int], row).items()}


def token_principal(*, key_hash: str) -> dict[str, Any] | None:
    """The active user holding the token ``key_hash``, as a cacheable value, or None.

    One query (token joined to its user); see ``users.principal`` for the value's shape.
    """
    row = (
        ApiToken.objects.filter(key_hash=key_hash, user__is_active=True)
        .values(*(f"user__{name}" for name in FIELDS))
        .first()
    )
    if row is None:
        return None
    return to_value({name: row[f"user__{name}"] for name in FIELDS})
