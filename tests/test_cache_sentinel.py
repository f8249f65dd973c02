"""Sentinel mode against a real master, replica and three Sentinels (caching.topology).

Replication is cut so that a write reaches the master only; then the master
is killed (SIGKILL) and the Sentinels promote the replica, which holds the entries that
write had invalidated but not the invalidation. The promoted master must not serve them.
"""

import pytest
import redis
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from caching import connection, keys
from courses.models import Course
from tests.factories import course_with_modules

pytestmark = pytest.mark.django_db(transaction=True)


def title(api, path: str) -> str:
    response = api.get(path)
    assert response.status_code == 200, response.content
    return response.json()["data"]["title"]


def test_reads_and_writes_go_to_the_master_sentinel_names(private_sentinels, api, redis_client):
    course = course_with_modules(1, title="Original")
    path = f"/api/v1/courses/{course.id}"
    assert title(api, path) == "Original"
    master = redis.Redis(port=private_sentinels.master.port)
    assert master.exists(keys.master_key())
    assert any(key.startswith(b"chainlearn:courses:detail:") for key in master.keys("*"))
    assert redis_client.connection_pool.connection_kwargs.get("port") != private_sentinels.master


def test_a_promoted_replica_serves_nothing_its_old_master_had_invalidated(private_sentinels, api):
    setup = private_sentinels
    course = course_with_modules(1, title="Original")
    path = f"/api/v1/courses/{course.id}"
    assert title(api, path) == "Original"  # filled on the master
    old_master = redis.Redis(port=setup.master.port)
    assert old_master.execute_command("WAIT", 1, 5000) == 1  # the replica has the entry
    generation = keys.generation_key("courses:detail", str(course.id))
    before = old_master.get(generation)

    setup.cut_replication()
    Course.objects.filter(pk=course.pk).update(title="Edited")
    assert old_master.get(generation) != before  # the bump reached the master only
    assert title(api, path) == "Edited"
    setup.master.stop(kill=True)
    setup.wait_promoted(setup.replica)

    new_master = redis.Redis(port=setup.replica.port)
    assert new_master.get(generation) == before  # the promoted replica lost the bump
    epoch = int(new_master.get(keys.epoch_key()) or 0)
    # The first call on a connection to the dead master fails: served from the database.
    assert title(api, path) == "Edited"
    connection.breaker.reset()
    assert title(api, path) == "Edited"  # through the new master: the old entry is a miss
    assert int(new_master.get(keys.epoch_key()) or 0) == epoch + 1
    with CaptureQueriesContext(db_connection) as queries:
        assert title(api, path) == "Edited"
    assert not queries.captured_queries  # and cached again on the new master
