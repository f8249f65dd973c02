"""Property 7: with Redis unreachable every hot path answers from the database; once the
breaker is open no request touches the network; an invalidation lost while Redis was away
leaves nothing stale when it returns."""

import threading
import time

import pytest
from redis.connection import AbstractConnection

from caching import connection, keys
from tests.conftest import client_for
from tests.factories import course_with_modules, learner_with_history
from tests.redis_server import free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world():
    course = course_with_modules(2, title="Resilient")
    return learner_with_history(course), course


def hot_paths(course):
    return [
        "/api/v1/courses",
        f"/api/v1/courses/{course.id}",
        "/api/v1/users/me/progress",
        "/api/v1/rewards/history",
        "/api/v1/credentials",
    ]


@pytest.fixture
def connect_attempts(monkeypatch):
    """Counts real socket connection attempts made by redis-py for the test's requests (a
    spy: it still connects), not the repairer's (``connection._repair``)."""
    calls = []
    requests = threading.current_thread()
    original = AbstractConnection.connect_check_health

    def spy(self, *args, **kwargs):
        if not self._sock and threading.current_thread() is requests:
            calls.append(self.port)
        return original(self, *args, **kwargs)

    # connect() and the first command on a closed connection both go through here.
    monkeypatch.setattr(AbstractConnection, "connect_check_health", spy)
    return calls


def test_closed_port_every_hot_path_serves_from_database(
    world, use_redis, connect_attempts, settings
):
    learner, course = world
    client = client_for(learner)
    use_redis(f"redis://127.0.0.1:{free_port()}/0")

    for path in hot_paths(course):
        response = client.get(path)
        assert response.status_code == 200, (path, response.content)
        assert response.json()["data"]
    assert connection.breaker.state == connection.breaker.OPEN
    attempts_until_open = len(connect_attempts)
    assert attempts_until_open >= settings.CACHE_BREAKER_THRESHOLD

    started = time.perf_counter()
    for path in hot_paths(course):
        assert client.get(path).status_code == 200
    assert len(connect_attempts) == attempts_until_open  # no connection was attempted
    assert connection.breaker.state == connection.breaker.OPEN
    assert time.perf_counter() - started < 5


def test_health_ready_reports_redis_down_but_stays_ready(api, use_redis):
    use_redis(f"redis://127.0.0.1:{free_port()}/0")
    response = api.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "error"}


def test_stopped_redis_then_restarted(
    world, private_redis, monkeypatch, api, django_assert_num_queries
):
    learner, course = world
    client = client_for(learner)
    for path in hot_paths(course):
        client.get(path)

    private_redis.stop()
    for path in hot_paths(course):
        assert client.get(path).status_code == 200
    assert connection.breaker.state == connection.breaker.OPEN

    private_redis.start()
    monkeypatch.setattr(connection.breaker, "cooldown", 0)
    for path in hot_paths(course):
        assert client.get(path).status_code == 200
    assert connection.breaker.state == connection.breaker.CLOSED
    api.get("/api/v1/courses")
    with django_assert_num_queries(0):  # the cache serves again
        assert api.get("/api/v1/courses").status_code == 200


def test_invalidation_lost_while_redis_was_frozen_leaves_nothing_stale(
    world, private_redis, monkeypatch
):
    learner, course = world
    client = client_for(learner)
    path = f"/api/v1/courses/{course.id}"
    assert client.get(path).json()["data"]["title"] == "Resilient"
    assert client.get(path).json()["data"]["title"] == "Resilient"  # cached

    private_redis.pause()  # the entry survives in the frozen server
    try:
        course.title = "Changed during the outage"
        course.save(update_fields=["title"])  # its invalidation times out
        assert client.get(path).json()["data"]["title"] == "Changed during the outage"
    finally:
        private_redis.resume()
    monkeypatch.setattr(connection.breaker, "cooldown", 0)

    assert client.get(path).json()["data"]["title"] == "Changed during the outage"
    assert client.get(path).json()["data"]["title"] == "Changed during the outage"
    assert connection.breaker.state == connection.breaker.CLOSED


