"""GET /quizzes/{id} and POST /quizzes/{id}/submit: access, grading, completion."""

from __future__ import annotations

import json
import uuid

import pytest

from courses.models import Enrollment, QuizSubmission
from tests.conftest import client_for
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
from tests.helpers import assert_error, row_counts

pytestmark = pytest.mark.django_db(transaction=True)

RESULT_KEYS = {"id", "score", "totalQuestions", "percentage", "passed", "rewardAvailable"}


def answers(*pairs: tuple[str, int]) -> dict:
    return {"answers": [{"questionId": q, "selectedIndex": i} for q, i in pairs]}


def all_correct(count: int = 5) -> dict:
    return answers(*[(f"q{i}", 1) for i in range(1, count + 1)])


@pytest.fixture
def quiz(user):
    """A 5-question quiz (correct index always 1) in a course ``user`` is enrolled in."""
    quiz = QuizFactory()
    EnrollmentFactory(user=user, course=quiz.module.course)
    return quiz


def submit(client, quiz, body):
    return client.post(f"/api/v1/quizzes/{quiz.id}/submit", body, format="json")


# GET /quizzes/{id}


def test_quiz_shape_never_leaks_correct_index(auth_api, quiz):
    response = auth_api.get(f"/api/v1/quizzes/{quiz.id}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "data", "meta"}
    assert body["data"] == {
        "id": str(quiz.id),
        "moduleId": str(quiz.module_id),
        "courseId": str(quiz.module.course_id),
        "questions": [
            {"id": f"q{i}", "text": f"Question {i}?", "options": ["a", "b", "c", "d"]}
            for i in range(1, 6)
        ],
    }
    assert "correctIndex" not in response.content.decode()


def test_quiz_requires_auth(api, quiz):
    assert_error(api.get(f"/api/v1/quizzes/{quiz.id}"), 401, "UNAUTHORIZED")
    api.credentials(HTTP_AUTHORIZATION="Bearer " + "z" * 40)
    assert_error(api.get(f"/api/v1/quizzes/{quiz.id}"), 401, "UNAUTHORIZED")


def test_quiz_requires_enrollment_in_its_course(auth_api, user):
    quiz = QuizFactory()
    EnrollmentFactory(user=user, course=CourseFactory())

    body = assert_error(auth_api.get(f"/api/v1/quizzes/{quiz.id}"), 403, "FORBIDDEN")

    assert "correctIndex" not in json.dumps(body) and "Question" not in json.dumps(body)


def test_quiz_unknown_is_404(auth_api):
    assert_error(auth_api.get(f"/api/v1/quizzes/{uuid.uuid4()}"), 404, "NOT_FOUND")


def test_quiz_of_inactive_course_is_404(auth_api, quiz):
    course = quiz.module.course
    course.is_active = False
    course.save(update_fields=["is_active"])

    assert_error(auth_api.get(f"/api/v1/quizzes/{quiz.id}"), 404, "NOT_FOUND")


@pytest.mark.parametrize("raw", ["quiz-1", "42", "x" * 36])
def test_quiz_malformed_id_is_400(auth_api, raw):
    body = assert_error(auth_api.get(f"/api/v1/quizzes/{raw}"), 400, "VALIDATION_ERROR")
    assert "quizId" in body["details"]


def test_quiz_read_query_count(auth_api, quiz, django_assert_num_queries):
    # token lookup + the quiz joined with the caller's enrollment
    with django_assert_num_queries(2):
        assert auth_api.get(f"/api/v1/quizzes/{quiz.id}").status_code == 200


# POST /quizzes/{id}/submit: shape and persistence


def test_submit_all_correct(user, auth_api, quiz):
    response = submit(auth_api, quiz, all_correct())

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "data", "meta"}
    data = body["data"]
    assert set(data) == RESULT_KEYS
    submission = QuizSubmission.objects.get()
    assert data == {
        "id": str(submission.id),
        "score": 5,
        "totalQuestions": 5,
        "percentage": 100,
        "passed": True,
        "rewardAvailable": True,
    }
    assert (submission.user_id, submission.quiz_id, submission.score, submission.passed) == (
        user.id,
        quiz.id,
        5,
        True,
    )
    assert submission.answers == all_correct()["answers"]


