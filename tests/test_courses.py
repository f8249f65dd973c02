"""GET /courses, GET /courses/{id}, POST /courses/{id}/enroll."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from courses.models import Course, Enrollment
from tests.conftest import client_for
from tests.factories import (
    CourseFactory,
    EnrollmentFactory,
    ModuleFactory,
    QuizFactory,
    UserFactory,
    course_with_modules,
)
from tests.helpers import assert_error, row_counts

pytestmark = pytest.mark.django_db(transaction=True)

LIST_ITEM_KEYS = {
    "id",
    "title",
    "description",
    "difficulty",
    "isActive",
    "enrolledCount",
    "isEnrolled",
}
DETAIL_KEYS = LIST_ITEM_KEYS | {"contentHash", "modules", "createdAt"}
MODULE_KEYS = {"id", "title", "order", "quizId"}
META_KEYS = {"version", "timestamp", "requestId"}


def aged(course: Course, minutes_ago: int) -> Course:
    """Give ``course`` a fixed creation time (auto_now_add only applies on insert)."""
    course.created_at = timezone.now() - timedelta(minutes=minutes_ago)
    course.save(update_fields=["created_at"])
    return course


# GET /courses


def test_list_shape_for_anonymous(api):
    # given
    course = CourseFactory(title="Stellar 101", description="Basics", difficulty="intermediate")
    EnrollmentFactory(course=course)
    # when
    response = api.get("/api/v1/courses")
    # then
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "data", "pagination", "meta"}
    assert body["success"] is True
    assert set(body["meta"]) == META_KEYS
    assert body["meta"]["version"] == "v1"
    assert body["pagination"] == {"page": 1, "limit": 20, "total": 1}
    assert body["data"] == [
        {
            "id": str(course.id),
            "title": "Stellar 101",
            "description": "Basics",
            "difficulty": "intermediate",
            "isActive": True,
            "enrolledCount": 1,
            "isEnrolled": False,
        }
    ]


def test_list_only_active_newest_first_with_counts(api):
    old = aged(CourseFactory(title="old"), 30)
    new = aged(CourseFactory(title="new"), 10)
    middle = aged(CourseFactory(title="middle"), 20)
    aged(CourseFactory(title="hidden", is_active=False), 5)
    for _ in range(3):
        EnrollmentFactory(course=middle, user=UserFactory())

    response = api.get("/api/v1/courses")

    data = response.json()["data"]
    assert [c["title"] for c in data] == ["new", "middle", "old"]
    assert {c["title"]: c["enrolledCount"] for c in data} == {"new": 0, "middle": 3, "old": 0}
    assert response.json()["pagination"]["total"] == 3
    assert str(old.id) in {c["id"] for c in data} and str(new.id) == data[0]["id"]


def test_list_filters_by_difficulty(api):
    CourseFactory(difficulty="beginner")
    advanced = CourseFactory(difficulty="advanced")
    CourseFactory(difficulty="advanced", is_active=False)

    response = api.get("/api/v1/courses", {"difficulty": "advanced"})

    assert response.status_code == 200
    assert [c["id"] for c in response.json()["data"]] == [str(advanced.id)]
    assert response.json()["pagination"]["total"] == 1


def test_list_pages_are_stable_and_disjoint(api):
    created = [aged(CourseFactory(title=f"c{i}"), 100 - i) for i in range(5)]
    # Two courses with the same creation time still page deterministically (id breaks ties).
    tie = created[0].created_at
    for course in created[:2]:
        course.created_at = tie
        course.save(update_fields=["created_at"])

    pages = [api.get("/api/v1/courses", {"page": p, "limit": 2}).json() for p in (1, 2, 3)]

    ids = [c["id"] for page in pages for c in page["data"]]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert [len(page["data"]) for page in pages] == [2, 2, 1]
    assert pages[1]["pagination"] == {"page": 2, "limit": 2, "total": 5}
    assert api.get("/api/v1/courses", {"page": 9, "limit": 2}).json()["data"] == []


def test_list_overlays_is_enrolled_for_the_caller(user, auth_api):
    mine = CourseFactory()
    other = CourseFactory()
    EnrollmentFactory(user=user, course=mine)
    EnrollmentFactory(course=other)

    data = auth_api.get("/api/v1/courses").json()["data"]

    assert {c["id"]: c["isEnrolled"] for c in data} == {str(mine.id): True, str(other.id): False}


def test_list_is_enrolled_is_fresh_per_caller(api, user, auth_api):
    course = CourseFactory()
    EnrollmentFactory(user=user, course=course)

    anonymous = api.get("/api/v1/courses").json()["data"][0]
    stranger = client_for(UserFactory()).get("/api/v1/courses").json()["data"][0]
    learner = auth_api.get("/api/v1/courses").json()["data"][0]

    assert (anonymous["isEnrolled"], stranger["isEnrolled"], learner["isEnrolled"]) == (
        False,
        False,
        True,
    )


@pytest.mark.parametrize(
    "header", ["Bearer not-a-real-token-but-long-enough", "Bearer short", "Token abc", "Bearer"]
)
def test_list_invalid_token_is_anonymous_not_401(api, header):
    CourseFactory()
    api.credentials(HTTP_AUTHORIZATION=header)

    response = api.get("/api/v1/courses")

    assert response.status_code == 200
    assert response.json()["data"][0]["isEnrolled"] is False


@pytest.mark.parametrize(
    "query, field",
    [
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "1.5"}, "page"),
        ({"page": "abc"}, "page"),
        ({"page": ""}, "page"),
        ({"limit": "0"}, "limit"),
        ({"limit": "51"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "1e3"}, "limit"),
        ({"difficulty": "expert"}, "difficulty"),
        ({"difficulty": ""}, "difficulty"),
        ({"difficulty": "BEGINNER"}, "difficulty"),
    ],
)
def test_list_bad_query_is_400(api, query, field):
    CourseFactory()
    before = row_counts()

    response = api.get("/api/v1/courses", query)

    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert field in body["details"]
    assert row_counts() == before


# GET /courses/{id}


def test_detail_shape_with_ordered_modules(api):
    course = CourseFactory(title="Soroban", content_hash="ab" * 32, difficulty="advanced")
    second = ModuleFactory(course=course, order=2, title="Second")
    first = ModuleFactory(course=course, order=1, title="First")
    third = ModuleFactory(course=course, order=3, title="No quiz yet")
    quiz_two = QuizFactory(module=second)
    quiz_one = QuizFactory(module=first)
    EnrollmentFactory(course=course)
    EnrollmentFactory(course=course, user=UserFactory())

    response = api.get(f"/api/v1/courses/{course.id}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "data", "meta"}
    data = body["data"]
    assert set(data) == DETAIL_KEYS
    assert data["id"] == str(course.id)
    assert data["title"] == "Soroban"
    assert data["difficulty"] == "advanced"
    assert data["isActive"] is True
    assert data["enrolledCount"] == 2
    assert data["contentHash"] == "ab" * 32
    assert data["isEnrolled"] is False
    assert data["createdAt"].endswith("Z")
    assert data["createdAt"].startswith(course.created_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert all(set(m) == MODULE_KEYS for m in data["modules"])
    assert data["modules"] == [
        {"id": str(first.id), "title": "First", "order": 1, "quizId": str(quiz_one.id)},
        {"id": str(second.id), "title": "Second", "order": 2, "quizId": str(quiz_two.id)},
        {"id": str(third.id), "title": "No quiz yet", "order": 3, "quizId": None},
    ]


def test_detail_null_content_hash_and_no_modules(api):
    course = CourseFactory(content_hash=None)

    data = api.get(f"/api/v1/courses/{course.id}").json()["data"]

    assert data["contentHash"] is None
    assert data["modules"] == []
    assert data["enrolledCount"] == 0


def test_detail_is_enrolled_for_the_caller(user, auth_api):
    course = CourseFactory()
    other = CourseFactory()
    EnrollmentFactory(user=user, course=course)

    assert auth_api.get(f"/api/v1/courses/{course.id}").json()["data"]["isEnrolled"] is True
    assert auth_api.get(f"/api/v1/courses/{other.id}").json()["data"]["isEnrolled"] is False


def test_detail_invalid_token_is_anonymous(api):
    course = CourseFactory()
    api.credentials(HTTP_AUTHORIZATION="Bearer " + "x" * 40)

    response = api.get(f"/api/v1/courses/{course.id}")

    assert response.status_code == 200
    assert response.json()["data"]["isEnrolled"] is False


def test_detail_unknown_is_404(api):
    assert_error(api.get(f"/api/v1/courses/{uuid.uuid4()}"), 404, "NOT_FOUND")


def test_detail_inactive_is_404(api, user, auth_api):
    course = CourseFactory(is_active=False)
    EnrollmentFactory(user=user, course=course)

    assert_error(api.get(f"/api/v1/courses/{course.id}"), 404, "NOT_FOUND")
    assert_error(auth_api.get(f"/api/v1/courses/{course.id}"), 404, "NOT_FOUND")


@pytest.mark.parametrize("raw", ["not-a-uuid", "123", "0" * 33, "%20"])
def test_detail_malformed_id_is_400(api, raw):
    body = assert_error(api.get(f"/api/v1/courses/{raw}"), 400, "VALIDATION_ERROR")
    assert "courseId" in body["details"]


# POST /courses/{id}/enroll


def test_enroll_creates_enrollment_with_exact_body(user, auth_api):
    course = CourseFactory()

    response = auth_api.post(f"/api/v1/courses/{course.id}/enroll")

    assert response.status_code == 201
    assert response.json() == {"success": True, "message": "Enrolled successfully"}
    enrollment = Enrollment.objects.get()
    assert (enrollment.user_id, enrollment.course_id, enrollment.completed_at) == (
        user.id,
        course.id,
        None,
    )


def test_enroll_is_visible_on_reads_at_once(api, user, auth_api):
    course = CourseFactory()
    assert auth_api.get(f"/api/v1/courses/{course.id}").json()["data"]["enrolledCount"] == 0
    assert api.get("/api/v1/courses").json()["data"][0]["enrolledCount"] == 0

    auth_api.post(f"/api/v1/courses/{course.id}/enroll")

    detail = auth_api.get(f"/api/v1/courses/{course.id}").json()["data"]
    assert (detail["enrolledCount"], detail["isEnrolled"]) == (1, True)
    listed = auth_api.get("/api/v1/courses").json()["data"][0]
    assert (listed["enrolledCount"], listed["isEnrolled"]) == (1, True)
    assert api.get("/api/v1/courses").json()["data"][0]["isEnrolled"] is False


def test_second_enroll_is_409_and_keeps_one_row(user, auth_api):
    course = CourseFactory()
    auth_api.post(f"/api/v1/courses/{course.id}/enroll")

    response = auth_api.post(f"/api/v1/courses/{course.id}/enroll")

    assert_error(response, 409, "CONFLICT")
    assert Enrollment.objects.filter(user=user, course=course).count() == 1


def test_enroll_other_learner_is_independent(user, auth_api):
    course = CourseFactory()
    EnrollmentFactory(course=course)

    assert auth_api.post(f"/api/v1/courses/{course.id}/enroll").status_code == 201
    assert Enrollment.objects.filter(course=course).count() == 2


def test_enroll_unknown_course_is_404(auth_api):
    before = row_counts()
    assert_error(auth_api.post(f"/api/v1/courses/{uuid.uuid4()}/enroll"), 404, "NOT_FOUND")
    assert row_counts() == before


def test_enroll_inactive_course_is_404(auth_api):
    course = CourseFactory(is_active=False)
    assert_error(auth_api.post(f"/api/v1/courses/{course.id}/enroll"), 404, "NOT_FOUND")
    assert Enrollment.objects.count() == 0


@pytest.mark.parametrize("header", [None, "Bearer " + "y" * 40, "Basic Zm9vOmJhcg=="])
def test_enroll_requires_auth(api, header):
    course = CourseFactory()
    if header:
        api.credentials(HTTP_AUTHORIZATION=header)

    assert_error(api.post(f"/api/v1/courses/{course.id}/enroll"), 401, "UNAUTHORIZED")
    assert Enrollment.objects.count() == 0


def test_enroll_with_revoked_token_is_401(user):
    course = CourseFactory()
    client = client_for(user)
    user.api_tokens.all().delete()

    assert_error(client.post(f"/api/v1/courses/{course.id}/enroll"), 401, "UNAUTHORIZED")
    assert Enrollment.objects.count() == 0


@pytest.mark.parametrize("raw", ["nope", "1", "g" * 32])
def test_enroll_malformed_id_is_400(auth_api, raw):
    CourseFactory()
    before = row_counts()

    body = assert_error(auth_api.post(f"/api/v1/courses/{raw}/enroll"), 400, "VALIDATION_ERROR")

    assert "courseId" in body["details"]
    assert row_counts() == before


def test_enroll_ignores_a_body(user, auth_api):
    course = CourseFactory()

    response = auth_api.post(
        f"/api/v1/courses/{course.id}/enroll", {"userId": str(uuid.uuid4())}, format="json"
    )

    assert response.status_code == 201
    assert Enrollment.objects.get().user_id == user.id


def test_enroll_get_is_405(auth_api):
    course = CourseFactory()
    response = auth_api.get(f"/api/v1/courses/{course.id}/enroll")
    assert response.status_code == 405
    assert Enrollment.objects.count() == 0


# Query-count pins: the uncached selectors (CACHE_ENABLED=False), at two data sizes.


def populate(courses: int) -> tuple:
    """``courses`` active courses (+ inactive noise), each with modules and enrollments."""
    learner, other = UserFactory(), UserFactory()
    made = []
    for index in range(courses):
        course = course_with_modules(2, difficulty="beginner" if index % 2 else "advanced")
        EnrollmentFactory(course=course, user=other)
        if index % 3 == 0:
            EnrollmentFactory(course=course, user=learner)
        made.append(course)
    CourseFactory(is_active=False)
    return learner, made


@pytest.mark.parametrize("size", [3, 60])
def test_list_query_count_anonymous(api, settings, django_assert_num_queries, size):
    settings.CACHE_ENABLED = False
    populate(size)

    with django_assert_num_queries(2):
        response = api.get("/api/v1/courses", {"limit": 50})

    assert len(response.json()["data"]) == min(size, 50)
    assert all(c["enrolledCount"] >= 1 for c in response.json()["data"])


@pytest.mark.parametrize("size", [3, 60])
def test_list_query_count_authenticated(settings, django_assert_num_queries, size):
    settings.CACHE_ENABLED = False
    learner, _ = populate(size)
    client = client_for(learner)

    # token lookup + COUNT + page + the caller's enrollments among the page
    with django_assert_num_queries(4):
        response = client.get("/api/v1/courses", {"limit": 50, "difficulty": "advanced"})

    data = response.json()["data"]
    assert data and any(c["isEnrolled"] for c in data)


@pytest.mark.parametrize("size", [3, 60])
def test_detail_query_count(api, settings, django_assert_num_queries, size):
    settings.CACHE_ENABLED = False
    learner, made = populate(size)
    target = made[0]
    client = client_for(learner)

    with django_assert_num_queries(2):
        anonymous = api.get(f"/api/v1/courses/{target.id}")
    with django_assert_num_queries(4):
        authenticated = client.get(f"/api/v1/courses/{target.id}")

    assert len(anonymous.json()["data"]["modules"]) == 2
    assert authenticated.json()["data"]["isEnrolled"] is True


def test_detail_unknown_query_count(api, settings, django_assert_num_queries):
    settings.CACHE_ENABLED = False
    populate(3)

    with django_assert_num_queries(1):
        assert api.get(f"/api/v1/courses/{uuid.uuid4()}").status_code == 404
