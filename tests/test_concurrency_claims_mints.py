"""Real concurrent requests (threads released together by a barrier) against real PostgreSQL.

Each thread uses its own API client, hence its own database connection, and closes it
when done.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from credentials import services as credential_services
from credentials.models import Credential
from rewards import services
from rewards.models import IdempotencyRecord, Reward
from tests.conftest import client_for
from tests.factories import (
    EnrollmentFactory,
    ModuleFactory,
    QuizFactory,
    QuizSubmissionFactory,
    UserFactory,
    course_with_modules,
)
from users.models import ApiToken, User

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 20
CLAIM = "/api/v1/rewards/claim"


def run_concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call in its own thread, all starting together; return results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = calls[index]()
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    assert not errors, errors
    return results


def clients(user: User, count: int = THREADS) -> list[APIClient]:
    return [client_for(user) for _ in range(count)]


def passed_submission(user: User) -> Any:
    return QuizSubmissionFactory(user=user, quiz=QuizFactory(module=ModuleFactory()), score=5)


def credits_of(user: User) -> int:
    return User.objects.values_list("credits", flat=True).get(pk=user.pk)


def test_concurrent_claims_of_one_submission_grant_credits_once(user, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "claims": (THREADS, 60)}  # not under test
    sub = passed_submission(user)
    body = {"submissionId": str(sub.pk)}

    responses = run_concurrently(
        [lambda c=c: c.post(CLAIM, body, format="json") for c in clients(user)]
    )

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: THREADS - 1}
    assert all(r.json()["error"] == "CONFLICT" for r in responses if r.status_code == 409)
    assert Reward.objects.filter(submission=sub).count() == 1
    assert credits_of(user) == settings.REWARD_AMOUNT


def test_concurrent_claims_of_different_submissions_all_add_up(user, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "claims": (THREADS, 60)}  # not under test
    subs = [passed_submission(user) for _ in range(THREADS)]

    responses = run_concurrently(
        [
            lambda c=c, s=s: c.post(CLAIM, {"submissionId": str(s.pk)}, format="json")
            for c, s in zip(clients(user), subs, strict=True)
        ]
    )

    assert [r.status_code for r in responses] == [200] * THREADS
    assert Reward.objects.filter(user=user).count() == THREADS
    assert credits_of(user) == THREADS * settings.REWARD_AMOUNT


def lock_waiters_reach(expected: int, timeout: float = 20.0) -> bool:
    """Whether ``expected`` sessions of this test database are blocked on a lock in time.

    Polls PostgreSQL's own view of who waits, so the test observes the interleaving
    instead of hoping a sleep produced it.
    """
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0] >= expected:
                return True
            time.sleep(0.005)
    return False


def test_concurrent_same_idempotency_key_claims_have_one_effect(user, settings, monkeypatch):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "claims": (THREADS, 60)}  # not under test
    sub = passed_submission(user)
    body = {"submissionId": str(sub.pk)}
    key = "concurrent-key-0001"
    # Hook: the first request to finish its claim holds its transaction open until every
    # other request is blocked in PostgreSQL, so they are all in flight at once.
    original_result = services.reward_claim_result
    leader = threading.Lock()
    observed: list[bool] = []

    def held_open(reward: Reward) -> dict[str, Any]:
        if leader.acquire(blocking=False):
            observed.append(lock_waiters_reach(THREADS - 1))
        return original_result(reward)

    monkeypatch.setattr(services, "reward_claim_result", held_open)

    responses = run_concurrently(
        [
            lambda c=c: c.post(CLAIM, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
            for c in clients(user)
        ]
    )

    # Decided behaviour: followers wait on the (user, key) unique index for the first
    # request to commit, then replay its response, so every caller sees the same 200.
    assert observed == [True]
    assert [r.status_code for r in responses] == [200] * THREADS
    assert all(r.json()["data"] == responses[0].json()["data"] for r in responses)
    assert sum("Idempotent-Replayed" not in r for r in responses) == 1
    assert Reward.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1
    assert credits_of(user) == settings.REWARD_AMOUNT


def test_concurrent_mints_issue_one_credential(user, monkeypatch):
    course = course_with_modules(2)
    for module in course.modules.all():
        QuizSubmissionFactory(user=user, quiz=module.quiz, score=5)
    EnrollmentFactory(user=user, course=course, completed_at=timezone.now())
    body = {"courseId": str(course.pk)}
    # Hook: every request passes the "already minted?" pre-check before any inserts, so
    # only the unique (user, course) constraint can stop the 19 late ones.
    all_checked = threading.Barrier(THREADS)
    original_mean = credential_services._mean_percentage

    def after_prechecks(**kwargs: Any) -> int:
        all_checked.wait(timeout=30)
        return original_mean(**kwargs)

    monkeypatch.setattr(credential_services, "_mean_percentage", after_prechecks)

    responses = run_concurrently(
        [lambda c=c: c.post("/api/v1/credentials/mint", body, format="json") for c in clients(user)]
    )

    assert Counter(r.status_code for r in responses) == {201: 1, 409: THREADS - 1}
    assert {r.json()["message"] for r in responses if r.status_code == 409} == {
        "Credential already minted for this course"
    }
    assert Credential.objects.filter(user=user, course=course).count() == 1


def test_concurrent_registrations_of_one_username_create_one_user():
    body = {"username": "racer", "password": "long enough pw"}

    responses = run_concurrently(
        [lambda: APIClient().post("/api/v1/auth/register", body, format="json")] * THREADS
    )

    assert Counter(r.status_code for r in responses) == {201: 1, 409: THREADS - 1}
    assert User.objects.filter(username="racer").count() == 1
    assert ApiToken.objects.count() == 1


def test_concurrent_claims_by_two_users_with_one_key_are_independent(settings):
    users = [UserFactory(), UserFactory()]
    subs = [passed_submission(u) for u in users]
    key = "shared-key-between-users"
    pairs = [
        (client_for(u), s) for u, s in zip(users, subs, strict=True) for _ in range(THREADS // 2)
    ]
    calls = [
        lambda c=c, s=s: c.post(
            CLAIM, {"submissionId": str(s.pk)}, format="json", HTTP_IDEMPOTENCY_KEY=key
        )
        for c, s in pairs
    ]

    responses = run_concurrently(calls)

    assert [r.status_code for r in responses] == [200] * THREADS
    assert [credits_of(u) for u in users] == [settings.REWARD_AMOUNT] * 2
    assert IdempotencyRecord.objects.count() == 2
