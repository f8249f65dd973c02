"""Writes for the credentials app: minting and revoking course credentials."""

from __future__ import annotations

import secrets
import uuid

from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from chainlearn.errors import Conflict, Forbidden, NotFound, constraint_name
from courses.models import Course, Enrollment, QuizSubmission
from credentials.models import Credential
from users.models import User

ASSET_CODE_ATTEMPTS = 5
USER_COURSE_CONSTRAINT = "credential_user_course_unique"


def new_asset_code() -> str:
    """``CL`` + 8 upper-case hex characters from a CSPRNG."""
    return "CL" + secrets.token_hex(4).upper()


def _mean_percentage(*, user_id: uuid.UUID, course_id: uuid.UUID) -> int:
    """The user's mean submission percentage over the course's quizzes, rounded half up."""
    totals = QuizSubmission.objects.filter(
        user_id=user_id, quiz__module__course_id=course_id
    ).aggregate(total=Sum("percentage"), count=Count("pk"))
    count = totals["count"] or 0
    if count == 0:
        return 0
    return (2 * (totals["total"] or 0) + count) // (2 * count)


def credential_mint(*, user: User, course_id: uuid.UUID) -> Credential:
    """Issue the learner's credential for a course they completed.

    Raises ``NotFound`` for an unknown or inactive course, ``Forbidden`` unless the
    user's enrollment in it is completed, and ``Conflict`` when they already hold one
    (the unique (user, course) constraint decides under concurrency). ``score`` is the
    rounded mean percentage of the user's submissions over the course's quizzes; the
    asset code is random and redrawn on the rare collision with an existing one.
    """
    with transaction.atomic():
        if not Course.objects.filter(pk=course_id, is_active=True).exists():
            raise NotFound("Course not found")
        completed = Enrollment.objects.filter(
            user_id=user.pk, course_id=course_id, completed_at__isnull=False
        ).exists()
        if not completed:
            raise Forbidden("Course not completed: no credential available")
        if Credential.objects.filter(user_id=user.pk, course_id=course_id).exists():
            raise Conflict("Credential already minted for this course")
        score = _mean_percentage(user_id=user.pk, course_id=course_id)
        for _ in range(ASSET_CODE_ATTEMPTS):
            try:
                with transaction.atomic():
                    return Credential.objects.create(
                        user_id=user.pk,
                        course_id=course_id,
                        score=score,
                        asset_code=new_asset_code(),
                    )
            except IntegrityError as exc:
                name = constraint_name(exc)
                if name == USER_COURSE_CONSTRAINT:
                    raise Conflict("Credential already minted for this course") from None
                if "asset_code" not in name:
                    raise
        raise Conflict("Could not allocate a unique asset code; retry")


def credential_revoke(*, credential: Credential) -> Credential:
    """Mark ``credential`` revoked now (a no-op if it already is) and return it.

    Saves only ``revoked`` and ``revoked_at`` through the model, so signal receivers see
    the change.
    """
    if credential.revoked:
        return credential
    with transaction.atomic():
        credential.revoked = True
        credential.revoked_at = timezone.now()
        credential.save(update_fields=["revoked", "revoked_at"])
    return credential