def test_submit_failing(auth_api, quiz):
    body = answers(("q1", 1), ("q2", 1), ("q3", 0), ("q4", 2), ("q5", 3))

    data = submit(auth_api, quiz, body).json()["data"]

    assert (data["score"], data["percentage"], data["passed"], data["rewardAvailable"]) == (
        2,
        40,
        False,
        False,
    )
    assert QuizSubmission.objects.get().passed is False


def test_second_submission_is_409_and_keeps_the_first(auth_api, quiz):
    submit(auth_api, quiz, answers(("q1", 0)))

    response = submit(auth_api, quiz, all_correct())

    assert_error(response, 409, "CONFLICT")
    submission = QuizSubmission.objects.get()
    assert (submission.score, submission.passed) == (0, False)


def test_submit_requires_auth(api, quiz):
    assert_error(submit(api, quiz, all_correct()), 401, "UNAUTHORIZED")
    assert QuizSubmission.objects.count() == 0


def test_submit_requires_enrollment(auth_api, user):
    quiz = QuizFactory()
    EnrollmentFactory(user=UserFactory(), course=quiz.module.course)

    assert_error(submit(auth_api, quiz, all_correct()), 403, "FORBIDDEN")
    assert QuizSubmission.objects.count() == 0


def test_submit_unknown_quiz_is_404(auth_api):
    response = auth_api.post(f"/api/v1/quizzes/{uuid.uuid4()}/submit", all_correct(), format="json")
    assert_error(response, 404, "NOT_FOUND")
    assert QuizSubmission.objects.count() == 0


def test_submit_to_inactive_course_is_404(auth_api, quiz):
    course = quiz.module.course
    course.is_active = False
    course.save(update_fields=["is_active"])

    assert_error(submit(auth_api, quiz, all_correct()), 404, "NOT_FOUND")
    assert QuizSubmission.objects.count() == 0


def test_submit_to_quiz_without_questions_is_409(user, auth_api):
    quiz = QuizFactory(questions=[])
    EnrollmentFactory(user=user, course=quiz.module.course)

    assert_error(submit(auth_api, quiz, answers(("q1", 1))), 409, "CONFLICT")
    assert QuizSubmission.objects.count() == 0


# Grading rules


def test_duplicate_answers_count_each_question_once(auth_api, quiz):
    body = answers(*[("q1", 1)] * 5)

    data = submit(auth_api, quiz, body).json()["data"]

    assert (data["score"], data["totalQuestions"], data["percentage"], data["passed"]) == (
        1,
        5,
        20,
        False,
    )


def test_fifty_repeated_correct_answers_cannot_exceed_100(auth_api, quiz):
    body = answers(*[(f"q{i % 5 + 1}", 1) for i in range(50)])

    data = submit(auth_api, quiz, body).json()["data"]

    assert (data["score"], data["percentage"]) == (5, 100)
    assert QuizSubmission.objects.get().score == 5


def test_first_answer_for_a_question_is_the_one_graded(auth_api, quiz):
    body = answers(("q1", 0), ("q1", 1), ("q2", 1), ("q2", 0))

    data = submit(auth_api, quiz, body).json()["data"]

    assert data["score"] == 1


@pytest.mark.parametrize("index", [-3, -1, 4, 99, 2**40])
def test_out_of_range_indexes_are_wrong(auth_api, quiz, index):
    # -3 would pick options[1] (the right one) if the index were used to look up an option.
    body = answers(("q1", index), ("q2", 1))

    data = submit(auth_api, quiz, body).json()["data"]

    assert data["score"] == 1


