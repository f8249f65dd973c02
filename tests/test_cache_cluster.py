"""Cluster mode against a real Redis Cluster of three masters and three replicas
(caching.keys, caching.topology).

- Every namespace's entries land on every master (the shards spread them).
- A write whose bump reached a master but not its replica, then the master killed
  (SIGKILL) and the replica promoted: the promoted master serves nothing that write had
  invalidated, and only the failed master's shards lose their entries.
- A killed master under load, and slots moved with ``redis-cli --cluster reshard`` under
  load (a gunicorn server reading, this process writing): no request fails, no read is
  stale, and the hit rate comes back.

The invalidation matrix, the races, single fill and isolation run on a cluster in CI's
third pass (.ci/test).
"""

import os
import re
import subprocess
import sys
import time
from collections import Counter

import pytest
import redis
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from redis.crc import key_slot

from caching import connection, keys
from chainlearn.caches import course_detail_cache
from courses.models import Course
from tests.conftest import client_for
from tests.factories import CourseFactory, UserFactory, course_with_modules
from tests.failover_load import under_load
from tests.live_server import Gunicorn

pytestmark = pytest.mark.django_db(transaction=True)

PER_USER = ["/api/v1/users/me/progress", "/api/v1/rewards/history", "/api/v1/credentials"]


def shard_slot(shard: int) -> int:
    return key_slot(keys.tag(shard).encode())


def entries_per_master(setup) -> dict[int, Counter]:
    """Per master (by port): how many entries of each namespace it holds."""
    found: dict[int, Counter] = {}
    for master in setup.masters():
        counted: Counter = Counter()
        for key in redis.Redis(port=master.port).scan_iter(match="chainlearn:*:v*", count=1000):
            name = key.decode()
            if name.endswith(":lease"):
                continue
            namespace = name.split(":v", 1)[0].removeprefix("chainlearn:")
            counted[namespace] += 1
        found[master.port] = counted
    return found


def test_the_entries_of_every_namespace_land_on_every_master(private_cluster, api):
    courses = [CourseFactory(title=f"Course {n}") for n in range(30)]
    for course in courses:
        assert api.get(f"/api/v1/courses/{course.id}").status_code == 200
    for page in range(1, 16):
        assert api.get(f"/api/v1/courses?page={page}&limit=2").status_code == 200
    for _ in range(30):
        client = client_for(UserFactory())
        for path in PER_USER:
            assert client.get(path).status_code == 200

    found = entries_per_master(private_cluster)
    print({port: dict(counted) for port, counted in found.items()})
    namespaces = {
        "courses:list",
        "courses:detail",
        "users:principal",
        "users:progress",
        "rewards:history",
        "credentials:list",
    }
    assert len(found) == 3
    for counted in found.values():
        assert set(counted) == namespaces  # each namespace on each master
    assert sum(c["courses:detail"] for c in found.values()) == 30
    assert sum(c["users:progress"] for c in found.values()) == 30


def epochs(client) -> list[int]:
    return [int(client.get(keys.epoch_key(shard)) or 0) for shard in keys.EVERY_SHARD]


def title(api, path: str) -> str:
    response = api.get(path)
    assert response.status_code == 200, response.content
    return response.json()["data"]["title"]


