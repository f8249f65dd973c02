"""The courses admin: authoring with inlines, quiz JSON validation, read-mostly activity."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from courses.models import Course, Enrollment, Module, Quiz
from tests.factories import (
    CourseFactory,
    EnrollmentFactory,
    ModuleFactory,
    QuizFactory,
    QuizSubmissionFactory,
    UserFactory,
    course_with_modules,
    make_questions,
)
from tests.helpers import management, row_counts

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client() -> Client:
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    return client


def course_form(**overrides) -> dict:
    data = {
        "title": "Stellar Basics",
        "description": "Accounts, assets and payments.",
        "difficulty": "beginner",
        "content_hash": "",
        "is_active": "on",
        **management("modules", 2),
        "modules-0-id": "",
        "modules-0-course": "",
        "modules-0-order": "1",
        "modules-0-title": "Accounts",
        "modules-0-description": "Keys and accounts",
        "modules-1-id": "",
        "modules-1-course": "",
        "modules-1-order": "2",
        "modules-1-title": "Payments",
        "modules-1-description": "",
        "_save": "Save",
    }
    data.update(overrides)
    return data


def quiz_form(quiz: Quiz, questions) -> dict:
    text = questions if isinstance(questions, str) else json.dumps(questions)
    return {"module": str(quiz.module_id), "questions": text, "_save": "Save"}


def form_errors(response) -> dict:
    return response.context["adminform"].form.errors


# Course with inline modules


def test_add_course_with_two_inline_modules(admin_client, api):
    response = admin_client.post("/admin/courses/course/add/", course_form())

    assert response.status_code == 302, response.context and response.context["errors"]
    course = Course.objects.get()
    assert (course.title, course.difficulty, course.is_active, course.content_hash) == (
        "Stellar Basics",
        "beginner",
        True,
        None,
    )
    assert list(course.modules.values_list("order", "title")) == [(1, "Accounts"), (2, "Payments")]
    detail = api.get(f"/api/v1/courses/{course.id}").json()["data"]
    assert [(m["order"], m["title"], m["quizId"]) for m in detail["modules"]] == [
        (1, "Accounts", None),
        (2, "Payments", None),
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {"modules-1-order": "1"},
        {"modules-1-order": "0"},
        {"modules-0-title": ""},
        {"difficulty": "expert"},
        {"title": ""},
    ],
)
def test_add_course_with_invalid_data_creates_nothing(admin_client, overrides):
    before = row_counts()

    response = admin_client.post("/admin/courses/course/add/", course_form(**overrides))

    assert response.status_code == 200
    assert response.context["errors"]
    assert row_counts() == before


def test_edit_course_in_admin_is_visible_on_the_api(admin_client, api):
    course = CourseFactory(title="Before")
    module = ModuleFactory(course=course, order=1, title="Only")
    assert api.get(f"/api/v1/courses/{course.id}").json()["data"]["title"] == "Before"
    assert api.get("/api/v1/courses").json()["data"][0]["title"] == "Before"
    data = course_form(
        title="After",
        **management("modules", 1, initial=1),
        **{
            "modules-0-id": str(module.id),
            "modules-0-course": str(course.id),
            "modules-0-order": "1",
            "modules-0-title": "Renamed",
        },
    )
    for key in [k for k in data if k.startswith("modules-1-")]:
        del data[key]

    response = admin_client.post(f"/admin/courses/course/{course.id}/change/", data)

    assert response.status_code == 302
    detail = api.get(f"/api/v1/courses/{course.id}").json()["data"]
    assert detail["title"] == "After"
    assert detail["modules"][0]["title"] == "Renamed"
    assert api.get("/api/v1/courses").json()["data"][0]["title"] == "After"


def test_deactivate_action_saves_each_course(admin_client, api):
    keep, hide = CourseFactory(), CourseFactory()
    assert len(api.get("/api/v1/courses").json()["data"]) == 2

    response = admin_client.post(
        "/admin/courses/course/", {"action": "deactivate", "_selected_action": [str(hide.id)]}
    )

    assert response.status_code == 302
    hide.refresh_from_db()
    keep.refresh_from_db()
    assert (hide.is_active, keep.is_active) == (False, True)
    assert [c["id"] for c in api.get("/api/v1/courses").json()["data"]] == [str(keep.id)]
    assert api.get(f"/api/v1/courses/{hide.id}").status_code == 404


# Quiz questions as validated JSON


def test_edit_quiz_questions(admin_client):
    quiz = QuizFactory()
    questions = [
        {"id": "a", "text": "2 + 2?", "options": ["3", "4"], "correctIndex": 1},
        {"id": "b", "text": "Capital of France?", "options": ["Paris"], "correctIndex": 0},
    ]

    response = admin_client.post(
        f"/admin/courses/quiz/{quiz.id}/change/", quiz_form(quiz, questions)
    )

    assert response.status_code == 302
    quiz.refresh_from_db()
    assert quiz.questions == questions


def test_quiz_change_form_shows_questions_as_indented_json(admin_client):
    quiz = QuizFactory()

    response = admin_client.get(f"/admin/courses/quiz/{quiz.id}/change/")

    assert response.status_code == 200
    shown = response.context["adminform"].form["questions"].value()
    assert json.loads(shown) == make_questions()
    assert '\n    "correctIndex": 1' in shown


def question(**overrides):
    base = {"id": "q1", "text": "Why?", "options": ["a", "b"], "correctIndex": 0}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize(
    "questions, message",
    [
        ('[{"id": "q1",', "valid JSON"),
        ("not json at all", "valid JSON"),
        ({"id": "q1"}, "must be a JSON list"),
        ('"q1"', "must be a JSON list"),
        ([], "required"),
        (["q1"], "must be an object"),
        ([question(id=...)], "missing id"),
        ([question(text=...)], "missing text"),
        ([question(options=...)], "missing options"),
        ([question(correctIndex=...)], "missing correctIndex"),
        ([question(id="")], "id must be a non-empty string"),
        ([question(id=7)], "id must be a non-empty string"),
        ([question(text=" ")], "text must be a non-empty string"),
        ([question(options=[])], "options must be a non-empty list of strings"),
        ([question(options="ab")], "options must be a non-empty list of strings"),
        ([question(options=["a", 2])], "options must be a non-empty list of strings"),
        ([question(correctIndex=2)], "correctIndex must be an integer between 0 and 1"),
        ([question(correctIndex=-1)], "correctIndex must be an integer between 0 and 1"),
        ([question(correctIndex="0")], "correctIndex must be an integer"),
        ([question(correctIndex=True)], "correctIndex must be an integer"),
        ([question(correctIndex=0.0)], "correctIndex must be an integer"),
        ([question(), question(text="Again")], "Duplicate question ids: q1"),
        ([question(hint="x")], "unknown keys hint"),
        ([question(id=f"q{i}") for i in range(51)], "at most 50 questions"),
    ],
)
def test_invalid_quiz_questions_are_a_form_error(admin_client, questions, message):
    quiz = QuizFactory()
    original = quiz.questions

    response = admin_client.post(
        f"/admin/courses/quiz/{quiz.id}/change/", quiz_form(quiz, questions)
    )

    assert response.status_code == 200
    errors = form_errors(response)
    assert "questions" in errors
    assert message in " ".join(errors["questions"])
    quiz.refresh_from_db()
    assert quiz.questions == original


def test_add_quiz_through_the_module_inline(admin_client, api):
    course = CourseFactory()
    module = ModuleFactory(course=course, order=1, title="Intro")
    questions = [question()]
    data = {
        "course": str(course.id),
        "order": "1",
        "title": "Intro",
        "description": "",
        **management("quiz", 1, maximum=1),
        "quiz-0-id": "",
        "quiz-0-module": str(module.id),
        "quiz-0-questions": json.dumps(questions),
        "_save": "Save",
    }

    response = admin_client.post(f"/admin/courses/module/{module.id}/change/", data)

    assert response.status_code == 302, response.context and response.context["errors"]
    quiz = Quiz.objects.get(module=module)
    assert quiz.questions == questions
    modules = api.get(f"/api/v1/courses/{course.id}").json()["data"]["modules"]
    assert modules[0]["quizId"] == str(quiz.id)


def test_invalid_questions_in_the_module_inline_change_nothing(admin_client):
    module = ModuleFactory(order=1)
    before = row_counts()
    data = {
        "course": str(module.course_id),
        "order": "1",
        "title": "Changed title",
        "description": "",
        **management("quiz", 1, maximum=1),
        "quiz-0-id": "",
        "quiz-0-module": str(module.id),
        "quiz-0-questions": json.dumps([question(correctIndex=5)]),
        "_save": "Save",
    }

    response = admin_client.post(f"/admin/courses/module/{module.id}/change/", data)

    assert response.status_code == 200
    assert response.context["errors"]
    assert row_counts() == before
    module.refresh_from_db()
    assert module.title != "Changed title"


# Changelists and read-mostly learner activity


@pytest.mark.parametrize("model", ["course", "module", "quiz", "enrollment", "quizsubmission"])
def test_changelists_render(admin_client, model):
    course = course_with_modules(2)
    enrollment = EnrollmentFactory(course=course)
    QuizSubmissionFactory(quiz=course.modules.first().quiz, user=enrollment.user)

    assert admin_client.get(f"/admin/courses/{model}/").status_code == 200
    assert admin_client.get(f"/admin/courses/{model}/", {"q": "Course"}).status_code == 200


def test_enrollments_and_submissions_cannot_be_added_or_edited(admin_client):
    enrollment = EnrollmentFactory()
    submission = QuizSubmissionFactory(user=enrollment.user, score=1, total_questions=5)

    assert admin_client.get("/admin/courses/enrollment/add/").status_code == 403
    assert admin_client.get("/admin/courses/quizsubmission/add/").status_code == 403
    admin_client.post(
        f"/admin/courses/quizsubmission/{submission.id}/change/",
        {"score": "5", "percentage": "100", "passed": "on", "total_questions": "5"},
    )
    submission.refresh_from_db()
    assert (submission.score, submission.passed) == (1, False)
    view = admin_client.get(f"/admin/courses/enrollment/{enrollment.id}/change/")
    assert view.status_code == 200
    assert not view.context["has_change_permission"]


def test_deleting_an_enrollment_in_admin_is_visible_on_the_api(admin_client, api):
    course = CourseFactory()
    enrollment = EnrollmentFactory(course=course)
    assert api.get(f"/api/v1/courses/{course.id}").json()["data"]["enrolledCount"] == 1

    response = admin_client.post(
        f"/admin/courses/enrollment/{enrollment.id}/delete/", {"post": "yes"}
    )

    assert response.status_code == 302
    assert Enrollment.objects.count() == 0
    assert api.get(f"/api/v1/courses/{course.id}").json()["data"]["enrolledCount"] == 0
    assert api.get("/api/v1/courses").json()["data"][0]["enrolledCount"] == 0


def test_deleting_a_module_in_admin_removes_it_from_the_detail(admin_client, api):
    course = course_with_modules(2)
    doomed = course.modules.get(order=2)
    assert len(api.get(f"/api/v1/courses/{course.id}").json()["data"]["modules"]) == 2

    response = admin_client.post(f"/admin/courses/module/{doomed.id}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Module.objects.filter(pk=doomed.pk).exists()
    assert len(api.get(f"/api/v1/courses/{course.id}").json()["data"]["modules"]) == 1
