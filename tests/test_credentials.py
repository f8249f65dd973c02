"""Credential minting, listing and revocation."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from courses.models import Course
from credentials import services
from credentials.models import Credential
from credentials.selectors import credential_list
from tests.conftest import client_for
from tests.factories import (
    CourseFactory,
    CredentialFactory,
    EnrollmentFactory,
    QuizSubmissionFactory,
    UserFactory,
    course_with_modules,
)
from tests.helpers import assert_error, assert_success
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)

MINT = "/api/v1/credentials/mint"
LIST = "/api/v1/credentials"
ASSET_CODE = re.compile(r"^CL[0-9A-F]{8}$")
ITEM_KEYS = {"id", "courseId", "courseTitle", "score", "assetCode", "revoked", "issuedAt"}


def completed_course(
    user: User, scores: tuple[int, ...] = (5, 4, 5), total: int = 5, **fields
) -> Course:
    """A course with one quiz per score, the user's submissions, and a completed enrollment."""
    course = course_with_modules(len(scores), **fields)
    for module, score in zip(course.modules.order_by("order"), scores, strict=True):
        QuizSubmissionFactory(user=user, quiz=module.quiz, score=score, total_questions=total)
    EnrollmentFactory(user=user, course=course, completed_at=timezone.now())
    return course


# --- mint ----------------------------------------------------------------------------------


def test_mint_issues_a_credential_with_the_mean_score(user, auth_api):
    course = completed_course(user, scores=(5, 4, 3))  # 100, 80, 60 -> 80

    response = auth_api.post(MINT, {"courseId": str(course.pk)}, format="json")

    data = assert_success(response, 201)
    assert set(data) == {"credentialId", "assetCode", "message"}
    assert ASSET_CODE.match(data["assetCode"])
    credential = Credential.objects.get()
    assert (str(credential.pk), credential.asset_code) == (data["credentialId"], data["assetCode"])
    assert (credential.user_id, credential.course_id, credential.score) == (user.pk, course.pk, 80)
    assert (credential.revoked, credential.revoked_at) == (False, None)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [((5, 5), 100), ((4, 5), 90), ((5, 4, 4), 87), ((4, 4, 5, 5, 5, 5), 93)],
)
def test_mint_score_is_the_rounded_mean_percentage(user, auth_api, scores, expected):
    course = completed_course(user, scores=scores)

    assert_success(auth_api.post(MINT, {"courseId": str(course.pk)}, format="json"), 201)

    assert Credential.objects.get().score == expected


def test_mint_score_rounds_half_up(user, auth_api):
    course = completed_course(user, scores=(14, 15), total=20)  # 70 %, 75 %: mean 72.5

    assert_success(auth_api.post(MINT, {"courseId": str(course.pk)}, format="json"), 201)

    assert Credential.objects.get().score == 73  # banker's rounding would give 72


def test_mint_ignores_other_courses_submissions(user, auth_api):
    course = completed_course(user, scores=(5,))
    completed_course(user, scores=(4,))

    assert_success(auth_api.post(MINT, {"courseId": str(course.pk)}, format="json"), 201)

    assert Credential.objects.get(course=course).score == 100


def test_second_mint_is_409(user, auth_api):
    course = completed_course(user)
    assert_success(auth_api.post(MINT, {"courseId": str(course.pk)}, format="json"), 201)

    response = auth_api.post(MINT, {"courseId": str(course.pk)}, format="json")

    assert_error(response, 409, "CONFLICT")
    assert Credential.objects.count() == 1


def test_mint_for_an_uncompleted_enrollment_is_403(user, auth_api):
    course = course_with_modules(2)
    EnrollmentFactory(user=user, course=course)

    assert_error(auth_api.post(MINT, {"courseId": str(course.pk)}, format="json"), 403, "FORBIDDEN")
    assert Credential.objects.count() == 0


def test_mint_without_enrollment_is_403(user, auth_api):
    course = course_with_modules(1)
    EnrollmentFactory(user=UserFactory(), course=course, completed_at=timezone.now())

    assert_error(auth_api.post(MINT, {"courseId": str(course.pk)}, format="json"), 403, "FORBIDDEN")
    assert Credential.objects.count() == 0


def test_mint_for_unknown_course_is_404(auth_api):
    response = auth_api.post(MINT, {"courseId": str(uuid.uuid4())}, format="json")

    assert_error(response, 404, "NOT_FOUND")


def test_mint_for_inactive_course_is_404(user, auth_api):
    course = completed_course(user, is_active=False)

    assert_error(auth_api.post(MINT, {"courseId": str(course.pk)}, format="json"), 404, "NOT_FOUND")
    assert Credential.objects.count() == 0


