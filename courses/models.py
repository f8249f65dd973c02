"""Courses, their modules and quizzes, enrollments and quiz submissions."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from caching.querysets import InvalidatingQuerySet


class Difficulty(models.TextChoices):
    BEGINNER = "beginner"
    INTERMEDIATE = "intermediate"
    ADVANCED = "advanced"


class Course(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")
    difficulty = models.CharField(max_length=12, choices=Difficulty.choices, db_index=True)
    # NULL, not "", is how the API reports "no content hash" (contentHash: null).
    content_hash = models.CharField(max_length=64, blank=True, null=True)  # noqa: DJ001
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InvalidatingQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["is_active", "-created_at"], name="course_active_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(difficulty__in=[d.value for d in Difficulty]),
                name="course_difficulty_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.title


class Module(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="modules")
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")
    order = models.PositiveIntegerField()

    objects = InvalidatingQuerySet.as_manager()

    class Meta:
        ordering = ["order"]
        constraints = [
            models.UniqueConstraint(fields=["course", "order"], name="module_course_order_unique"),
            models.CheckConstraint(condition=models.Q(order__gte=1), name="module_order_gte_1"),
        ]

    def __str__(self) -> str:
        return f"{self.order}. {self.title}"


class Quiz(models.Model):
    """A module's quiz: ``questions`` is a list of {id, text, options, correctIndex}."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    module = models.OneToOneField(Module, on_delete=models.CASCADE, related_name="quiz")
    questions = models.JSONField(default=list)

    objects = InvalidatingQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "quizzes"

    def __str__(self) -> str:
        return f"quiz of module {self.module_id}"


class Enrollment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrollments"
    )
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="enrollments")
    enrolled_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = InvalidatingQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "course"], name="enrollment_user_course_unique"
            ),
        ]
        indexes = [models.Index(fields=["course"], name="enrollment_course_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.course_id}"


class QuizSubmission(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    quiz = models.ForeignKey(Quiz, on_delete=models.CASCADE, related_name="submissions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quiz_submissions"
    )
    answers = models.JSONField(default=list)
    score = models.PositiveIntegerField()
    total_questions = models.PositiveIntegerField()
    percentage = models.PositiveSmallIntegerField()
    passed = models.BooleanField()
    submitted_at = models.DateTimeField(auto_now_add=True)

    objects = InvalidatingQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["quiz", "user"], name="submission_quiz_user_unique"),
            models.CheckConstraint(
                condition=models.Q(percentage__gte=0, percentage__lte=100),
                name="submission_percentage_range",
            ),
            models.CheckConstraint(
                condition=models.Q(score__lte=models.F("total_questions")),
                name="submission_score_lte_total",
            ),
            models.CheckConstraint(
                condition=models.Q(passed=models.Q(percentage__gte=70)),
                name="submission_passed_iff_70",
            ),
        ]
        indexes = [models.Index(fields=["user", "quiz"], name="submission_user_quiz_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} on {self.quiz_id}: {self.percentage}%"
