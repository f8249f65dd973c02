"""Property 2 through the Django admin: every edit made there is visible on the API at once.

The admin posts the same change forms a staff user would; the cached reads are primed
first and must show the edit on the next request.
"""

import json

import pytest
from django.test import Client

from tests.conftest import client_for
from tests.factories import (
    CredentialFactory,
    EnrollmentFactory,
    UserFactory,
    course_with_modules,
    learner_with_history,
    make_questions,
)
from tests.helpers import management
from tests.helpers import revalidated as data

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client():
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def course_change_form(course, **overrides):
    modules = list(course.modules.order_by("order"))
    form = {
        "title": course.title,
        "description": course.description,
        "difficulty": course.difficulty,
        "content_hash": course.content_hash or "",
        "is_active": "on" if course.is_active else "",
        **management("modules", len(modules), initial=len(modules)),
        "_save": "Save",
    }
    for i, module in enumerate(modules):
        form.update(
            {
                f"modules-{i}-id": str(module.id),
                f"modules-{i}-course": str(course.id),
                f"modules-{i}-order": str(module.order),
                f"modules-{i}-title": module.title,
                f"modules-{i}-description": module.description,
            }
        )
    form.update(overrides)
    return form


def post_ok(admin_client, url, form):
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.context and response.context.get("errors")
    return response


def test_admin_course_edit_refreshes_every_entry_showing_it(admin_client):
    course = course_with_modules(2, title="Before admin")
    learner = learner_with_history(course)
    client = client_for(learner)
    paths = [
        "/api/v1/courses",
        f"/api/v1/courses/{course.id}",
        "/api/v1/rewards/history",
        "/api/v1/credentials",
    ]
    for path in paths:
        data(client, path)

    post_ok(
        admin_client,
        f"/admin/courses/course/{course.id}/change/",
        course_change_form(course, title="After admin"),
    )

    assert data(client, paths[0])[0]["title"] == "After admin"
    assert data(client, paths[1])["title"] == "After admin"
    assert data(client, paths[2])[0]["courseTitle"] == "After admin"
    assert data(client, paths[3])[0]["courseTitle"] == "After admin"


def test_admin_deactivate_hides_course(admin_client, api):
    course = course_with_modules(1)
    data(api, "/api/v1/courses")
    data(api, f"/api/v1/courses/{course.id}")

    post_ok(
        admin_client,
        f"/admin/courses/course/{course.id}/change/",
        course_change_form(course, is_active=""),
    )

    assert data(api, "/api/v1/courses") == []
    assert api.get(f"/api/v1/courses/{course.id}").status_code == 404


def test_admin_deactivate_action_hides_course(admin_client, api):
    course = course_with_modules(1)
    data(api, "/api/v1/courses")
    post_ok(
        admin_client,
        "/admin/courses/course/",
        {"action": "deactivate", "_selected_action": [str(course.id)]},
    )
    assert data(api, "/api/v1/courses") == []


def test_admin_course_delete(admin_client, api):
    course = course_with_modules(1)
    path = f"/api/v1/courses/{course.id}"
    data(api, path)
    data(api, "/api/v1/courses")
    post_ok(admin_client, f"/admin/courses/course/{course.id}/delete/", {"post": "yes"})
    assert api.get(path).status_code == 404
    assert data(api, "/api/v1/courses") == []


def test_admin_inline_module_edit_add_and_delete_refresh_detail(admin_client, api):
    course = course_with_modules(2)
    path = f"/api/v1/courses/{course.id}"
    data(api, path)
    form = course_change_form(course, **{"modules-0-title": "Renamed inline"})
    post_ok(admin_client, f"/admin/courses/course/{course.id}/change/", form)
    assert data(api, path)["modules"][0]["title"] == "Renamed inline"

    course.refresh_from_db()
    form = course_change_form(course, **{"modules-1-DELETE": "on"})
    post_ok(admin_client, f"/admin/courses/course/{course.id}/change/", form)
    assert [m["order"] for m in data(api, path)["modules"]] == [1]

    course.refresh_from_db()
    form = course_change_form(course)
    form.update(management("modules", 2, initial=1))
    form.update(
        {
            "modules-1-id": "",
            "modules-1-course": str(course.id),
            "modules-1-order": "5",
            "modules-1-title": "Added inline",
            "modules-1-description": "",
        }
    )
    post_ok(admin_client, f"/admin/courses/course/{course.id}/change/", form)
    assert data(api, path)["modules"][-1]["title"] == "Added inline"


def test_admin_quiz_delete_refreshes_detail(admin_client, api):
    course = course_with_modules(1)
    quiz = course.modules.get().quiz
    path = f"/api/v1/courses/{course.id}"
    assert data(api, path)["modules"][0]["quizId"] == str(quiz.id)
    post_ok(admin_client, f"/admin/courses/quiz/{quiz.id}/delete/", {"post": "yes"})
    assert data(api, path)["modules"][0]["quizId"] is None


def test_admin_quiz_edit_is_served_at_once(admin_client):
    course = course_with_modules(1)
    quiz = course.modules.get().quiz
    learner = UserFactory()
    EnrollmentFactory(user=learner, course=course)
    client = client_for(learner)
    assert len(data(client, f"/api/v1/quizzes/{quiz.id}")["questions"]) == 5
    questions = make_questions(3)
    post_ok(
        admin_client,
        f"/admin/courses/quiz/{quiz.id}/change/",
        {"module": str(quiz.module_id), "questions": json.dumps(questions), "_save": "Save"},
    )
    assert len(data(client, f"/api/v1/quizzes/{quiz.id}")["questions"]) == 3


def test_admin_enrollment_delete_refreshes_counts_and_progress(admin_client, api):
    course = course_with_modules(1)
    learner = UserFactory()
    enrollment = EnrollmentFactory(user=learner, course=course)
    client = client_for(learner)
    assert data(api, f"/api/v1/courses/{course.id}")["enrolledCount"] == 1
    assert data(api, "/api/v1/courses")[0]["enrolledCount"] == 1
    assert data(client, "/api/v1/users/me/progress")["enrolledCourses"] == 1

    post_ok(admin_client, f"/admin/courses/enrollment/{enrollment.id}/delete/", {"post": "yes"})

    assert data(api, f"/api/v1/courses/{course.id}")["enrolledCount"] == 0
    assert data(api, "/api/v1/courses")[0]["enrolledCount"] == 0
    assert data(client, "/api/v1/users/me/progress")["enrolledCourses"] == 0


def test_admin_revoke_action_refreshes_credentials_and_progress(admin_client):
    learner = UserFactory()
    credential = CredentialFactory(user=learner)
    client = client_for(learner)
    assert data(client, "/api/v1/credentials")[0]["revoked"] is False
    assert data(client, "/api/v1/users/me/progress")["credentialsEarned"] == 1

    post_ok(
        admin_client,
        "/admin/credentials/credential/",
        {"action": "revoke_selected", "_selected_action": [str(credential.id)]},
    )

    assert data(client, "/api/v1/credentials")[0]["revoked"] is True
    assert data(client, "/api/v1/users/me/progress")["credentialsEarned"] == 0
