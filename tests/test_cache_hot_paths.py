"""Property 1 for each hot path: a miss queries the database, the next request is a hit
with no SQL for the shared part, and both bodies are identical.

A list or detail miss draws a live-count version (``caching.counts``) before its load, so
the counts it read are stored beside the entry and the next request needs no SQL."""

import pytest

from tests.conftest import client_for
from tests.factories import course_with_modules, learner_with_history
from tests.helpers import redis_keys

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def learner_world():
    """A learner with an enrollment, a claimed reward and a credential, plus other courses."""
    course = course_with_modules(3, title="Rust 101")
    course_with_modules(2, title="Go 101", difficulty="advanced")
    return learner_with_history(course), course


def body_data(response):
    assert response.status_code == 200, response.content
    body = response.json()
    return body["data"], body.get("pagination")


@pytest.mark.parametrize(
    ("path", "miss_queries"),
    # count version, count, page
    [("/api/v1/courses", 3), ("/api/v1/courses?difficulty=advanced&page=1&limit=5", 3)],
)
def test_course_list_anonymous_miss_then_hit(
    api, learner_world, django_assert_num_queries, path, miss_queries
):
    with django_assert_num_queries(miss_queries):
        first = body_data(api.get(path))
    with django_assert_num_queries(0):
        second = body_data(api.get(path))
    assert first == second


def test_course_detail_anonymous_miss_then_hit(api, learner_world, django_assert_num_queries):
    _, course = learner_world
    with django_assert_num_queries(3):  # count version, course, modules
        first = body_data(api.get(f"/api/v1/courses/{course.id}"))
    with django_assert_num_queries(0):
        second = body_data(api.get(f"/api/v1/courses/{course.id}"))
    assert first == second
    assert first[0]["isEnrolled"] is False


def test_course_list_authenticated_hit_costs_only_the_enrollment_lookup(
    learner_world, django_assert_num_queries
):
    learner, course = learner_world
    client = client_for(learner)
    # token (principal miss), count version, count, page, isEnrolled
    with django_assert_num_queries(5):
        first = body_data(client.get("/api/v1/courses"))
    with django_assert_num_queries(1):  # isEnrolled; the token is a principal-cache hit
        second = body_data(client.get("/api/v1/courses"))
    assert first == second
    enrolled = {item["id"]: item["isEnrolled"] for item in second[0]}
    assert enrolled[str(course.id)] is True
    assert sum(enrolled.values()) == 1


def test_course_detail_authenticated_hit(learner_world, django_assert_num_queries):
    learner, course = learner_world
    client = client_for(learner)
    with django_assert_num_queries(5):  # token, count version, course, modules, isEnrolled
        first = body_data(client.get(f"/api/v1/courses/{course.id}"))
    with django_assert_num_queries(1):  # isEnrolled
        second = body_data(client.get(f"/api/v1/courses/{course.id}"))
    assert first == second
    assert second[0]["isEnrolled"] is True


@pytest.mark.parametrize(
    ("path", "miss_queries"),
    [
        ("/api/v1/users/me", 1),  # token and profile in one principal query
        ("/api/v1/users/me/progress", 2),  # token, one progress query
        ("/api/v1/rewards/history", 3),  # token, count, page
        ("/api/v1/rewards/history?page=1&limit=5", 3),
        ("/api/v1/credentials", 2),  # token, list
    ],
)
def test_per_user_paths_miss_then_hit_with_no_sql(
    learner_world, django_assert_num_queries, path, miss_queries
):
    learner, _ = learner_world
    client = client_for(learner)
    with django_assert_num_queries(miss_queries):
        first = body_data(client.get(path))
    with django_assert_num_queries(0):  # token and data both from Redis
        second = body_data(client.get(path))
    assert first == second
    assert first[0]  # non-empty: the learner has progress, a reward and a credential


def test_cache_disabled_always_reads_the_database(
    api, learner_world, settings, django_assert_num_queries, redis_client
):
    settings.CACHE_ENABLED = False
    _, course = learner_world
    for _ in range(2):
        with django_assert_num_queries(2):
            api.get("/api/v1/courses")
        with django_assert_num_queries(2):
            api.get(f"/api/v1/courses/{course.id}")
    # Writes still invalidate (other processes may cache), but nothing was read or stored.
    assert redis_keys(redis_client, "chainlearn:*:v*") == []
    assert redis_keys(redis_client, "chainlearn:stats:*") == []


def test_cached_and_uncached_bodies_are_identical(learner_world, settings):
    learner, course = learner_world
    client = client_for(learner)
    paths = [
        "/api/v1/courses",
        f"/api/v1/courses/{course.id}",
        "/api/v1/users/me/progress",
        "/api/v1/rewards/history",
        "/api/v1/credentials",
    ]
    cached = [body_data(client.get(p)) for p in paths]
    cached_again = [body_data(client.get(p)) for p in paths]
    settings.CACHE_ENABLED = False
    uncached = [body_data(client.get(p)) for p in paths]
    assert cached == cached_again == uncached
