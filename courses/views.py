"""Course catalogue, enrollment and quiz endpoints (thin: validate, call, shape)."""

from __future__ import annotations

import json
from typing import Any, cast

from django.http import HttpRequest, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from caching.managers import course_detail_cache, course_list_cache
from chainlearn.api import (
    NotFound,
    choice_param,
    ok,
    ok_data,
    ok_json,
    page_params,
    parse_uuid,
    split_page,
)
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
from users.authentication import cached_for_token
from users.models import User

DIFFICULTIES = frozenset(Difficulty.values)
BAD_REQUEST = error("VALIDATION_ERROR: invalid query, path id or body; `details` names fields.")
NOT_ENROLLED = error("FORBIDDEN: the caller is not enrolled in the quiz's course.")


def _path_id(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.UUID, OpenApiParameter.PATH, description=description)


def _learner(request: Request) -> User:
    """The caller of an ``IsAuthenticated`` view (anonymous requests were already refused)."""
    return cast(User, request.user)


def _with_enrollment(user_id: Any, courses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the shared course dicts with this user's fresh ``isEnrolled`` set."""
    enrolled = selectors.enrolled_course_ids(
        user_id=user_id, course_ids=[course["id"] for course in courses]
    )
    return [{**course, "isEnrolled": course["id"] in enrolled} for course in courses]


def _anonymous_list(request: HttpRequest) -> HttpResponse:
    """The cached list JSON (items say ``isEnrolled: false``) spliced into the envelope as
    stored, without decoding it."""
    difficulty = choice_param(request, "difficulty", DIFFICULTIES)
    params = page_params(request)
    items, total = split_page(
        course_list_cache.get_json(difficulty=difficulty, page=params.page, limit=params.limit)
    )
    return ok_json(request, items, pagination=params.pagination(total))


def _anonymous_detail(request: HttpRequest, course_id: str) -> HttpResponse:
    course_json = course_detail_cache.get_json(course_id=parse_uuid(course_id, field="courseId"))
    if course_json == b"null":
        raise NotFound("Course not found")
    return ok_json(request, course_json[:-1] + b',"isEnrolled":false}')


class CourseListView(APIView):
    permission_classes = [AllowAny]

    @staticmethod
    def fast_get(request: HttpRequest) -> HttpResponse | None:
        """Outside DRF (``chainlearn.fastpath``). Anonymous: the cached page as stored. With
        a token: the token's principal and the page in one round trip, then the caller's
        ``isEnrolled`` (one query)."""
        if "HTTP_AUTHORIZATION" not in request.META:
            return _anonymous_list(request)
        difficulty = choice_param(request, "difficulty", DIFFICULTIES)
        params = page_params(request)
        found = cached_for_token(
            request, course_list_cache, difficulty=difficulty, page=params.page, limit=params.limit
        )
        if found is None:
            return None
        items, total = split_page(found[0])
        courses = _with_enrollment(found[1], json.loads(items))
        return ok_data(request, courses, pagination=params.pagination(total))

    @extend_schema(
        operation_id="courses_list",
        summary="List active courses, newest first",
        description="Optional auth: an invalid or missing token is anonymous (isEnrolled false).",
        parameters=[CourseListQueryDocSerializer],
        responses={
            200: envelope(
                "CourseListEnvelope", CourseListItemSerializer(many=True), paginated=True
            ),
            400: BAD_REQUEST,
        },
    )
    def get(self, request: Request) -> HttpResponse:
        # The hottest path: plain parsing, not a serializer.
        if not request.user.is_authenticated:
            return _anonymous_list(request)
        difficulty = choice_param(request, "difficulty", DIFFICULTIES)
        params = page_params(request)
        query = {"difficulty": difficulty, "page": params.page, "limit": params.limit}
        result = course_list_cache.get(**query)
        return ok(
            request,
            _with_enrollment(request.user.pk, result["items"]),
            pagination=params.pagination(result["total"]),
        )


class CourseDetailView(APIView):
    permission_classes = [AllowAny]

    @staticmethod
    def fast_get(request: HttpRequest, course_id: str) -> HttpResponse | None:
        """Outside DRF (``chainlearn.fastpath``), as ``CourseListView.fast_get``."""
        if "HTTP_AUTHORIZATION" not in request.META:
            return _anonymous_detail(request, course_id)
        course_pk = parse_uuid(course_id, field="courseId")
        found = cached_for_token(request, course_detail_cache, course_id=course_pk)
        if found is None:
            return None
        return ok_data(request, _with_enrollment(found[1], [json.loads(found[0])])[0])

    @extend_schema(
        operation_id="courses_retrieve",
        summary="A course with its modules",
        description="Optional auth: an invalid or missing token is anonymous (isEnrolled false).",
        parameters=[_path_id("course_id", "Course id.")],
        responses={
            200: envelope("CourseDetailEnvelope", CourseDetailSerializer()),
            400: BAD_REQUEST,
            404: error("NOT_FOUND: unknown or inactive course."),
        },
    )
    def get(self, request: Request, course_id: str) -> HttpResponse:
        if not request.user.is_authenticated:
            return _anonymous_detail(request, course_id)
        course = course_detail_cache.get(course_id=parse_uuid(course_id, field="courseId"))
        if course is None:
            raise NotFound("Course not found")
        return ok(request, _with_enrollment(request.user.pk, [course])[0])


class CourseEnrollView(APIView):
    permission_classes = [IsAuthenticated]

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
    def post(self, request: Request, course_id: str) -> Response:
        services.course_enroll(
            user=_learner(request), course_id=parse_uuid(course_id, field="courseId")
        )
        return Response(
            {"success": True, "message": "Enrolled successfully"}, status=status.HTTP_201_CREATED
        )


class QuizDetailView(APIView):
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
    def get(self, request: Request, quiz_id: str) -> Response:
        quiz = selectors.quiz_for_learner(
            quiz_id=parse_uuid(quiz_id, field="quizId"), user_id=_learner(request).pk
        )
        return ok(request, quiz)


class QuizSubmitView(APIView):
    permission_classes = [IsAuthenticated]

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
    def post(self, request: Request, quiz_id: str) -> Response:
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
