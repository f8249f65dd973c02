"""Writes for enrollments and quiz submissions: one transaction each."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from chainlearn.errors import Conflict, Forbidden, NotFound, constraint_name
from courses.models import Course, Enrollment, Quiz, QuizSubmission
from users.models import User

PASS_PERCENTAGE = 70

ENROLLMENT_UNIQUE = "enrollment_user_course_unique"
SUBMISSION_UNIQUE = "submission_quiz_user_unique"


def course_enroll(*, user: User, course_id: uuid.UUID) -> Enrollment:
    """Enroll ``user`` in an active course; creates and returns the Enrollment row.

    Raises NotFound when the course is unknown or inactive and Conflict when the user is
    already enrolled. Under concurrency the (user, course) unique constraint decides: the
    insert runs in a savepoint and a unique violation becomes Conflict.
    """
    with transaction.atomic():
        if not Course.objects.filter(pk=course_id, is_active=True).exists():
            raise NotFound("Course not found")
        try:
            with transaction.atomic():
                return Enrollment.objects.create(user=user, course_id=course_id)
        except IntegrityError as exc:
            if constraint_name(exc) == ENROLLMENT_UNIQUE:
                raise Conflict("Already enrolled in this course") from None
            # The course was deleted between the check and the insert (foreign key).
            raise NotFound("Course not found") from None


@dataclass(frozen=True)
class Grade:
    score: int
    total_questions: int
    percentage: int

    @property
    def passed(self) -> bool:
        return self.percentage >= PASS_PERCENTAGE


def _grade(*, questions: list[dict[str, Any]], answers: list[dict[str, Any]]) -> Grade:
    """Grade ``answers`` ([{questionId, selectedIndex}]) against a quiz's ``questions``.

    Each question counts at most once: only the first answer for a question id is graded.
    Unknown question ids and indexes outside the question's options (negative included)
    are wrong. The percentage is over the quiz's question count, rounded half up, so it
    never exceeds 100. Pure: reads and writes nothing.
    """
    by_id = {q.get("id"): q for q in questions if isinstance(q, dict)}
    graded: set[Any] = set()
    score = 0
    for answer in answers:
        question_id = answer["questionId"]
        if question_id in graded:
            continue
        graded.add(question_id)
        question = by_id.get(question_id)
        if question is None:
            continue
        index = answer["selectedIndex"]
        options = question.get("options") or []
        if 0 <= index < len(options) and index == question.get("correctIndex"):
            score += 1
    total = len(questions)
    score = min(score, total)
    percentage = (200 * score + total) // (2 * total)
    return Grade(score=score, total_questions=total, percentage=percentage)


def _course_completed(*, user: User, course_id: uuid.UUID) -> bool:
    """Whether every quiz of the course has a passed submission by ``user`` (one query)."""
    passed = QuizSubmission.objects.filter(quiz=OuterRef("pk"), user=user, passed=True)
    return not (Quiz.objects.filter(module__course_id=course_id).exclude(Exists(passed)).exists())


def quiz_submit(*, user: User, quiz_id: uuid.UUID, answers: list[dict[str, Any]]) -> QuizSubmission:
    """Grade and record the user's one attempt at a quiz; returns the new QuizSubmission.

    ``answers`` is a validated list of ``{questionId: str, selectedIndex: int}``.
    Raises NotFound when the quiz is unknown or its course inactive, Forbidden when the user
    is not enrolled in the quiz's course, Conflict when the quiz has no questions (nothing
    can be graded) or the user already submitted it (the (quiz, user) unique constraint
    decides under concurrency).

    When the submission passes the last unpassed quiz of the course, the enrollment's
    ``completed_at`` is set in the same transaction. The enrollment row is locked first, so
    concurrent submissions by one learner to one course are serialized and the last of them
    sees all the others' passes.
    """
    with transaction.atomic():
        quiz = (
            Quiz.objects.select_related("module")
            .filter(pk=quiz_id, module__course__is_active=True)
            .first()
        )
        if quiz is None:
            raise NotFound("Quiz not found")
        course_id = quiz.module.course_id
        enrollment = (
            Enrollment.objects.select_for_update().filter(user=user, course_id=course_id).first()
        )
        if enrollment is None:
            raise Forbidden("You must be enrolled in this course to take its quizzes")
        questions = quiz.questions or []
        if not questions:
            raise Conflict("This quiz has no questions yet")
        grade = _grade(questions=questions, answers=answers)
        try:
            with transaction.atomic():
                submission = QuizSubmission.objects.create(
                    quiz=quiz,
                    user=user,
                    answers=answers,
                    score=grade.score,
                    total_questions=grade.total_questions,
                    percentage=grade.percentage,
                    passed=grade.passed,
                )
        except IntegrityError as exc:
            if constraint_name(exc) == SUBMISSION_UNIQUE:
                raise Conflict("Quiz already submitted") from None
            raise
        if (
            grade.passed
            and enrollment.completed_at is None
            and _course_completed(user=user, course_id=course_id)
        ):
            enrollment.completed_at = timezone.now()
            enrollment.save(update_fields=["completed_at"])
        return submission
