"""Property 2: every row of the invalidation matrix, through the API and through
``QuerySet.update``; the next read after a committed write shows the new data, and a
rolled-back write invalidates nothing. (Admin write paths: test_cache_invalidation_admin.)"""

import pytest
from django.db import transaction

from caching import keys
from courses.models import Course, Enrollment, Module, Quiz
from credentials.models import Credential
from tests.conftest import client_for
from tests.factories import (
    CredentialFactory,
    EnrollmentFactory,
    QuizSubmissionFactory,
    RewardFactory,
    UserFactory,
    course_with_modules,
)
from tests.helpers import redis_keys
from tests.helpers import revalidated as data

pytestmark = pytest.mark.django_db(transaction=True)

ALL_ANSWERS_RIGHT = {"answers": [{"questionId": f"q{i}", "selectedIndex": 1} for i in range(1, 6)]}


def cached(client, path, django_assert_num_queries, queries):
    """Read twice; the second read must be a hit (``queries`` = the per-request SQL)."""
    first = data(client, path)
    with django_assert_num_queries(queries):
        assert data(client, path) == first
    return first


def list_item(items, course):
    return next(item for item in items if item["id"] == str(course.id))


@pytest.fixture
def course():
    return course_with_modules(2, title="Original title")


@pytest.fixture
def learner():
    return UserFactory()


# --- course created, edited, deactivated, deleted -------------------------------------


def test_course_created_shows_in_cached_list(api, course, django_assert_num_queries):
    cached(api, "/api/v1/courses", django_assert_num_queries, 0)
    new = course_with_modules(1, title="Brand new")
    assert data(api, "/api/v1/courses")[0]["id"] == str(new.id)


def test_course_edit_refreshes_list_detail_history_and_credentials(
    course, learner, django_assert_num_queries
):
    client = client_for(learner)
    EnrollmentFactory(user=learner, course=course)
    RewardFactory(submission=QuizSubmissionFactory(user=learner, quiz=course.modules.first().quiz))
    CredentialFactory(user=learner, course=course)
    paths = [
        "/api/v1/courses",
        f"/api/v1/courses/{course.id}",
        "/api/v1/rewards/history",
        "/api/v1/credentials",
    ]
    for path in paths:
        data(client, path)

    course.title = "Edited title"
    course.save(update_fields=["title", "updated_at"])

    assert list_item(data(client, paths[0]), course)["title"] == "Edited title"
    assert data(client, paths[1])["title"] == "Edited title"
    assert data(client, paths[2])[0]["courseTitle"] == "Edited title"
    assert data(client, paths[3])[0]["courseTitle"] == "Edited title"


def test_course_deactivated_disappears(api, course, django_assert_num_queries):
    cached(api, "/api/v1/courses", django_assert_num_queries, 0)
    cached(api, f"/api/v1/courses/{course.id}", django_assert_num_queries, 0)

    course.is_active = False
    course.save(update_fields=["is_active", "updated_at"])

    assert data(api, "/api/v1/courses") == []
    assert api.get(f"/api/v1/courses/{course.id}").status_code == 404


def test_course_deleted_disappears(api, course):
    data(api, "/api/v1/courses")
    path = f"/api/v1/courses/{course.id}"
    data(api, path)
    course.delete()
    assert data(api, "/api/v1/courses") == []
    assert api.get(path).status_code == 404


def test_queryset_update_of_courses_invalidates(api, course):
    data(api, "/api/v1/courses")
    data(api, f"/api/v1/courses/{course.id}")

    Course.objects.filter(pk=course.pk).update(title="Bulk edited")

    assert data(api, "/api/v1/courses")[0]["title"] == "Bulk edited"
    assert data(api, f"/api/v1/courses/{course.id}")["title"] == "Bulk edited"


def test_bulk_create_of_courses_invalidates_the_list(api, course):
    data(api, "/api/v1/courses")
    Course.objects.bulk_create([Course(title="Bulk", difficulty="beginner")])
    assert {item["title"] for item in data(api, "/api/v1/courses")} == {"Original title", "Bulk"}


# --- module or quiz created, edited, deleted -----------------------------------------


