"""Auth (register, token, logout), the profile and the progress counters."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from courses.models import Enrollment, QuizSubmission
from credentials.models import Credential
from rewards.models import Reward
from tests.conftest import client_for
from tests.factories import (
    PASSWORD,
    CredentialFactory,
    EnrollmentFactory,
    ModuleFactory,
    QuizFactory,
    QuizSubmissionFactory,
    RewardFactory,
    UserFactory,
    course_with_modules,
)
from tests.helpers import assert_error, assert_success
from users.models import ApiToken, User
from users.selectors import user_progress

pytestmark = pytest.mark.django_db(transaction=True)

STELLAR = "G" + "A" * 55
AUTH_USER_KEYS = {"id", "username", "stellarAddress", "displayName"}
PROFILE_KEYS = {
    "id",
    "username",
    "stellarAddress",
    "displayName",
    "background",
    "learningGoal",
    "pace",
    "language",
    "credits",
    "createdAt",
}
PROGRESS_KEYS = {
    "enrolledCourses",
    "completedCourses",
    "totalQuizScore",
    "credentialsEarned",
    "rewardsClaimed",
}


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


# --- register ---------------------------------------------------------------------------


def test_register_creates_user_and_a_working_token(api):
    response = api.post(
        "/api/v1/auth/register",
        {"username": "ada.l_1-x", "password": "long enough pw", "stellarAddress": STELLAR},
        format="json",
    )

    data = assert_success(response, 201)
    assert set(data) == {"token", "user"}
    assert set(data["user"]) == AUTH_USER_KEYS
    user = User.objects.get(username="ada.l_1-x")
    assert data["user"] == {
        "id": str(user.pk),
        "username": "ada.l_1-x",
        "stellarAddress": STELLAR,
        "displayName": "",
    }
    assert user.check_password("long enough pw")
    assert user.password != "long enough pw"
    me = bearer(data["token"]).get("/api/v1/users/me")
    assert assert_success(me)["id"] == str(user.pk)


def test_register_without_stellar_address(api):
    response = api.post(
        "/api/v1/auth/register", {"username": "bob", "password": "long enough pw"}, format="json"
    )

    data = assert_success(response, 201)
    assert data["user"]["stellarAddress"] is None
    assert User.objects.get(username="bob").stellar_address is None


def test_register_duplicate_username_is_409_and_adds_nothing(api):
    UserFactory(username="taken")
    before = (User.objects.count(), ApiToken.objects.count())

    response = api.post(
        "/api/v1/auth/register", {"username": "taken", "password": "long enough pw"}, format="json"
    )

    body = assert_error(response, 409, "CONFLICT")
    assert "username" in body["details"]
    assert (User.objects.count(), ApiToken.objects.count()) == before


def test_register_duplicate_stellar_address_is_409(api):
    UserFactory(stellar_address=STELLAR)
    before = User.objects.count()

    response = api.post(
        "/api/v1/auth/register",
        {"username": "fresh", "password": "long enough pw", "stellarAddress": STELLAR},
        format="json",
    )

    body = assert_error(response, 409, "CONFLICT")
    assert "stellarAddress" in body["details"]
    assert User.objects.count() == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"password": "12345678"}, "username"),
        ({"username": "abc"}, "password"),
        ({"username": "ab", "password": "12345678"}, "username"),
        ({"username": "a" * 151, "password": "12345678"}, "username"),
        ({"username": "bad name", "password": "12345678"}, "username"),
        ({"username": "bad/name", "password": "12345678"}, "username"),
        ({"username": 12345, "password": "12345678"}, "username"),
        ({"username": "abc", "password": "1234567"}, "password"),
        ({"username": "abc", "password": "x" * 129}, "password"),
        ({"username": "abc", "password": 12345678}, "password"),
        (
            {"username": "abc", "password": "12345678", "stellarAddress": "G" + "A" * 54},
            "stellarAddress",
        ),
        (
            {"username": "abc", "password": "12345678", "stellarAddress": "S" + "A" * 55},
            "stellarAddress",
        ),
        (
            {"username": "abc", "password": "12345678", "stellarAddress": "G" + "a" * 55},
            "stellarAddress",
        ),
        (
            {"username": "abc", "password": "12345678", "stellarAddress": "G" + "1" * 55},
            "stellarAddress",
        ),
        ({"username": "abc", "password": "12345678", "stellarAddress": 7}, "stellarAddress"),
    ],
)
def test_register_validation_is_400_and_creates_nothing(api, payload, field):
    response = api.post("/api/v1/auth/register", payload, format="json")

    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert field in body["details"]
    assert User.objects.count() == 0


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"text"', "null"])
def test_register_non_object_body_is_400(api, raw):
    response = api.post("/api/v1/auth/register", raw, content_type="application/json")

    assert_error(response, 400, "VALIDATION_ERROR")
    assert User.objects.count() == 0


# --- token --------------------------------------------------------------------------------


def test_token_issues_a_new_token_per_login(api, user):
    first = api.post(
        "/api/v1/auth/token", {"username": user.username, "password": PASSWORD}, format="json"
    )
    second = api.post(
        "/api/v1/auth/token", {"username": user.username, "password": PASSWORD}, format="json"
    )

    data = assert_success(first)
    assert set(data) == {"token", "user"}
    assert data["user"] == {
        "id": str(user.pk),
        "username": user.username,
        "stellarAddress": None,
        "displayName": user.display_name,
    }
    assert assert_success(second)["token"] != data["token"]
    assert ApiToken.objects.filter(user=user).count() == 2


def test_token_wrong_password_is_401(api, user):
    response = api.post(
        "/api/v1/auth/token", {"username": user.username, "password": "wrong pw"}, format="json"
    )

    assert_error(response, 401, "UNAUTHORIZED")
    assert ApiToken.objects.count() == 0


def test_token_unknown_username_is_401(api):
    response = api.post(
        "/api/v1/auth/token", {"username": "nobody", "password": PASSWORD}, format="json"
    )

    assert_error(response, 401, "UNAUTHORIZED")
    assert ApiToken.objects.count() == 0


def test_token_for_inactive_user_is_401(api):
    inactive = UserFactory(is_active=False)

    response = api.post(
        "/api/v1/auth/token", {"username": inactive.username, "password": PASSWORD}, format="json"
    )

    assert_error(response, 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    "payload", [{}, {"username": "x"}, {"username": ["x"], "password": "12345678"}]
)
def test_token_bad_input_is_400(api, payload):
    assert_error(api.post("/api/v1/auth/token", payload, format="json"), 400, "VALIDATION_ERROR")


# --- logout and auth required ------------------------------------------------------------


def test_logout_revokes_only_that_token_at_once(user):
    token_a, token_b = ApiToken.issue(user), ApiToken.issue(user)
    client_a, client_b = bearer(token_a), bearer(token_b)
    assert client_a.get("/api/v1/users/me").status_code == 200

    response = client_a.post("/api/v1/auth/logout")

    assert set(assert_success(response)) == {"message"}
    assert_error(client_a.get("/api/v1/users/me"), 401, "UNAUTHORIZED")
    assert_error(client_a.post("/api/v1/auth/logout"), 401, "UNAUTHORIZED")
    assert client_b.get("/api/v1/users/me").status_code == 200
    assert ApiToken.objects.filter(user=user).count() == 1


AUTH_ENDPOINTS = [
    ("post", "/api/v1/auth/logout"),
    ("get", "/api/v1/users/me"),
    ("put", "/api/v1/users/me"),
    ("get", "/api/v1/users/me/progress"),
    ("post", "/api/v1/rewards/claim"),
    ("get", "/api/v1/rewards/history"),
    ("post", "/api/v1/credentials/mint"),
    ("get", "/api/v1/credentials"),
]


def _revoked_token() -> str:
    token = ApiToken.issue(UserFactory())
    bearer(token).post("/api/v1/auth/logout")
    return token


@pytest.mark.parametrize(("method", "path"), AUTH_ENDPOINTS)
@pytest.mark.parametrize("credential", ["none", "garbage", "wrong-scheme", "revoked"])
def test_auth_required_endpoints_answer_401_envelope(method, path, credential):
    client = APIClient()
    if credential == "garbage":
        client.credentials(HTTP_AUTHORIZATION="Bearer " + "x" * 43)
    elif credential == "wrong-scheme":
        client.credentials(HTTP_AUTHORIZATION="Token " + ApiToken.issue(UserFactory()))
    elif credential == "revoked":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {_revoked_token()}")
    rows_before = (User.objects.count(), Reward.objects.count(), Credential.objects.count())

    response = getattr(client, method)(path, {}, format="json")

    assert_error(response, 401, "UNAUTHORIZED")
    assert (User.objects.count(), Reward.objects.count(), Credential.objects.count()) == (
        rows_before
    )


# --- profile -----------------------------------------------------------------------------


def test_me_returns_the_profile_from_the_auth_query_alone(user, django_assert_num_queries):
    User.objects.filter(pk=user.pk).update(
        credits=30, background="physics", learning_goal="ship", pace="fast", language="de"
    )
    client = client_for(user)

    with django_assert_num_queries(1):
        response = client.get("/api/v1/users/me")

    data = assert_success(response)
    assert set(data) == PROFILE_KEYS
    user.refresh_from_db()
    assert data == {
        "id": str(user.pk),
        "username": user.username,
        "stellarAddress": None,
        "displayName": user.display_name,
        "background": "physics",
        "learningGoal": "ship",
        "pace": "fast",
        "language": "de",
        "credits": 30,
        "createdAt": user.created_at.isoformat().replace("+00:00", "Z"),
    }


def test_update_profile_changes_only_given_fields(user, auth_api):
    User.objects.filter(pk=user.pk).update(background="kept", credits=7)
    before = User.objects.get(pk=user.pk)

    response = auth_api.put(
        "/api/v1/users/me",
        {"displayName": "Ada", "learningGoal": "Rust", "pace": "slow", "language": "fr"},
        format="json",
    )

    data = assert_success(response)
    assert set(data) == PROFILE_KEYS
    assert (data["displayName"], data["learningGoal"], data["pace"], data["language"]) == (
        "Ada",
        "Rust",
        "slow",
        "fr",
    )
    assert (data["background"], data["credits"]) == ("kept", 7)
    after = User.objects.get(pk=user.pk)
    assert (after.display_name, after.learning_goal, after.pace, after.language) == (
        "Ada",
        "Rust",
        "slow",
        "fr",
    )
    assert (after.background, after.credits, after.password) == ("kept", 7, before.password)
    assert after.updated_at > before.updated_at


def test_update_profile_allows_blank_text(user, auth_api):
    response = auth_api.put("/api/v1/users/me", {"displayName": ""}, format="json")

    assert assert_success(response)["displayName"] == ""
    assert User.objects.get(pk=user.pk).display_name == ""


def test_update_profile_with_no_fields_changes_nothing(user, auth_api):
    before = User.objects.get(pk=user.pk)

    response = auth_api.put("/api/v1/users/me", {}, format="json")

    assert assert_success(response)["displayName"] == before.display_name
    assert User.objects.get(pk=user.pk).updated_at == before.updated_at


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"credits": 1000}, "credits"),
        ({"username": "hijack"}, "username"),
        ({"displayName": "ok", "isStaff": True}, "isStaff"),
        ({"displayName": 5}, "displayName"),
        ({"displayName": None}, "displayName"),
        ({"displayName": ["a"]}, "displayName"),
        ({"displayName": "x" * 101}, "displayName"),
        ({"background": "x" * 1001}, "background"),
        ({"learningGoal": "x" * 501}, "learningGoal"),
        ({"learningGoal": {"a": 1}}, "learningGoal"),
        ({"pace": "turbo"}, "pace"),
        ({"pace": 1}, "pace"),
        ({"language": "x" * 11}, "language"),
        ({"language": ""}, "language"),
        ({"language": True}, "language"),
    ],
)
def test_update_profile_rejects_bad_input_and_changes_nothing(user, auth_api, payload, field):
    before = User.objects.get(pk=user.pk)

    response = auth_api.put("/api/v1/users/me", payload, format="json")

    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert field in body["details"]
    after = User.objects.get(pk=user.pk)
    assert (
        after.display_name,
        after.credits,
        after.username,
        after.is_staff,
        after.updated_at,
    ) == (
        before.display_name,
        before.credits,
        before.username,
        before.is_staff,
        before.updated_at,
    )


@pytest.mark.parametrize("raw", ["{bad json", "[]", "42"])
def test_update_profile_non_object_body_is_400(user, auth_api, raw):
    response = auth_api.put("/api/v1/users/me", raw, content_type="application/json")

    assert_error(response, 400, "VALIDATION_ERROR")


# --- progress ----------------------------------------------------------------------------


def build_progress_fixture(user: User) -> None:
    """Two enrollments (one completed), three submissions, one reward, two credentials.

    Expected: enrolled 2, completed 1, score 5 + 4 + 1 = 10, credentials 1, rewards 1.
    """
    done = course_with_modules(2)
    ongoing = course_with_modules(1)
    EnrollmentFactory(user=user, course=done, completed_at=timezone.now())
    EnrollmentFactory(user=user, course=ongoing)
    done_quizzes = [m.quiz for m in done.modules.order_by("order")]
    first = QuizSubmissionFactory(user=user, quiz=done_quizzes[0], score=5)
    QuizSubmissionFactory(user=user, quiz=done_quizzes[1], score=4)
    QuizSubmissionFactory(user=user, quiz=ongoing.modules.get().quiz, score=1)
    RewardFactory(submission=first)
    CredentialFactory(user=user, course=done)
    CredentialFactory(user=user, course=ongoing, revoked=True, revoked_at=timezone.now())
    # Another learner's rows must not count.
    other = UserFactory()
    EnrollmentFactory(user=other, course=done, completed_at=timezone.now())
    RewardFactory(submission=QuizSubmissionFactory(user=other, quiz=done_quizzes[0], score=5))
    CredentialFactory(user=other, course=done)


def test_progress_counts_exactly(user, auth_api):
    build_progress_fixture(user)

    data = assert_success(auth_api.get("/api/v1/users/me/progress"))

    assert data == {
        "enrolledCourses": 2,
        "completedCourses": 1,
        "totalQuizScore": 10,
        "credentialsEarned": 1,
        "rewardsClaimed": 1,
    }
    assert Enrollment.objects.filter(user=user).count() == 2
    assert QuizSubmission.objects.filter(user=user).count() == 3


def test_progress_of_a_new_user_is_all_zero(auth_api):
    data = assert_success(auth_api.get("/api/v1/users/me/progress"))

    assert set(data) == PROGRESS_KEYS
    assert all(value == 0 and type(value) is int for value in data.values())


def test_progress_selector_for_unknown_user_is_zero():
    assert user_progress(user_id=uuid.uuid4()) == dict.fromkeys(PROGRESS_KEYS, 0)


def _grow(user: User, courses: int) -> None:
    for _ in range(courses):
        course = course_with_modules(2)
        EnrollmentFactory(user=user, course=course, completed_at=timezone.now())
        for module in course.modules.all():
            RewardFactory(submission=QuizSubmissionFactory(user=user, quiz=module.quiz))
        CredentialFactory(user=user, course=course)


@pytest.mark.parametrize("courses", [1, 8])
def test_progress_query_count_does_not_grow(user, settings, django_assert_num_queries, courses):
    settings.CACHE_ENABLED = False
    _grow(user, courses)
    client = client_for(user)

    with django_assert_num_queries(1):
        result = user_progress(user_id=user.pk)
    with django_assert_num_queries(2):  # bearer-token lookup + the progress query
        response = client.get("/api/v1/users/me/progress")

    assert result["enrolledCourses"] == courses
    assert result["rewardsClaimed"] == 2 * courses
    assert assert_success(response) == result


def test_progress_sees_new_activity_after_write(user, auth_api):
    assert assert_success(auth_api.get("/api/v1/users/me/progress"))["enrolledCourses"] == 0
    quiz = QuizFactory(module=ModuleFactory())
    EnrollmentFactory(user=user, course=quiz.module.course)

    assert assert_success(auth_api.get("/api/v1/users/me/progress"))["enrolledCourses"] == 1
