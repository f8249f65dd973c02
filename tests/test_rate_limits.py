"""Rate limits (Redis fixed windows shared by every worker): auth per client IP, reward
claims per user; a 429 is the error envelope with Retry-After and changes nothing; with
Redis unreachable the limiter fails open."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client import REGISTRY
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

from caching import keys
from courses.models import QuizSubmission
from rewards.models import Reward
from tests.conftest import client_for
from tests.factories import (
    PASSWORD,
    CourseFactory,
    ModuleFactory,
    QuizFactory,
    QuizSubmissionFactory,
    UserFactory,
    token_for,
)
from tests.helpers import assert_error, assert_success
from tests.live_server import Gunicorn
from tests.redis_server import free_port
from users.models import ApiToken, User

pytestmark = pytest.mark.django_db(transaction=True)

REGISTER = "/api/v1/auth/register"
TOKEN = "/api/v1/auth/token"
LOGOUT = "/api/v1/auth/logout"
CLAIM = "/api/v1/rewards/claim"
IP_A = "198.51.100.7"
IP_B = "203.0.113.42"
WRONG_LOGIN = {"username": "nobody-here", "password": "not-the-password"}


def assert_rate_limited(response: Any, window: int) -> int:
    """A 429 error envelope with an integer Retry-After in 1..window; returns it."""
    assert_error(response, 429, "RATE_LIMITED")
    retry_after = response["Retry-After"]
    assert re.fullmatch(r"[0-9]+", retry_after), retry_after
    assert 1 <= int(retry_after) <= window
    return int(retry_after)


def wrong_login(api: APIClient, ip: str) -> Any:
    return api.post(TOKEN, WRONG_LOGIN, format="json", REMOTE_ADDR=ip)


def passed_submission(user: User) -> QuizSubmission:
    quiz = QuizFactory(module=ModuleFactory(course=CourseFactory()))
    return QuizSubmissionFactory(user=user, quiz=quiz, score=5)


def claim(client: APIClient, submission: QuizSubmission, **extra: str) -> Any:
    return client.post(CLAIM, {"submissionId": str(submission.id)}, format="json", **extra)


def credits_of(user: User) -> int:
    return User.objects.values_list("credits", flat=True).get(pk=user.pk)


def sample(name: str, scope: str) -> float:
    return REGISTRY.get_sample_value(name, {"scope": scope}) or 0.0


# --- auth: per client IP -------------------------------------------------------------------


def test_21st_auth_request_from_one_ip_in_the_window_is_429(api, redis_client):
    limited_before = sample("rate_limited_total", "auth")
    for _ in range(20):
        assert_error(wrong_login(api, IP_A), 401, "UNAUTHORIZED")

    response = wrong_login(api, IP_A)

    assert_rate_limited(response, 300)
    assert response.json()["statusCode"] == 429
    assert sample("rate_limited_total", "auth") == limited_before + 1
    # the window is the Redis key's lifetime, and Retry-After is what is left of it
    ttl_ms = redis_client.pttl(keys.rate_limit_key("auth", IP_A))
    assert 0 < ttl_ms <= 300_000
    assert int(response["Retry-After"]) in {ttl_ms // 1000, ttl_ms // 1000 + 1}


def test_register_token_and_logout_share_one_auth_budget_per_ip(api):
    user = UserFactory()
    for i in range(7):
        body = {"username": f"newcomer{i}", "password": "a-long-password-1"}
        assert_success(api.post(REGISTER, body, format="json", REMOTE_ADDR=IP_A), 201)
    for _ in range(7):
        body = {"username": user.username, "password": PASSWORD}
        assert_success(api.post(TOKEN, body, format="json", REMOTE_ADDR=IP_A))
    for _ in range(6):
        client = client_for(user)
        assert_success(client.post(LOGOUT, REMOTE_ADDR=IP_A))

    assert_rate_limited(wrong_login(api, IP_A), 300)
    assert_rate_limited(
        api.post(
            REGISTER, {"username": "late", "password": "x" * 12}, format="json", REMOTE_ADDR=IP_A
        ),
        300,
    )
    assert_rate_limited(client_for(user).post(LOGOUT, REMOTE_ADDR=IP_A), 300)


def test_auth_limits_of_different_ips_are_independent(api):
    for _ in range(20):
        wrong_login(api, IP_A)
    assert_rate_limited(wrong_login(api, IP_A), 300)

    for _ in range(20):
        assert_error(wrong_login(api, IP_B), 401, "UNAUTHORIZED")
    assert_rate_limited(wrong_login(api, IP_B), 300)
    assert_rate_limited(wrong_login(api, IP_A), 300)


def test_rate_limited_auth_requests_change_no_rows(api):
    user = UserFactory()
    raw_token = token_for(user)
    for _ in range(20):
        wrong_login(api, IP_A)
    users, tokens = User.objects.count(), ApiToken.objects.count()

    register = api.post(
        REGISTER,
        {"username": "would-be", "password": "a-long-password-1"},
        format="json",
        REMOTE_ADDR=IP_A,
    )
    login = api.post(
        TOKEN, {"username": user.username, "password": PASSWORD}, format="json", REMOTE_ADDR=IP_A
    )
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_token}")
    logout = bearer.post(LOGOUT, REMOTE_ADDR=IP_A)

    for response in (register, login, logout):
        assert_rate_limited(response, 300)
    assert (User.objects.count(), ApiToken.objects.count()) == (users, tokens)
    assert not User.objects.filter(username="would-be").exists()
    # the logout was refused, so its token still works
    assert bearer.get("/api/v1/users/me", REMOTE_ADDR=IP_A).status_code == 200


def test_auth_limit_follows_settings(api, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth": (3, 120)}
    for _ in range(3):
        assert_error(wrong_login(api, IP_A), 401, "UNAUTHORIZED")
    assert_rate_limited(wrong_login(api, IP_A), 120)


# --- claims: per user ----------------------------------------------------------------------


def test_11th_claim_attempt_by_one_user_in_a_minute_is_429(settings):
    learner, other = UserFactory(), UserFactory()
    client, other_client = client_for(learner), client_for(other)
    submissions = [passed_submission(learner) for _ in range(11)]
    for submission in submissions[:10]:
        assert_success(claim(client, submission))
    credits, rewards = credits_of(learner), Reward.objects.count()
    assert credits == 10 * settings.REWARD_AMOUNT

    response = claim(client, submissions[10])

    assert_rate_limited(response, 60)
    assert credits_of(learner) == credits
    assert Reward.objects.count() == rewards
    assert not Reward.objects.filter(submission=submissions[10]).exists()
    # another learner has a budget of their own
    assert_success(claim(other_client, passed_submission(other)))
    assert credits_of(other) == settings.REWARD_AMOUNT


def test_refused_claims_count_and_the_limit_is_per_user_not_per_ip():
    learner = UserFactory()
    client = client_for(learner)
    claimed, fresh = passed_submission(learner), passed_submission(learner)
    assert_success(claim(client, claimed, REMOTE_ADDR=IP_A))
    for i in range(9):  # already claimed: 409, from changing addresses
        assert_error(claim(client, claimed, REMOTE_ADDR=f"192.0.2.{i + 1}"), 409, "CONFLICT")
    credits = credits_of(learner)

    assert_rate_limited(claim(client, fresh, REMOTE_ADDR=IP_B), 60)
    assert credits_of(learner) == credits
    assert not Reward.objects.filter(submission=fresh).exists()


def test_idempotent_claim_replays_are_limited_too():
    learner = UserFactory()
    client = client_for(learner)
    submission = passed_submission(learner)
    key = {"HTTP_IDEMPOTENCY_KEY": "rate-limit-key-0001"}
    for _ in range(10):
        assert_success(claim(client, submission, **key))
    assert_rate_limited(claim(client, submission, **key), 60)
    assert Reward.objects.filter(submission=submission).count() == 1


# --- only the limited views ----------------------------------------------------------------


def test_other_views_are_not_rate_limited(api, settings, redis_client):
    settings.RATE_LIMITS = {"auth": (1, 300), "claims": (1, 60)}
    assert api_settings.DEFAULT_THROTTLE_CLASSES == []
    learner = UserFactory()
    client = client_for(learner)
    course = CourseFactory()
    paths = [
        "/api/v1/courses",
        f"/api/v1/courses/{course.id}",
        "/api/v1/users/me",
        "/api/v1/users/me/progress",
        "/api/v1/rewards/history",
        "/api/v1/credentials",
    ]
    for _ in range(3):
        for path in paths:
            assert client.get(path, REMOTE_ADDR=IP_A).status_code == 200, path
        update = client.put(
            "/api/v1/users/me", {"displayName": "Ada"}, format="json", REMOTE_ADDR=IP_A
        )
        assert update.status_code == 200
    assert list(redis_client.scan_iter(f"{keys.PREFIX}:ratelimit:*")) == []
    # while the limited ones are limited at these settings
    assert_error(wrong_login(api, IP_A), 401, "UNAUTHORIZED")
    assert_rate_limited(wrong_login(api, IP_A), 300)


# --- fail open -----------------------------------------------------------------------------


def test_redis_unreachable_the_limiter_fails_open(api, use_redis):
    use_redis(f"redis://127.0.0.1:{free_port()}/0")
    before = sample("rate_limit_fail_open_total", "auth")

    statuses = [wrong_login(api, IP_A).status_code for _ in range(25)]

    assert statuses == [401] * 25
    assert sample("rate_limit_fail_open_total", "auth") == before + 25


def test_redis_unreachable_claims_still_go_through(use_redis, settings):
    learner = UserFactory()
    client = client_for(learner)
    submissions = [passed_submission(learner) for _ in range(12)]
    use_redis(f"redis://127.0.0.1:{free_port()}/0")
    before = sample("rate_limit_fail_open_total", "claims")

    for submission in submissions:
        assert_success(claim(client, submission))

    assert credits_of(learner) == 12 * settings.REWARD_AMOUNT
    assert sample("rate_limit_fail_open_total", "claims") == before + 12


# --- across worker processes ---------------------------------------------------------------


@pytest.fixture
def gunicorn():
    srv = Gunicorn(workers=2)
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.slow
def test_auth_limit_is_shared_by_gunicorn_workers(gunicorn):
    barrier = threading.Barrier(25)

    def attempt(_: int) -> int:
        barrier.wait()
        status, body = gunicorn.request("POST", TOKEN, body=WRONG_LOGIN)
        if status == 429:
            assert json.loads(body)["error"] == "RATE_LIMITED"
        return status

    with ThreadPoolExecutor(max_workers=25) as pool:
        statuses = list(pool.map(attempt, range(25)))

    assert statuses.count(429) == 5
    assert sorted(set(statuses) - {429}) == [401]
    text = gunicorn.metrics()
    match = re.search(r'^rate_limited_total\{scope="auth"\} (\S+)$', text, re.M)
    assert match is not None, text
    assert float(match.group(1)) == 5