def test_module_created_edited_deleted_refresh_detail(api, course):
    path = f"/api/v1/courses/{course.id}"
    data(api, path)
    module = Module.objects.create(course=course, title="Third", order=3)
    assert [m["title"] for m in data(api, path)["modules"]][-1] == "Third"

    module.title = "Third, renamed"
    module.save(update_fields=["title"])
    assert data(api, path)["modules"][-1]["title"] == "Third, renamed"

    module.delete()
    assert len(data(api, path)["modules"]) == 2


def test_quiz_created_and_deleted_refresh_detail(api, course):
    path = f"/api/v1/courses/{course.id}"
    module = Module.objects.create(course=course, title="Third", order=3)
    assert data(api, path)["modules"][-1]["quizId"] is None
    quiz = Quiz.objects.create(module=module, questions=[])
    assert data(api, path)["modules"][-1]["quizId"] == str(quiz.id)
    quiz.delete()
    assert data(api, path)["modules"][-1]["quizId"] is None


# --- enrollment created or deleted ---------------------------------------------------


def test_enroll_through_api_refreshes_counts_and_progress(course, learner, api):
    client = client_for(learner)
    data(api, "/api/v1/courses")
    data(api, f"/api/v1/courses/{course.id}")
    assert data(client, "/api/v1/users/me/progress")["enrolledCourses"] == 0

    assert client.post(f"/api/v1/courses/{course.id}/enroll").status_code == 201

    assert list_item(data(api, "/api/v1/courses"), course)["enrolledCount"] == 1
    assert data(api, f"/api/v1/courses/{course.id}")["enrolledCount"] == 1
    assert data(client, "/api/v1/users/me/progress")["enrolledCourses"] == 1
    assert data(client, f"/api/v1/courses/{course.id}")["isEnrolled"] is True


def test_enrollment_deleted_refreshes_counts_and_progress(course, learner, api):
    enrollment = EnrollmentFactory(user=learner, course=course)
    client = client_for(learner)
    assert data(api, f"/api/v1/courses/{course.id}")["enrolledCount"] == 1
    assert data(client, "/api/v1/users/me/progress")["enrolledCourses"] == 1

    enrollment.delete()

    assert data(api, f"/api/v1/courses/{course.id}")["enrolledCount"] == 0
    assert list_item(data(api, "/api/v1/courses"), course)["enrolledCount"] == 0
    assert data(client, "/api/v1/users/me/progress")["enrolledCourses"] == 0


def test_queryset_update_of_enrollments_invalidates_progress(course, learner):
    EnrollmentFactory(user=learner, course=course)
    client = client_for(learner)
    assert data(client, "/api/v1/users/me/progress")["completedCourses"] == 0

    Enrollment.objects.filter(user=learner).update(completed_at="2026-01-01T00:00:00Z")

    assert data(client, "/api/v1/users/me/progress")["completedCourses"] == 1


# --- quiz submission and the completion it causes ------------------------------------


def test_submissions_and_completion_refresh_progress(course, learner):
    client = client_for(learner)
    client.post(f"/api/v1/courses/{course.id}/enroll")
    before = data(client, "/api/v1/users/me/progress")
    assert (before["totalQuizScore"], before["completedCourses"]) == (0, 0)

    for module in course.modules.order_by("order"):
        response = client.post(
            f"/api/v1/quizzes/{module.quiz.id}/submit", ALL_ANSWERS_RIGHT, format="json"
        )
        assert response.status_code == 200, response.content

    after = data(client, "/api/v1/users/me/progress")
    assert (after["totalQuizScore"], after["completedCourses"]) == (10, 1)


# --- reward claimed ------------------------------------------------------------------


