"""Reward claims (rules, credits, Idempotency-Key) and the reward history."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from courses.models import QuizSubmission
from rewards.models import IdempotencyRecord, Reward
from rewards.selectors import reward_history
from tests.conftest import client_for
from tests.factories import (
    CourseFactory,
    ModuleFactory,
    QuizFactory,
    QuizSubmissionFactory,
    RewardFactory,
    UserFactory,
)
from tests.helpers import assert_error, assert_success
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)

CLAIM = "/api/v1/rewards/claim"
HISTORY = "/api/v1/rewards/history"
KEY = "retry-key_0123456789"
HISTORY_KEYS = {"id", "courseTitle", "score", "amount", "txHash", "claimedAt"}


def submission(user: User, *, score: int = 5, course_title: str | None = None) -> QuizSubmission:
    course = CourseFactory(**({"title": course_title} if course_title else {}))
    return QuizSubmissionFactory(
        user=user, quiz=QuizFactory(module=ModuleFactory(course=course)), score=score
    )


def credits_of(user: User) -> int:
    return User.objects.values_list("credits", flat=True).get(pk=user.pk)


# --- claim rules -----------------------------------------------------------------------


def test_claim_grants_credits_once_and_records_the_reward(user, auth_api, settings):
    sub = submission(user)

    response = auth_api.post(CLAIM, {"submissionId": str(sub.pk)}, format="json")

    data = assert_success(response)
    assert data == {
        "submissionId": str(sub.pk),
        "amount": settings.REWARD_AMOUNT,
        "txHash": None,
        "message": f"Successfully claimed {settings.REWARD_AMOUNT} credits",
    }
    reward = Reward.objects.get()
    assert (reward.submission_id, reward.user_id, reward.amount) == (
        sub.pk,
        user.pk,
        settings.REWARD_AMOUNT,
    )
    assert (reward.status, reward.tx_hash) == (Reward.Status.CLAIMED, None)
    assert credits_of(user) == settings.REWARD_AMOUNT


def test_claim_amount_follows_the_setting(user, auth_api, settings):
    settings.REWARD_AMOUNT = 25
    sub = submission(user)

    data = assert_success(auth_api.post(CLAIM, {"submissionId": str(sub.pk)}, format="json"))

    assert data["amount"] == 25
    assert credits_of(user) == 25


def test_second_claim_is_409_and_credits_grow_once(user, auth_api, settings):
    sub = submission(user)
    assert_success(auth_api.post(CLAIM, {"submissionId": str(sub.pk)}, format="json"))

    response = auth_api.post(CLAIM, {"submissionId": str(sub.pk)}, format="json")

    assert_error(response, 409, "CONFLICT")
    assert Reward.objects.count() == 1
    assert credits_of(user) == settings.REWARD_AMOUNT


def test_claims_of_two_submissions_add_up(user, auth_api, settings):
    for sub in (submission(user), submission(user)):
        assert_success(auth_api.post(CLAIM, {"submissionId": str(sub.pk)}, format="json"))

    assert credits_of(user) == 2 * settings.REWARD_AMOUNT


def test_claiming_another_users_submission_is_404(user, auth_api):
    other = UserFactory()
    sub = submission(other)

    response = auth_api.post(CLAIM, {"submissionId": str(sub.pk)}, format="json")

    assert_error(response, 404, "NOT_FOUND")
    assert Reward.objects.count() == 0
    assert (credits_of(user), credits_of(other)) == (0, 0)


def test_claiming_unknown_submission_is_404(auth_api):
    response = auth_api.post(CLAIM, {"submissionId": str(uuid.uuid4())}, format="json")

    assert_error(response, 404, "NOT_FOUND")


def test_claiming_a_failed_submission_is_403(user, auth_api):
    sub = submission(user, score=3)
    assert sub.passed is False

    response = auth_api.post(CLAIM, {"submissionId": str(sub.pk)}, format="json")

    assert_error(response, 403, "FORBIDDEN")
    assert Reward.objects.count() == 0
    assert credits_of(user) == 0


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"submissionId": None},
        {"submissionId": 12},
        {"submissionId": True},
        {"submissionId": ["00000000-0000-0000-0000-000000000001"]},
        {"submissionId": "not-a-uuid"},
        {"submissionId": "1234"},
        {"submissionId": ""},
    ],
)
def test_claim_bad_body_is_400_and_changes_nothing(user, auth_api, payload):
    submission(user)

    response = auth_api.post(CLAIM, payload, format="json")

    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert "submissionId" in body["details"]
    assert Reward.objects.count() == 0
    assert credits_of(user) == 0


@pytest.mark.parametrize("raw", ["{not json", "[]", '"x"'])
def test_claim_non_object_body_is_400(user, auth_api, raw):
    response = auth_api.post(CLAIM, raw, content_type="application/json")

    assert_error(response, 400, "VALIDATION_ERROR")
    assert Reward.objects.count() == 0


def test_claim_form_encoded_body_is_415(user, auth_api):
    sub = submission(user)

    response = auth_api.post(CLAIM, {"submissionId": str(sub.pk)})

    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert Reward.objects.count() == 0


# --- Idempotency-Key ------------------------------------------------------------------------


def test_idempotent_retry_replays_the_first_response_without_a_second_effect(
    user, auth_api, settings
):
    sub = submission(user)
    body = {"submissionId": str(sub.pk)}

    first = auth_api.post(CLAIM, body, format="json", HTTP_IDEMPOTENCY_KEY=KEY)
    retry = auth_api.post(CLAIM, body, format="json", HTTP_IDEMPOTENCY_KEY=KEY)

    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry.json()["data"] == first.json()["data"]
    assert retry["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert retry.json()["meta"]["requestId"] != first.json()["meta"]["requestId"]
    assert Reward.objects.count() == 1
    assert credits_of(user) == settings.REWARD_AMOUNT
    record = IdempotencyRecord.objects.get()
    assert (record.user_id, record.key, record.status_code) == (user.pk, KEY, 200)


def test_idempotent_replay_ignores_json_key_order_and_spacing(user, auth_api):
    sub = submission(user)
    first = auth_api.post(
        CLAIM,
        f'{{"submissionId": "{sub.pk}", "note": 1}}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=KEY,
    )

    retry = auth_api.post(
        CLAIM,
        f'{{"note":1,"submissionId":"{sub.pk}"}}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=KEY,
    )

    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry["Idempotent-Replayed"] == "true"


def test_same_key_with_a_different_body_is_409(user, auth_api, settings):
    first_sub, second_sub = submission(user), submission(user)
    assert_success(
        auth_api.post(
            CLAIM, {"submissionId": str(first_sub.pk)}, format="json", HTTP_IDEMPOTENCY_KEY=KEY
        )
    )

    response = auth_api.post(
        CLAIM, {"submissionId": str(second_sub.pk)}, format="json", HTTP_IDEMPOTENCY_KEY=KEY
    )

    assert_error(response, 409, "CONFLICT")
    assert list(Reward.objects.values_list("submission_id", flat=True)) == [first_sub.pk]
    assert credits_of(user) == settings.REWARD_AMOUNT


def test_idempotency_keys_are_per_user(user, auth_api, settings):
    other = UserFactory()
    mine, theirs = submission(user), submission(other)
    assert_success(
        auth_api.post(
            CLAIM, {"submissionId": str(mine.pk)}, format="json", HTTP_IDEMPOTENCY_KEY=KEY
        )
    )

    response = client_for(other).post(
        CLAIM, {"submissionId": str(theirs.pk)}, format="json", HTTP_IDEMPOTENCY_KEY=KEY
    )

    data = assert_success(response)
    assert data["submissionId"] == str(theirs.pk)
    assert "Idempotent-Replayed" not in response
    assert (credits_of(user), credits_of(other)) == (settings.REWARD_AMOUNT,) * 2
    assert IdempotencyRecord.objects.count() == 2


def test_idempotent_rule_failure_is_stored_and_replayed(user, auth_api):
    failed = submission(user, score=2)
    body = {"submissionId": str(failed.pk)}

    first = auth_api.post(CLAIM, body, format="json", HTTP_IDEMPOTENCY_KEY=KEY)
    retry = auth_api.post(CLAIM, body, format="json", HTTP_IDEMPOTENCY_KEY=KEY)

    assert_error(first, 403, "FORBIDDEN")
    assert_error(retry, 403, "FORBIDDEN")
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"


def test_plain_claim_after_idempotent_claim_is_409(user, auth_api):
    sub = submission(user)
    body = {"submissionId": str(sub.pk)}
    assert_success(auth_api.post(CLAIM, body, format="json", HTTP_IDEMPOTENCY_KEY=KEY))

    assert_error(auth_api.post(CLAIM, body, format="json"), 409, "CONFLICT")
    assert_error(
        auth_api.post(CLAIM, body, format="json", HTTP_IDEMPOTENCY_KEY=KEY + "x"), 409, "CONFLICT"
    )
    assert Reward.objects.count() == 1


@pytest.mark.parametrize(
    "key",
    ["", "k" * 15, "k" * 65, "has space in it!!", "bad/slash/0123456", "ünicode-key-123456"],
)
def test_malformed_idempotency_key_is_400_and_changes_nothing(user, auth_api, key):
    sub = submission(user)

    response = auth_api.post(
        CLAIM, {"submissionId": str(sub.pk)}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )

    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert "Idempotency-Key" in body["details"]
    assert (Reward.objects.count(), IdempotencyRecord.objects.count(), credits_of(user)) == (
        0,
        0,
        0,
    )


@pytest.mark.parametrize("key", ["a" * 16, "Z-_9" * 16])
def test_idempotency_key_length_bounds_are_accepted(user, auth_api, key):
    sub = submission(user)

    response = auth_api.post(
        CLAIM, {"submissionId": str(sub.pk)}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )

    assert_success(response)
    assert IdempotencyRecord.objects.get().key == key


# --- history -----------------------------------------------------------------------------


def claimed(user: User, *, minutes_ago: int, title: str, score: int = 5) -> Reward:
    reward = RewardFactory(submission=submission(user, score=score, course_title=title))
    Reward.objects.filter(pk=reward.pk).update(
        claimed_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    reward.refresh_from_db()
    return reward


def test_history_lists_newest_first_with_exact_fields(user, auth_api):
    old = claimed(user, minutes_ago=30, title="Old", score=4)
    new = claimed(user, minutes_ago=1, title="New", score=5)
    mid = claimed(user, minutes_ago=10, title="Mid", score=5)
    claimed(UserFactory(), minutes_ago=0, title="Someone else's")

    response = auth_api.get(HISTORY)

    data = assert_success(response)
    assert response.json()["pagination"] == {"page": 1, "limit": 20, "total": 3}
    assert [item["courseTitle"] for item in data] == ["New", "Mid", "Old"]
    assert all(set(item) == HISTORY_KEYS for item in data)
    assert data[2] == {
        "id": str(old.submission_id),
        "courseTitle": "Old",
        "score": 4,
        "amount": old.amount,
        "txHash": None,
        "claimedAt": old.claimed_at.isoformat().replace("+00:00", "Z"),
    }
    assert [item["id"] for item in data[:2]] == [str(new.submission_id), str(mid.submission_id)]


def test_history_paginates(user, auth_api):
    for minutes in range(5):
        claimed(user, minutes_ago=minutes, title=f"C{minutes}")

    page2 = auth_api.get(HISTORY, {"page": 2, "limit": 2})
    page3 = auth_api.get(HISTORY, {"page": 3, "limit": 2})
    page4 = auth_api.get(HISTORY, {"page": 4, "limit": 2})

    assert [i["courseTitle"] for i in assert_success(page2)] == ["C2", "C3"]
    assert page2.json()["pagination"] == {"page": 2, "limit": 2, "total": 5}
    assert [i["courseTitle"] for i in assert_success(page3)] == ["C4"]
    assert assert_success(page4) == []
    assert page4.json()["pagination"] == {"page": 4, "limit": 2, "total": 5}


def test_history_shows_a_claim_at_once(user, auth_api):
    sub = submission(user, course_title="Fresh")
    assert assert_success(auth_api.get(HISTORY)) == []

    assert_success(auth_api.post(CLAIM, {"submissionId": str(sub.pk)}, format="json"))

    assert [i["courseTitle"] for i in assert_success(auth_api.get(HISTORY))] == ["Fresh"]


@pytest.mark.parametrize(
    "query",
    [
        {"page": 0},
        {"page": -1},
        {"page": "abc"},
        {"limit": 0},
        {"limit": 51},
        {"limit": "abc"},
        {"limit": "1.5"},
        {"page": ""},
    ],
)
def test_history_bad_page_params_are_400(auth_api, query):
    body = assert_error(auth_api.get(HISTORY, query), 400, "VALIDATION_ERROR")

    assert set(body["details"]) <= {"page", "limit"}


@pytest.mark.parametrize("rewards", [2, 12])
def test_history_query_count_does_not_grow(user, settings, django_assert_num_queries, rewards):
    settings.CACHE_ENABLED = False
    for minutes in range(rewards):
        claimed(user, minutes_ago=minutes, title=f"T{minutes}")
    client = client_for(user)

    with django_assert_num_queries(2):
        result = reward_history(user_id=user.pk, page=1, limit=50)
    with django_assert_num_queries(3):  # bearer-token lookup + count + page
        response = client.get(HISTORY, {"limit": 50})

    assert result["total"] == rewards
    assert len(result["items"]) == rewards
    assert assert_success(response) == result["items"]
