"""Sentinel mode against a real master, replica and three Sentinels (caching.topology).

A killed master under load (a gunicorn server reading, this process writing): no request
fails, no read is stale, and the hit rate comes back once the replica is promoted.

Replication is cut so that a write reaches the master only; then the master
is killed (SIGKILL) and the Sentinels promote the replica, which holds the entries that
write had invalidated but not the invalidation. The promoted master must not serve them.
"""

import json
import re
import threading
import time
from dataclasses import dataclass, field

import pytest
import redis
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from caching import connection, keys
from courses.models import Course
from tests.factories import course_with_modules
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
    assert master.exists(keys.master_key())
    assert any(key.startswith(b"chainlearn:courses:detail:") for key in master.keys("*"))


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


def detail_counters(server: Gunicorn) -> tuple[float, float]:
    """The server's course-detail hits and misses so far (all workers)."""
    text = server.metrics()
    found = []
    for name in ("cache_hits_total", "cache_misses_total"):
        pattern = rf'^{name}\{{namespace="courses:detail"\}} (\S+)$'
        found.append(sum(float(v) for v in re.findall(pattern, text, re.M)))
    return found[0], found[1]


@dataclass
class Load:
    """Readers of course detail on a server, and one writer renaming the courses from this
    process (as another host would); a read is stale if it shows a title older than the
    last rename that had returned before the read was sent."""

    server: Gunicorn
    courses: list[Course]
    done: threading.Event = field(default_factory=threading.Event)
    renamed: dict[int, int] = field(default_factory=dict)  # course index -> last returned
    reads: int = 0
    errors: list[tuple[int, bytes]] = field(default_factory=list)
    stale: list[tuple[int, int]] = field(default_factory=list)
    writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    answered: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.answered = threading.Condition(self.lock)

    def after_reads(self, count: int) -> None:
        """Return once ``count`` more reads have been answered."""
        with self.answered:
            target = self.reads + count
            if not self.answered.wait_for(lambda: self.reads >= target, timeout=60):
                raise TimeoutError(f"{count} reads not answered in 60 s")

    def read(self, worker: int) -> None:
        turn = worker
        while not self.done.is_set():
            index = turn % len(self.courses)
            turn += 1
            with self.lock:
                floor = self.renamed.get(index, 0)
            status, body = self.server.get(f"/api/v1/courses/{self.courses[index].id}")
            with self.answered:
                self.reads += 1
                self.answered.notify_all()
                if status != 200:
                    self.errors.append((status, body[:200]))
                    continue
                shown = int(json.loads(body)["data"]["title"].rpartition(" ")[2])
                if shown < floor:
                    self.stale.append((floor, shown))

    def write(self) -> None:
        """Rename one course every 50 ms, in turn."""
        try:
            version = 0
            while not self.done.is_set():
                version += 1
                index = version % len(self.courses)
                Course.objects.filter(pk=self.courses[index].pk).update(title=f"Course {version}")
                with self.lock:
                    self.renamed[index] = version
                    self.writes += 1
                self.done.wait(0.05)
        finally:
            db_connection.close()


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
    load = Load(server, courses)
    threads = [threading.Thread(target=load.read, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=load.write))
    try:
        for thread in threads:
            thread.start()
        load.after_reads(300)  # warm: the entries are cached and held
        before = detail_counters(server)
        load.after_reads(500)
        after = detail_counters(server)
        hits, misses = after[0] - before[0], after[1] - before[1]
        hit_rate_before = hits / (hits + misses)
        assert hit_rate_before >= 0.9
        killed = time.monotonic()
        setup.master.stop(kill=True)
        promoted_after = setup.wait_promoted(setup.replica)
        recovered_after = None
        last = detail_counters(server)
        while time.monotonic() - killed < 40:
            load.after_reads(200)  # one window
            now = detail_counters(server)
            hits, misses = now[0] - last[0], now[1] - last[1]
            last = now
            if hits + misses > 0 and hits / (hits + misses) >= 0.9:
                recovered_after = time.monotonic() - killed
                break
        load.after_reads(500)  # reads after the recovery are checked too
    finally:
        load.done.set()
        for thread in threads:
            thread.join(timeout=30)
        server.stop()
    print(
        f"reads {load.reads}, writes {load.writes}, non-200 {len(load.errors)}, "
        f"stale {len(load.stale)}, hit rate before {hit_rate_before:.1%}, promoted after "
        f"{promoted_after:.1f} s, hit rate >= 90 % (per 200 reads) again after "
        f"{recovered_after or 0:.1f} s"
    )
    assert load.errors == []
    assert load.stale == []
    assert recovered_after is not None