def test_unknown_question_ids_are_wrong(auth_api, quiz):
    body = answers(("q6", 1), ("Q1", 1), ("q1 ", 1), ("q2", 1))

    data = submit(auth_api, quiz, body).json()["data"]

    assert (data["score"], data["totalQuestions"]) == (1, 5)


def test_percentage_is_over_all_questions_and_rounds_half_up(user, auth_api):
    quiz = QuizFactory(questions=make_questions(8))
    EnrollmentFactory(user=user, course=quiz.module.course)

    data = submit(auth_api, quiz, answers(("q1", 1))).json()["data"]

    assert (data["score"], data["totalQuestions"], data["percentage"]) == (1, 8, 13)


@pytest.mark.parametrize(
    "questions, correct, percentage, passed",
    [(10, 7, 70, True), (10, 6, 60, False), (3, 2, 67, False), (3, 3, 100, True), (1, 0, 0, False)],
)
def test_pass_threshold_is_70_percent(user, auth_api, questions, correct, percentage, passed):
    quiz = QuizFactory(questions=make_questions(questions))
    EnrollmentFactory(user=user, course=quiz.module.course)
    body = answers(*[(f"q{i}", 1 if i <= correct else 0) for i in range(1, questions + 1)])

    data = submit(auth_api, quiz, body).json()["data"]

    assert (data["percentage"], data["passed"], data["rewardAvailable"]) == (
        percentage,
        passed,
        passed,
    )


# Completion


def test_passing_the_last_module_completes_the_enrollment(user, auth_api):
    course = course_with_modules(3)
    enrollment = EnrollmentFactory(user=user, course=course)
    quizzes = [module.quiz for module in course.modules.order_by("order")]

    for quiz in (quizzes[2], quizzes[0]):
        assert submit(auth_api, quiz, all_correct()).json()["data"]["passed"] is True
        enrollment.refresh_from_db()
        assert enrollment.completed_at is None

    submit(auth_api, quizzes[1], all_correct())

    enrollment.refresh_from_db()
    assert enrollment.completed_at is not None


def test_failing_the_last_module_does_not_complete(user, auth_api):
    course = course_with_modules(2)
    enrollment = EnrollmentFactory(user=user, course=course)
    first, last = (module.quiz for module in course.modules.order_by("order"))
    submit(auth_api, first, all_correct())

    data = submit(auth_api, last, answers(("q1", 1))).json()["data"]

    assert data["passed"] is False
    enrollment.refresh_from_db()
    assert enrollment.completed_at is None


def test_a_failed_module_keeps_the_course_incomplete(user, auth_api):
    course = course_with_modules(2)
    enrollment = EnrollmentFactory(user=user, course=course)
    first, last = (module.quiz for module in course.modules.order_by("order"))
    submit(auth_api, first, answers(("q1", 1)))

    submit(auth_api, last, all_correct())

    enrollment.refresh_from_db()
    assert enrollment.completed_at is None


def test_other_learners_passes_do_not_count(user, auth_api):
    course = course_with_modules(2)
    enrollment = EnrollmentFactory(user=user, course=course)
    first, last = (module.quiz for module in course.modules.order_by("order"))
    QuizSubmissionFactory(quiz=first, user=UserFactory())

    submit(auth_api, last, all_correct())

    enrollment.refresh_from_db()
    assert enrollment.completed_at is None


def test_module_without_quiz_does_not_block_completion(user, auth_api):
    course = course_with_modules(1)
    ModuleFactory(course=course, order=2)
    enrollment = EnrollmentFactory(user=user, course=course)

    submit(auth_api, course.modules.get(order=1).quiz, all_correct())

    enrollment.refresh_from_db()
    assert enrollment.completed_at is not None


def test_completion_only_touches_this_learners_enrollment(user, auth_api):
    course = course_with_modules(1)
    mine = EnrollmentFactory(user=user, course=course)
    theirs = EnrollmentFactory(user=UserFactory(), course=course)

    submit(auth_api, course.modules.get().quiz, all_correct())

    assert Enrollment.objects.get(pk=mine.pk).completed_at is not None
    assert Enrollment.objects.get(pk=theirs.pk).completed_at is None


