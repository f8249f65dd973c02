"""Property 8: per-user entries are keyed by the user, and shared entries hold nothing
per-user. User B, reading right after user A filled the cache, sees only B's data."""

import pytest

from tests.conftest import client_for
from tests.factories import UserFactory, course_with_modules, learner_with_history
from tests.helpers import redis_keys

pytestmark = pytest.mark.django_db(transaction=True)

PER_USER = [
    "/api/v1/users/me/progress",
    "/api/v1/rewards/history",
    "/api/v1/credentials",
    "/api/v1/rewards/history?page=1&limit=5",
]


@pytest.fixture
def two_learners():
    course = course_with_modules(2, title="Shared course")
    alice = learner_with_history(course, UserFactory(username="alice"))
    return course, alice, UserFactory(username="bob")


def test_per_user_entries_never_cross_users(two_learners, redis_client):
    _, alice, bob = two_learners
    as_alice, as_bob = client_for(alice), client_for(bob)
    alice_views = {p: as_alice.get(p).json()["data"] for p in PER_USER}
    bob_views = {p: as_bob.get(p).json()["data"] for p in PER_USER}

    assert alice_views["/api/v1/users/me/progress"]["enrolledCourses"] == 1
    assert bob_views["/api/v1/users/me/progress"] == {
        "enrolledCourses": 0,
        "completedCourses": 0,
        "totalQuizScore": 0,
        "credentialsEarned": 0,
        "rewardsClaimed": 0,
    }
    assert len(alice_views["/api/v1/rewards/history"]) == 1
    assert bob_views["/api/v1/rewards/history"] == []
    assert bob_views["/api/v1/credentials"] == []
    per_user_keys = [
        k.decode()
        for k in redis_keys(redis_client, "chainlearn:*:v*")
        if not k.endswith(b":lease") and b"courses:" not in k and b"users:principal" not in k
    ]
    assert {key.split(":")[5] for key in per_user_keys} == {str(alice.id), str(bob.id)}


def test_shared_entries_hold_nothing_per_user(two_learners, redis_client, api):
    course, alice, bob = two_learners
    assert client_for(alice).get("/api/v1/courses").json()["data"][0]["isEnrolled"] is True
    assert client_for(bob).get("/api/v1/courses").json()["data"][0]["isEnrolled"] is False
    assert api.get(f"/api/v1/courses/{course.id}").json()["data"]["isEnrolled"] is False
    for key in redis_keys(redis_client, "chainlearn:courses:*:v*"):
        if key.endswith(b":lease"):
            continue
        payload = redis_client.get(key)
        assert b'"isEnrolled":true' not in payload  # list items hold the anonymous false
        assert str(alice.id).encode() not in payload
        assert b"alice" not in payload