def test_mint_redraws_a_colliding_asset_code(user, auth_api, monkeypatch):
    taken = CredentialFactory(asset_code="CLAAAAAAAA")
    codes = iter(["CLAAAAAAAA", "CLAAAAAAAA", "CLBBBBBBBB"])
    monkeypatch.setattr(services, "new_asset_code", lambda: next(codes))
    course = completed_course(user)

    data = assert_success(auth_api.post(MINT, {"courseId": str(course.pk)}, format="json"), 201)

    assert data["assetCode"] == "CLBBBBBBBB"
    assert Credential.objects.exclude(pk=taken.pk).get().asset_code == "CLBBBBBBBB"


def test_new_asset_codes_have_the_format_and_vary():
    codes = {services.new_asset_code() for _ in range(50)}

    assert all(ASSET_CODE.match(code) for code in codes)
    assert len(codes) == 50


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"courseId": None},
        {"courseId": 7},
        {"courseId": {"id": "x"}},
        {"courseId": "nope"},
        {"courseId": "123e4567-e89b-12d3-a456-42661417400"},
    ],
)
def test_mint_bad_body_is_400_and_changes_nothing(user, auth_api, payload):
    completed_course(user)

    body = assert_error(auth_api.post(MINT, payload, format="json"), 400, "VALIDATION_ERROR")

    assert "courseId" in body["details"]
    assert Credential.objects.count() == 0


@pytest.mark.parametrize("raw", ["{", "[1]", "true"])
def test_mint_non_object_body_is_400(auth_api, raw):
    response = auth_api.post(MINT, raw, content_type="application/json")

    assert_error(response, 400, "VALIDATION_ERROR")
    assert Credential.objects.count() == 0


# --- list and revoke ---------------------------------------------------------------------------


def issued(user: User, *, minutes_ago: int, title: str, **fields) -> Credential:
    credential = CredentialFactory(user=user, course=CourseFactory(title=title), **fields)
    Credential.objects.filter(pk=credential.pk).update(
        issued_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    credential.refresh_from_db()
    return credential


def test_list_is_newest_first_with_revoked_flag(user, auth_api):
    old = issued(user, minutes_ago=20, title="Old", score=71)
    issued(user, minutes_ago=5, title="Revoked", revoked=True, revoked_at=timezone.now())
    issued(user, minutes_ago=1, title="New")
    issued(UserFactory(), minutes_ago=0, title="Not mine")

    data = assert_success(auth_api.get(LIST))

    assert [item["courseTitle"] for item in data] == ["New", "Revoked", "Old"]
    assert [item["revoked"] for item in data] == [False, True, False]
    assert all(set(item) == ITEM_KEYS for item in data)
    assert data[2] == {
        "id": str(old.pk),
        "courseId": str(old.course_id),
        "courseTitle": "Old",
        "score": 71,
        "assetCode": old.asset_code,
        "revoked": False,
        "issuedAt": old.issued_at.isoformat().replace("+00:00", "Z"),
    }
    assert "pagination" not in auth_api.get(LIST).json()


def test_list_shows_a_mint_and_a_revocation_at_once(user, auth_api):
    course = completed_course(user)
    assert assert_success(auth_api.get(LIST)) == []

    minted = assert_success(auth_api.post(MINT, {"courseId": str(course.pk)}, format="json"), 201)
    listed = assert_success(auth_api.get(LIST))
    services.credential_revoke(credential=Credential.objects.get())
    after = assert_success(auth_api.get(LIST))

    assert [(i["id"], i["revoked"]) for i in listed] == [(minted["credentialId"], False)]
    assert [(i["id"], i["revoked"]) for i in after] == [(minted["credentialId"], True)]


def test_revoke_sets_flag_and_time_once(user):
    credential = CredentialFactory(user=user)

    services.credential_revoke(credential=credential)
    first = Credential.objects.get(pk=credential.pk)
    services.credential_revoke(credential=first)
    second = Credential.objects.get(pk=credential.pk)

    assert first.revoked is True
    assert first.revoked_at is not None
    assert second.revoked_at == first.revoked_at


def test_revoked_credential_does_not_count_in_progress_but_blocks_a_new_mint(user, auth_api):
    course = completed_course(user)
    assert_success(auth_api.post(MINT, {"courseId": str(course.pk)}, format="json"), 201)
    services.credential_revoke(credential=Credential.objects.get())

    progress = assert_success(auth_api.get("/api/v1/users/me/progress"))
    again = auth_api.post(MINT, {"courseId": str(course.pk)}, format="json")

    assert progress["credentialsEarned"] == 0
    assert_error(again, 409, "CONFLICT")


@pytest.mark.parametrize("credentials", [1, 10])
def test_list_query_count_does_not_grow(user, settings, django_assert_num_queries, credentials):
    settings.CACHE_ENABLED = False
    for minutes in range(credentials):
        issued(user, minutes_ago=minutes, title=f"T{minutes}")
    client = client_for(user)

    with django_assert_num_queries(1):
        result = credential_list(user_id=user.pk)
    with django_assert_num_queries(2):  # bearer-token lookup + the list query
        response = client.get(LIST)

    assert len(result) == credentials
    assert assert_success(response) == result