def test_claim_refreshes_progress_every_history_page_and_profile(course, learner):
    client = client_for(learner)
    client.post(f"/api/v1/courses/{course.id}/enroll")
    submissions = []
    for module in course.modules.order_by("order"):
        response = client.post(
            f"/api/v1/quizzes/{module.quiz.id}/submit", ALL_ANSWERS_RIGHT, format="json"
        )
        submissions.append(response.json()["data"]["id"])
    client.post("/api/v1/rewards/claim", {"submissionId": submissions[0]}, format="json")
    pages = [
        "/api/v1/rewards/history",
        "/api/v1/rewards/history?page=1&limit=1",
        "/api/v1/rewards/history?page=2&limit=1",
    ]
    assert [len(data(client, p)) for p in pages] == [1, 1, 0]
    assert data(client, "/api/v1/users/me/progress")["rewardsClaimed"] == 1
    assert data(client, "/api/v1/users/me")["credits"] == 10

    response = client.post("/api/v1/rewards/claim", {"submissionId": submissions[1]}, format="json")
    assert response.status_code == 200

    assert [len(data(client, p)) for p in pages] == [2, 1, 1]
    assert data(client, "/api/v1/users/me/progress")["rewardsClaimed"] == 2
    assert data(client, "/api/v1/users/me")["credits"] == 20


# --- credential minted or revoked ----------------------------------------------------


def test_mint_and_revoke_refresh_credentials_and_progress(course, learner):
    client = client_for(learner)
    client.post(f"/api/v1/courses/{course.id}/enroll")
    for module in course.modules.order_by("order"):
        client.post(f"/api/v1/quizzes/{module.quiz.id}/submit", ALL_ANSWERS_RIGHT, format="json")
    assert data(client, "/api/v1/credentials") == []
    assert data(client, "/api/v1/users/me/progress")["credentialsEarned"] == 0

    response = client.post("/api/v1/credentials/mint", {"courseId": str(course.id)}, format="json")
    assert response.status_code == 201, response.content

    [credential] = data(client, "/api/v1/credentials")
    assert credential["revoked"] is False
    assert data(client, "/api/v1/users/me/progress")["credentialsEarned"] == 1

    Credential.objects.filter(pk=credential["id"]).update(
        revoked=True, revoked_at="2026-01-01T00:00:00Z"
    )

    assert data(client, "/api/v1/credentials")[0]["revoked"] is True
    assert data(client, "/api/v1/users/me/progress")["credentialsEarned"] == 0


# --- user profile edited ---------------------------------------------------------------


def test_profile_edit_is_visible_at_once(learner):
    client = client_for(learner)
    data(client, "/api/v1/users/me")
    response = client.put("/api/v1/users/me", {"displayName": "New Name"}, format="json")
    assert response.status_code == 200
    assert data(client, "/api/v1/users/me")["displayName"] == "New Name"


# --- rollback ------------------------------------------------------------------------------


def test_rolled_back_write_invalidates_nothing(api, course, redis_client):
    data(api, "/api/v1/courses")
    data(api, f"/api/v1/courses/{course.id}")
    generations = {k: redis_client.get(k) for k in redis_keys(redis_client, "chainlearn:*:gen:*")}

    with pytest.raises(RuntimeError), transaction.atomic():
        course.title = "Never committed"
        course.save(update_fields=["title"])
        EnrollmentFactory(course=course)
        raise RuntimeError("roll back")

    assert {
        k: redis_client.get(k) for k in redis_keys(redis_client, "chainlearn:*:gen:*")
    } == generations
    assert data(api, f"/api/v1/courses/{course.id}")["title"] == "Original title"


def test_invalidation_waits_for_commit(api, course):
    """Inside the transaction the old entry is still served; after commit, the new one."""
    path = f"/api/v1/courses/{course.id}"
    data(api, path)
    with transaction.atomic():
        course.title = "Committed later"
        course.save(update_fields=["title"])
        served_inside = api.get(path).json()["data"]["title"]
    assert served_inside == "Original title"
    assert data(api, path)["title"] == "Committed later"


def test_a_course_edit_is_one_increment_per_generation(course, redis_client):
    list_gen = keys.generation_key("courses:list", 0)  # one of each shard's, all bumped
    detail_gen = keys.generation_key(
        "courses:detail", keys.shard_of(str(course.id), ""), str(course.id)
    )
    before = int(redis_client.get(list_gen)), int(redis_client.get(detail_gen))
    course.title = "x"
    course.save(update_fields=["title"])
    after = int(redis_client.get(list_gen)), int(redis_client.get(detail_gen))
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
