"""Course catalogue, enrollment and quiz endpoints (thin: validate, call, shape)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from chainlearn.api import choice_param, ok, page_params, parse_uuid
from chainlearn.caches import course_detail_cache, course_list_cache
from chainlearn.errors import NotFound
from chainlearn.hot_reads import HotRead, HotReadViewSet
from chainlearn.schema import UNAUTHORIZED, envelope, error
from courses import selectors, services
from courses.models import Difficulty
from courses.serializers import (
    CourseDetailSerializer,
    CourseListItemSerializer,
    CourseListQueryDocSerializer,
    EnrollResponseSerializer,
    QuizDetailSerializer,
    QuizResultSerializer,
    QuizSubmitSerializer,
)
from users.models import User

DIFFICULTIES = frozenset(Difficulty.values)
BAD_REQUEST = error("VALIDATION_ERROR: invalid query, path id or body; `details` names fields.")
NOT_ENROLLED = error("FORBIDDEN: the caller is not enrolled in the quiz's course.")
OPTIONAL_AUTH = "Optional auth: an invalid or missing token is anonymous (isEnrolled false)."


def _path_id(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.UUID, OpenApiParameter.PATH, description=description)


def _learner(request: Request) -> User:
    """The caller of an ``IsAuthenticated`` action (anonymous requests were already refused)."""
    return cast(User, request.user)


def list_params(query: Mapping[str, str], path: Mapping[str, Any]) -> dict[str, Any]:
    return {"difficulty": choice_param(query, "difficulty", DIFFICULTIES), **page_params(query)}


def detail_params(query: Mapping[str, str], path: Mapping[str, Any]) -> dict[str, Any]:
    return {"course_id": parse_uuid(path["course_id"], field="courseId")}


def with_enrollment(
    user_id: Any, courses: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], str]:
    """Copies of the shared course dicts with this user's fresh ``isEnrolled`` set, and
    those flags as ``0``/``1`` (the caller's own part of the ETag)."""
    enrolled = selectors.enrolled_course_ids(
        user_id=user_id, course_ids=[course["id"] for course in courses]
    )
    marked = [{**course, "isEnrolled": course["id"] in enrolled} for course in courses]
    return marked, "".join("1" if course["isEnrolled"] else "0" for course in marked)


def course_with_enrollment(user_id: Any, course: dict[str, Any]) -> tuple[dict[str, Any], str]:
    (marked,), flags = with_enrollment(user_id, [course])
    return marked, flags


CATALOGUE = {
    "list": HotRead(
        course_list_cache,
        list_params,
        per_caller=with_enrollment,
        doc=dict(
            operation_id="courses_list",
            summary="List active courses, newest first",
            description=OPTIONAL_AUTH,
            parameters=[CourseListQueryDocSerializer],
            responses={
                200: envelope(
                    "CourseListEnvelope", CourseListItemSerializer(many=True), paginated=True
                ),
                400: BAD_REQUEST,
            },
        ),
    ),
    "retrieve": HotRead(
        course_detail_cache,
        detail_params,
        per_caller=course_with_enrollment,
        absent=lambda: NotFound("Course not found"),
        doc=dict(
            operation_id="courses_retrieve",
            summary="A course with its modules",
            description=OPTIONAL_AUTH,
            parameters=[_path_id("course_id", "Course id.")],
            responses={
                200: envelope("CourseDetailEnvelope", CourseDetailSerializer()),
                400: BAD_REQUEST,
                404: error("NOT_FOUND: unknown or inactive course."),
            },
        ),
    ),
}


# The catalogue (cached hot reads, optional auth) and enrollment.
class CourseViewSet(HotReadViewSet):
    hot_reads = CATALOGUE

    @extend_schema(
        operation_id="courses_enroll",
        summary="Enroll the caller in a course",
        description="Takes no body. Answers exactly `{success: true, message}` (no data/meta).",
        request=None,
        parameters=[_path_id("course_id", "Course id.")],
        responses={
            201: EnrollResponseSerializer,
            400: BAD_REQUEST,
            401: UNAUTHORIZED,
            404: error("NOT_FOUND: unknown or inactive course."),
            409: error("CONFLICT: already enrolled."),
        },
    )
    def enroll(self, request: Request, course_id: str) -> Response:
        services.course_enroll(
            user=_learner(request), course_id=parse_uuid(course_id, field="courseId")
        )
        return Response(
            {"success": True, "message": "Enrolled successfully"}, status=status.HTTP_201_CREATED
        )


# A quiz's questions, and the caller's one submission.
class QuizViewSet(GenericViewSet):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="quizzes_retrieve",
        summary="A quiz's questions (without the answers)",
        parameters=[_path_id("quiz_id", "Quiz id.")],
        responses={
            200: envelope("QuizDetailEnvelope", QuizDetailSerializer()),
            400: BAD_REQUEST,
            401: UNAUTHORIZED,
            403: NOT_ENROLLED,
            404: error("NOT_FOUND: unknown quiz, or its course is inactive."),
        },
    )
    def retrieve(self, request: Request, quiz_id: str) -> Response:
        quiz = selectors.quiz_for_learner(
            quiz_id=parse_uuid(quiz_id, field="quizId"), user_id=_learner(request).pk
        )
        return ok(request, quiz)

    @extend_schema(
        operation_id="quizzes_submit",
        summary="Submit the caller's one attempt at a quiz",
        description=(
            "Grading counts each question once (the first answer for a question id), treats "
            "unknown question ids and out-of-range indexes as wrong, and rounds the percentage "
            "half up over the quiz's question count; passed = percentage >= 70. Passing the "
            "last unpassed quiz of a course completes the enrollment."
        ),
        parameters=[_path_id("quiz_id", "Quiz id.")],
        request=QuizSubmitSerializer,
        responses={
            200: envelope("QuizSubmitEnvelope", QuizResultSerializer()),
            400: BAD_REQUEST,
            401: UNAUTHORIZED,
            403: NOT_ENROLLED,
            404: error("NOT_FOUND: unknown quiz, or its course is inactive."),
            409: error("CONFLICT: already submitted, or the quiz has no questions yet."),
        },
    )
    def submit(self, request: Request, quiz_id: str) -> Response:
        quiz_pk = parse_uuid(quiz_id, field="quizId")
        body = QuizSubmitSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        submission = services.quiz_submit(
            user=_learner(request), quiz_id=quiz_pk, answers=body.validated_data["answers"]
        )
        return ok(
            request,
            {
                "id": str(submission.id),
                "score": submission.score,
                "totalQuestions": submission.total_questions,
                "percentage": submission.percentage,
                "passed": submission.passed,
                # A submission made just now cannot have been claimed yet.
                "rewardAvailable": submission.passed,
            },
        )