def test_a_promoted_replica_serves_nothing_its_old_master_had_invalidated(private_cluster, api):
    setup = private_cluster
    course = course_with_modules(1, title="Original")
    path = f"/api/v1/courses/{course.id}"
    slot = course_detail_cache.slot({"course_id": course.id})
    master = setup.master_of_slot(shard_slot(slot.shard))
    replica = setup.replica_of(master)
    assert title(api, path) == "Original"  # filled on the master
    old_master = redis.Redis(port=master.port)
    assert old_master.execute_command("WAIT", 1, 5000) == 1  # the replica has the entry
    before = old_master.get(slot.scope_gen_key)
    cluster = redis.RedisCluster(host="127.0.0.1", port=setup.nodes[0].port)
    epochs_before = epochs(cluster)
    lost = [s for s in keys.EVERY_SHARD if setup.master_of_slot(shard_slot(s)) is master]

    setup.cut_replication(master)
    Course.objects.filter(pk=course.pk).update(title="Edited")
    assert old_master.get(slot.scope_gen_key) != before  # the bump reached the master only
    assert title(api, path) == "Edited"
    master.stop(kill=True)
    setup.wait_promoted(replica)

    new_master = redis.Redis(port=replica.port)
    assert new_master.get(slot.scope_gen_key) == before  # the promoted replica lost the bump
    # The first call on a connection to the dead master fails: served from the database.
    assert title(api, path) == "Edited"
    connection.reset_breakers()
    assert title(api, path) == "Edited"  # through the new master: the old entry is a miss
    cluster = redis.RedisCluster(host="127.0.0.1", port=replica.port)
    after = epochs(cluster)
    # The failed master's shards went up by one; the others' entries stay.
    assert [s for s in keys.EVERY_SHARD if after[s] != epochs_before[s]] == lost
    assert all(after[s] == epochs_before[s] + 1 for s in lost)
    with CaptureQueriesContext(db_connection) as queries:
        assert title(api, path) == "Edited"
    assert not queries.captured_queries  # and cached again on the new master


def cluster_server(setup) -> Gunicorn:
    server = Gunicorn(
        workers=2,
        threads=4,
        CACHE_REDIS_MODE="cluster",
        CACHE_REDIS_NODES=setup.addresses(),
        CACHE_L1="false",
    )
    server.start()
    return server


def test_a_killed_master_under_load_fails_no_request_and_serves_nothing_stale(private_cluster):
    setup = private_cluster
    courses = [course_with_modules(1, title="Course 0") for _ in range(20)]
    victim = setup.masters()[0]
    replica = setup.replica_of(victim)
    lost = [s for s in keys.EVERY_SHARD if setup.master_of_slot(shard_slot(s)) is victim]
    kept = [s for s in keys.EVERY_SHARD if s not in lost]
    cluster = redis.RedisCluster(host="127.0.0.1", port=replica.port)
    server = cluster_server(setup)

    def fail_over() -> float:
        victim.stop(kill=True)
        return setup.wait_promoted(replica)

    try:
        before = epochs(cluster)
        outcome = under_load(server, courses, fail_over)
        after = epochs(cluster)
    finally:
        server.stop()
    print(outcome.summary(), f"; shards of the killed master {lost}")
    print(
        "DEBUG",
        before,
        after,
        sorted({(i, keys.shard_of(str(courses[i].id), "")) for _, _, i in outcome.stale}),
    )
    assert outcome.errors == []
    assert outcome.stale == []
    assert outcome.recovered_after is not None
    # The other masters' shards kept their entries (their epochs did not move).
    assert [after[s] for s in kept] == [before[s] for s in kept]
    assert all(after[s] > before[s] for s in lost)


def test_moving_slots_under_load_fails_no_request_and_serves_nothing_stale(private_cluster):
    setup = private_cluster
    courses = [course_with_modules(1, title="Course 0") for _ in range(20)]
    source = setup.master_of_slot(0)
    target = next(master for master in setup.masters() if master is not source)
    # The reshard moves the source's lowest slots: those of these shards among them.
    moved = [s for s in keys.EVERY_SHARD if shard_slot(s) < 2000]
    assert moved
    server = cluster_server(setup)

    def reshard() -> float:
        started = time.monotonic()
        setup.reshard(source, target, 2000)
        return time.monotonic() - started

    try:
        outcome = under_load(server, courses, reshard)
        text = server.metrics()
    finally:
        server.stop()
    cache_errors = sum(
        float(v) for v in re.findall(r"^cache_errors_total\{[^}]*\} (\S+)$", text, re.M)
    )
    print(outcome.summary(), f"; shards moved {moved}; cache errors absorbed {cache_errors:.0f}")
    assert all(setup.master_of_slot(shard_slot(s)) is target for s in moved)
    assert outcome.errors == []
    assert outcome.stale == []
    assert outcome.recovered_after is not None


