"""Reads for the course catalogue and quizzes.

``course_list`` and ``course_detail`` back the cached hot paths: they return plain JSON data
(string ids, ISO timestamps) and nothing specific to the caller, so one cache entry can serve
everyone. List items and the detail carry the anonymous ``isEnrolled: false`` (served as stored to
anonymous callers); a signed-in caller's own value replaces it per request, from
``enrolled_course_ids``.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from django.db import connection
from django.db.models import Count, Exists, F, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from chainlearn.errors import Forbidden, NotFound
from chainlearn.formats import iso
from courses.models import Course, Enrollment, Module, Quiz


def _enrolled_count() -> Coalesce:
    """A correlated subquery counting the enrollments of the outer course row."""
    counts = (
        Enrollment.objects.filter(course=OuterRef("pk"))
        .order_by()
        .values("course")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), 0)


def _active_courses(difficulty: str | None) -> QuerySet[Course]:
    courses = Course.objects.filter(is_active=True)
    if difficulty is not None:
        courses = courses.filter(difficulty=difficulty)
    return courses


def course_list(*, difficulty: str | None, page: int, limit: int) -> dict[str, Any]:
    """One page of active courses, newest first, with their enrollment counts.

    Takes an optional difficulty filter and a 1-based page of ``limit`` items. Returns
    ``{"items": [{id, title, description, difficulty, isActive, enrolledCount,
    isEnrolled: false}], "total"}``
    in exactly two queries: a COUNT, and the page (picked through the ``(is_active,
    -created_at)`` index) whose enrollment counts are a correlated subquery over its rows only.
    """
    courses = _active_courses(difficulty)
    total = courses.count()
    offset = (page - 1) * limit
    newest_first = ("-created_at", "-id")
    # The page is chosen in a subquery first so the per-course count runs for its rows only,
    # not for every row the index scan skips over to reach the offset.
    page_ids = courses.order_by(*newest_first).values("pk")[offset : offset + limit]
    rows = (
        Course.objects.filter(pk__in=page_ids)
        .order_by(*newest_first)
        .annotate(enrolled_count=_enrolled_count())
        .values("id", "title", "description", "difficulty", "is_active", "enrolled_count")
    )
    items = [
        {
            "id": str(row["id"]),
            "title": row["title"],
            "description": row["description"],
            "difficulty": row["difficulty"],
            "isActive": row["is_active"],
            "enrolledCount": row["enrolled_count"],
            "isEnrolled": False,  # the anonymous view; never a caller's own value
        }
        for row in rows
    ]
    return {"items": items, "total": total}


def course_detail(*, course_id: uuid.UUID) -> dict[str, Any] | None:
    """An active course with its enrollment count and ordered modules, or None.

    Returns ``{id, title, description, difficulty, isActive, enrolledCount, contentHash,
    modules: [{id, title, order, quizId}], createdAt, isEnrolled: false}`` (``quizId`` is
    None for a module without a quiz) in two queries, or None (one query) when the course
    is unknown or inactive.
    """
    course = (
        Course.objects.filter(pk=course_id, is_active=True)
        .annotate(enrolled_count=_enrolled_count())
        .values(
            "id",
            "title",
            "description",
            "difficulty",
            "is_active",
            "enrolled_count",
            "content_hash",
            "created_at",
        )
        .first()
    )
    if course is None:
        return None
    modules = (
        Module.objects.filter(course_id=course_id)
        .order_by("order")
        .values("id", "title", "order", quiz_pk=F("quiz__id"))
    )
    return {
        "id": str(course["id"]),
        "title": course["title"],
        "description": course["description"],
        "difficulty": course["difficulty"],
        "isActive": course["is_active"],
        "enrolledCount": course["enrolled_count"],
        "contentHash": course["content_hash"],
        "modules": [
            {
                "id": str(module["id"]),
                "title": module["title"],
                "order": module["order"],
                "quizId": str(module["quiz_pk"]) if module["quiz_pk"] is not None else None,
            }
            for module in modules
        ],
        "createdAt": iso(course["created_at"]),
        "isEnrolled": False,  # the anonymous view; never a caller's own value
    }


def enrollment_counts(course_ids: Collection[str]) -> dict[str, int]:
    """The number of enrollments of each of ``course_ids`` that has any, in one query (the
    live ``enrolledCount`` of cached list pages and details, ``chainlearn.caches``)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT course_id, count(*) FROM courses_enrollment WHERE course_id = ANY(%s)"
            " GROUP BY course_id",
            [[uuid.UUID(course_id) for course_id in course_ids]],
        )
        return {str(course_id): count for course_id, count in cursor.fetchall()}


def enrolled_course_ids(*, user_id: uuid.UUID, course_ids: list[str]) -> set[str]:
    """Which of ``course_ids`` the user is enrolled in, as strings; one query (none if empty).

    Runs on every authenticated list and detail request (never cached), so it is plain SQL:
    building the ORM query cost several times the query itself.
    """
    if not course_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT course_id FROM courses_enrollment WHERE user_id = %s AND course_id = ANY(%s)",
            [user_id, [uuid.UUID(course_id) for course_id in course_ids]],
        )
        return {str(course_id) for (course_id,) in cursor.fetchall()}


def public_questions(questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Questions as learners see them: ``{id, text, options}``, never ``correctIndex``."""
    return [
        {"id": q.get("id"), "text": q.get("text"), "options": q.get("options")} for q in questions
    ]


def quiz_for_learner(*, quiz_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any]:
    """A quiz as an enrolled learner may read it, in one query.

    Returns ``{id, moduleId, courseId, questions: [{id, text, options}]}``. Raises NotFound
    when the quiz is unknown or its course is inactive (inactive courses are invisible to
    learners), Forbidden when the user is not enrolled in the quiz's course.
    """
    row = (
        Quiz.objects.filter(pk=quiz_id, module__course__is_active=True)
        .annotate(
            course_pk=F("module__course_id"),
            enrolled=Exists(
                Enrollment.objects.filter(user_id=user_id, course_id=OuterRef("module__course_id"))
            ),
        )
        .values("id", "module_id", "course_pk", "questions", "enrolled")
        .first()
    )
    if row is None:
        raise NotFound("Quiz not found")
    if not row["enrolled"]:
        raise Forbidden("You must be enrolled in this course to take its quizzes")
    return {
        "id": str(row["id"]),
        "moduleId": str(row["module_id"]),
        "courseId": str(row["course_pk"]),
        "questions": public_questions(row["questions"] or []),
    }
