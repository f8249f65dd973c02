"""Sentinel mode against a real master, replica and three Sentinels (caching.topology).

A killed master under load (a gunicorn server reading, this process writing): no request
fails, no read is stale, and the hit rate comes back once the replica is promoted.

Replication is cut so that a write reaches the master only; then the master
is killed (SIGKILL) and the Sentinels promote the replica, which holds the entries that
write had invalidated but not the invalidation. The promoted master must not serve them.
"""

import pytest
import redis
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from caching import connection, keys
from chainlearn.caches import course_detail_cache
from courses.models import Course
from tests.factories import course_with_modules
from tests.failover_load import under_load
from tests.live_server import Gunicorn

pytestmark = pytest.mark.django_db(transaction=True)


def title(api, path: str) -> str:
    response = api.get(path)
    assert response.status_code == 200, response.content
    return response.json()["data"]["title"]


def test_reads_and_writes_go_to_the_master_sentinel_names(private_sentinels, api):
    course = course_with_modules(1, title="Original")
    path = f"/api/v1/courses/{course.id}"
    assert title(api, path) == "Original"
    master = redis.Redis(port=private_sentinels.master.port)
    assert all(master.exists(keys.master_key(shard)) for shard in keys.EVERY_SHARD)
    assert any(key.startswith(b"chainlearn:courses:detail:") for key in master.keys("*"))


def test_a_promoted_replica_serves_nothing_its_old_master_had_invalidated(private_sentinels, api):
    setup = private_sentinels
    course = course_with_modules(1, title="Original")
    path = f"/api/v1/courses/{course.id}"
    assert title(api, path) == "Original"  # filled on the master
    old_master = redis.Redis(port=setup.master.port)
    assert old_master.execute_command("WAIT", 1, 5000) == 1  # the replica has the entry
    slot = course_detail_cache.slot({"course_id": course.id})
    generation = slot.scope_gen_key
    before = old_master.get(generation)

    setup.cut_replication()
    Course.objects.filter(pk=course.pk).update(title="Edited")
    assert old_master.get(generation) != before  # the bump reached the master only
    assert title(api, path) == "Edited"
    setup.master.stop(kill=True)
    setup.wait_promoted(setup.replica)

    new_master = redis.Redis(port=setup.replica.port)
    assert new_master.get(generation) == before  # the promoted replica lost the bump
    epochs = [int(new_master.get(keys.epoch_key(shard)) or 0) for shard in keys.EVERY_SHARD]
    # The first call on a connection to the dead master fails: served from the database.
    assert title(api, path) == "Edited"
    connection.reset_breakers()
    assert title(api, path) == "Edited"  # through the new master: the old entry is a miss
    # One master: every shard's epoch went up by one.
    after = [int(new_master.get(keys.epoch_key(shard)) or 0) for shard in keys.EVERY_SHARD]
    assert after == [epoch + 1 for epoch in epochs]
    with CaptureQueriesContext(db_connection) as queries:
        assert title(api, path) == "Edited"
    assert not queries.captured_queries  # and cached again on the new master


def test_a_killed_master_under_load_fails_no_request_and_serves_nothing_stale(private_sentinels):
    setup = private_sentinels
    courses = [course_with_modules(1, title="Course 0") for _ in range(20)]
    server = Gunicorn(
        workers=2,
        threads=4,
        CACHE_REDIS_MODE="sentinel",
        CACHE_REDIS_SENTINELS=setup.addresses,
        CACHE_REDIS_SERVICE=setup.SERVICE,
        CACHE_REDIS_DB="0",
    )
    server.start()
    try:
        outcome = under_load(server, courses, lambda: fail_over(setup))
    finally:
        server.stop()
    print(outcome.summary())
    assert outcome.errors == []
    assert outcome.stale == []
    assert outcome.recovered_after is not None


def fail_over(setup) -> float:
    """Kill the master; seconds until the Sentinels promoted its replica."""
    setup.master.stop(kill=True)
    return setup.wait_promoted(setup.replica)