def test_single_failed_invalidation_without_open_breaker_bumps_epoch(
    world, private_redis, redis_client, settings
):
    settings.CACHE_EPOCH_REPAIR_MS = 0  # left to the next read (the repairer: below)
    learner, course = world
    client = client_for(learner)
    path = f"/api/v1/courses/{course.id}"
    client.get(path)
    private_redis.pause()
    try:
        course.title = "One lost bump"
        course.save(update_fields=["title"])
    finally:
        private_redis.resume()
    assert connection.breaker.state == connection.breaker.CLOSED  # one failure: still closed
    # The course's shards (list pages: every shard; its detail: its own) are to be bumped.
    assert connection.stale_shards() == set(keys.EVERY_SHARD)
    epochs = [int(redis_client.get(keys.epoch_key(shard)) or 0) for shard in keys.EVERY_SHARD]
    assert client.get(path).json()["data"]["title"] == "One lost bump"
    # One Redis: the read bumped every marked shard, in the pipeline it sent anyway.
    assert connection.stale_shards() == set()
    assert [int(redis_client.get(keys.epoch_key(s))) for s in keys.EVERY_SHARD] == [
        epoch + 1 for epoch in epochs
    ]


def test_a_lost_invalidation_is_bumped_as_soon_as_redis_answers_without_a_read(
    world, private_redis, redis_client, settings
):
    """Other processes hold no mark of this process's lost invalidation: they would read
    what it was to remove until the epochs are bumped, so the bump does not wait for this
    process's next read of those shards."""
    learner, course = world
    path = f"/api/v1/courses/{course.id}"
    client = client_for(learner)
    client.get(path)
    before = [int(redis_client.get(keys.epoch_key(s)) or 0) for s in keys.EVERY_SHARD]
    private_redis.pause()  # the entry survives in the frozen server
    try:
        course.title = "Bumped without a read"
        course.save(update_fields=["title"])  # its invalidation times out
        assert connection.stale_shards() == set(keys.EVERY_SHARD)
    finally:
        private_redis.resume()
    # A bounded wait for the repairer (past one breaker cooldown), with no read meanwhile.
    wait_for(
        lambda: not connection.stale_shards(),
        "the marked shards bumped",
        3 * settings.CACHE_BREAKER_COOLDOWN,
    )
    # Every epoch went up (by more than one if attempts timed out in the frozen server and
    # ran at its resume), so what any process reads now is filled anew.
    after = [int(redis_client.get(keys.epoch_key(s)) or 0) for s in keys.EVERY_SHARD]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    assert client.get(path).json()["data"]["title"] == "Bumped without a read"


def test_write_in_a_process_whose_breaker_is_open_still_invalidates(world, api):
    """Other processes may be reading a Redis that is up: invalidations ignore the breaker."""
    _, course = world
    path = f"/api/v1/courses/{course.id}"
    api.get(path)
    connection.breaker.state = connection.breaker.OPEN
    connection.breaker.opened_at = time.monotonic()

    course.title = "Written while this process skipped Redis"
    course.save(update_fields=["title"])

    connection.breaker.reset()  # as another process that never opened its breaker
    assert api.get(path).json()["data"]["title"] == "Written while this process skipped Redis"


def test_a_write_during_an_outage_does_not_close_the_open_breaker(world, private_redis):
    """An enrollment's count refresh that read no shard's epoch has nothing to send; it once
    counted as a success and closed the breaker while Redis was still frozen."""
    learner, course = world
    client = client_for(learner)
    other = course_with_modules(1, title="Enrolled during the outage")
    private_redis.pause()
    try:
        for _ in range(connection.breaker.threshold):
            client.get(f"/api/v1/courses/{course.id}")
        assert connection.breaker.state == connection.breaker.OPEN
        assert client.post(f"/api/v1/courses/{other.id}/enroll").status_code == 201
        assert connection.breaker.state == connection.breaker.OPEN
    finally:
        private_redis.resume()
