"""Input validation for the course and quiz endpoints, and their documented shapes.

Input serializers are strict about JSON types: ``"1"``, ``1.0`` or ``true`` are not an
integer and ``5`` is not a string. Output serializers describe what the views return (the
data is built by selectors), so the OpenAPI schema shows the real envelopes.
"""

from __future__ import annotations

from rest_framework import serializers

from chainlearn.fields import StrictCharField, StrictIntegerField
from courses.models import Difficulty

MAX_ANSWERS = 50
QUESTION_ID_MAX_LENGTH = 100


class AnswerSerializer(serializers.Serializer):
    questionId = StrictCharField(max_length=QUESTION_ID_MAX_LENGTH, trim_whitespace=False)
    selectedIndex = StrictIntegerField(
        help_text="Index into the question's options; out-of-range values are graded wrong."
    )


class QuizSubmitSerializer(serializers.Serializer):
    answers = serializers.ListField(
        child=AnswerSerializer(), allow_empty=False, min_length=1, max_length=MAX_ANSWERS
    )


# Documented shapes (OpenAPI only).


class CourseListQueryDocSerializer(serializers.Serializer):
    """The list's query parameters (parsed by ``choice_param`` and ``page_params``)."""

    difficulty = serializers.ChoiceField(choices=Difficulty.choices, required=False)
    page = serializers.IntegerField(min_value=1, default=1, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=50, default=20, required=False)


class CourseListItemSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    description = serializers.CharField()
    difficulty = serializers.ChoiceField(choices=Difficulty.choices)
    isActive = serializers.BooleanField()
    enrolledCount = serializers.IntegerField()
    isEnrolled = serializers.BooleanField(
        help_text="Whether the caller is enrolled; false for anonymous callers."
    )


class CourseModuleSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    order = serializers.IntegerField(min_value=1)
    quizId = serializers.UUIDField(allow_null=True)


class CourseDetailSerializer(CourseListItemSerializer):
    contentHash = serializers.CharField(allow_null=True)
    modules = CourseModuleSerializer(many=True)
    createdAt = serializers.DateTimeField()


class EnrollResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()


class QuizQuestionSerializer(serializers.Serializer):
    id = serializers.CharField()
    text = serializers.CharField()
    options = serializers.ListField(child=serializers.CharField())


class QuizDetailSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    moduleId = serializers.UUIDField()
    courseId = serializers.UUIDField()
    questions = QuizQuestionSerializer(many=True)


class QuizResultSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The submission id (claim its reward with it).")
    score = serializers.IntegerField(help_text="Correct answers, each question counted once.")
    totalQuestions = serializers.IntegerField()
    percentage = serializers.IntegerField(min_value=0, max_value=100)
    passed = serializers.BooleanField(help_text="percentage >= 70")
    rewardAvailable = serializers.BooleanField()