def test_each_master_has_its_own_breaker(private_cluster, api, settings):
    """A master's breaker opening stops the reads of its own shards only."""
    courses = [CourseFactory(title=f"Course {n}") for n in range(12)]
    shards = {keys.shard_of(str(course.id), ""): course for course in courses}
    owner = {s: private_cluster.master_of_slot(shard_slot(s)).port for s in shards}
    down, up = next(
        (a, b) for a in shards for b in shards if owner[a] != owner[b]
    )  # two courses whose shards sit on different masters
    for course in (shards[down], shards[up]):
        api.get(f"/api/v1/courses/{course.id}")  # cached
    settings.CACHE_EPOCH_REPAIR_MS = 0  # the marks stay for the last assertion
    (gate,) = connection.breakers_for([down])
    assert connection.breakers_for([up]) != [gate]
    for _ in range(settings.CACHE_BREAKER_THRESHOLD):
        gate.record_failure()
    assert gate.state == gate.OPEN

    with CaptureQueriesContext(db_connection) as queries:
        assert title(api, f"/api/v1/courses/{shards[up].id}") == shards[up].title
    assert not queries.captured_queries  # the other master's shard: from Redis
    with CaptureQueriesContext(db_connection) as queries:
        assert title(api, f"/api/v1/courses/{shards[down].id}") == shards[down].title
    assert queries.captured_queries  # its own: from the database while the breaker is open
    # Opening marked the shards of that master, and only those, for an epoch bump; the
    # read of the other master's shard bumped none of them.
    assert connection.stale_shards() == {s for s in keys.EVERY_SHARD if owner_of(s) == owner[down]}


def owner_of(shard: int) -> int:
    from redis.cluster import RedisCluster

    client = connection.redis_client()
    assert isinstance(client, RedisCluster)
    return client.nodes_manager.get_node_from_slot(shard_slot(shard)).port


@pytest.mark.parametrize(
    ("mode", "env", "error"),
    [
        ("cluster", {}, "CACHE_REDIS_NODES is needed"),
        ("cluster", {"CACHE_REDIS_NODES": "127.0.0.1"}, "is not host:port"),
        ("cluster", {"CACHE_REDIS_NODES": "a:1,b:x"}, "'b:x' is not host:port"),
        ("sentinel", {"CACHE_REDIS_SENTINELS": "a:1"}, "needs CACHE_REDIS_SENTINELS and"),
        ("replicas", {}, "must be one of standalone, sentinel, cluster"),
    ],
)
def test_a_malformed_topology_is_refused(mode, env, error):
    from caching import topology

    with pytest.raises(ValueError, match=error):
        topology.caches(mode, {"SOCKET_TIMEOUT": 0.05, "SOCKET_CONNECT_TIMEOUT": 0.05}, env)


def test_the_in_process_tier_is_refused_on_a_cluster():
    env = {**os.environ, "CACHE_REDIS_MODE": "cluster", "CACHE_REDIS_NODES": "127.0.0.1:1"}
    check = [sys.executable, "-c", "import django; django.setup()"]
    refused = subprocess.run(check, env={**env, "CACHE_L1": "true"}, capture_output=True)
    assert refused.returncode != 0
    assert b"CACHE_L1 needs one Redis server" in refused.stderr
    assert subprocess.run(check, env=env, capture_output=True).returncode == 0  # off by default


@pytest.mark.parametrize("direct", [True, False])
def test_scripts_reach_the_master_of_their_slot_either_way(private_cluster, api, settings, direct):
    """On each thread's own connection to the slot's master, or through the cluster client
    (``CACHE_CLUSTER_DIRECT``): a hit either way, with no SQL."""
    settings.CACHE_CLUSTER_DIRECT = direct
    course = CourseFactory(title="Either way")
    path = f"/api/v1/courses/{course.id}"
    assert title(api, path) == "Either way"
    with CaptureQueriesContext(db_connection) as queries:
        assert title(api, path) == "Either way"
    assert not queries.captured_queries
    Course.objects.filter(pk=course.pk).update(title="Changed")
    assert title(api, path) == "Changed"