# Bad input: 4xx envelope, no rows changed


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"answers": None},
        {"answers": []},
        {"answers": "q1:1"},
        {"answers": {"questionId": "q1", "selectedIndex": 1}},
        {"answers": [["q1", 1]]},
        {"answers": [{"questionId": "q1"}]},
        {"answers": [{"selectedIndex": 1}]},
        {"answers": [{"questionId": "q1", "selectedIndex": "1"}]},
        {"answers": [{"questionId": "q1", "selectedIndex": True}]},
        {"answers": [{"questionId": "q1", "selectedIndex": 1.0}]},
        {"answers": [{"questionId": "q1", "selectedIndex": 1.5}]},
        {"answers": [{"questionId": "q1", "selectedIndex": None}]},
        {"answers": [{"questionId": 1, "selectedIndex": 1}]},
        {"answers": [{"questionId": None, "selectedIndex": 1}]},
        {"answers": [{"questionId": "", "selectedIndex": 1}]},
        {"answers": [{"questionId": ["q1"], "selectedIndex": 1}]},
        {"answers": [{"questionId": "q" * 101, "selectedIndex": 1}]},
        {"answers": [{"questionId": "q1", "selectedIndex": 1}] * 51},
        [{"questionId": "q1", "selectedIndex": 1}],
        "answers",
    ],
)
def test_submit_bad_body_is_400_and_changes_nothing(auth_api, quiz, payload):
    before = row_counts()

    response = auth_api.post(
        f"/api/v1/quizzes/{quiz.id}/submit", json.dumps(payload), content_type="application/json"
    )

    assert_error(response, 400, "VALIDATION_ERROR")
    assert row_counts() == before


@pytest.mark.parametrize("raw", ["{", '{"answers": [}', "answers=1", "\x00"])
def test_submit_non_json_body_is_400(auth_api, quiz, raw):
    before = row_counts()

    response = auth_api.post(
        f"/api/v1/quizzes/{quiz.id}/submit", raw, content_type="application/json"
    )

    assert_error(response, 400, "VALIDATION_ERROR")
    assert row_counts() == before


def test_submit_form_encoded_body_is_415(auth_api, quiz):
    response = auth_api.post(
        f"/api/v1/quizzes/{quiz.id}/submit", "answers=1", content_type="text/plain"
    )
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert QuizSubmission.objects.count() == 0


def test_submit_malformed_quiz_id_is_400(auth_api, quiz):
    before = row_counts()

    body = assert_error(
        auth_api.post("/api/v1/quizzes/not-a-uuid/submit", all_correct(), format="json"),
        400,
        "VALIDATION_ERROR",
    )

    assert "quizId" in body["details"]
    assert row_counts() == before


def test_fifty_answers_are_accepted(auth_api, quiz):
    body = answers(*[(f"q{i % 7}", 1) for i in range(50)])
    assert submit(auth_api, quiz, body).status_code == 200


def test_wrong_answer_types_name_the_field(auth_api, quiz):
    body = {"answers": [{"questionId": "q1", "selectedIndex": 1}, {"questionId": "q2"}]}

    details = assert_error(submit(auth_api, quiz, body), 400, "VALIDATION_ERROR")["details"]

    assert "selectedIndex" in details["answers"]["1"]


def test_reward_available_follows_each_learners_result(user):
    # Two learners, same quiz: rewardAvailable follows each one's own result.
    quiz = QuizFactory()
    other = UserFactory()
    for learner in (user, other):
        EnrollmentFactory(user=learner, course=quiz.module.course)

    passed = submit(client_for(user), quiz, all_correct()).json()["data"]
    failed = submit(client_for(other), quiz, answers(("q1", 1))).json()["data"]

    assert (passed["rewardAvailable"], failed["rewardAvailable"]) == (True, False)
    assert passed["id"] != failed["id"]
