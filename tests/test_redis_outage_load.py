"""Redis outage under load (the CI-sized version of issue 6's scenario).

Two gunicorn workers use a private Redis while client threads keep a steady mixed load of
hot reads and writes (enroll, submit, claim, mint). Then, in turn: Redis is stopped and
started again empty; it is frozen (SIGSTOP) and resumed with its data intact; it comes back
with ``--maxmemory 1mb --maxmemory-policy noeviction`` and full, so every write is refused.

Required in every phase: no 5xx; no stale read (each learner's reads equal its rows in the
database at that moment, and the writer's next read after each write shows it; course
counts never fall below the enrollments already acknowledged); the breaker opens during
each fault and closes after it; hits grow again after each recovery. A table of requests,
faults (Redis errors the service absorbed), 5xx, stale reads and p99 per phase is printed.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis
from django.db.models import Count

from courses.models import Enrollment
from tests.factories import UserFactory, course_with_modules
from tests.live_server import Gunicorn
from tests.redis_server import RedisServer, wait_for
from tests.test_isolation_load import NO_RATE_LIMITS, Learner, Result, World, run_thread, write_plan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAULT_SECONDS = 5.0
RECOVERY_SECONDS = 3.0


def keys_outliving(url: str, seconds: float) -> set[bytes]:
    """The keys of the Redis at ``url`` without a TTL or with more than ``seconds`` left."""
    client = redis.Redis.from_url(url)
    names = client.keys("*")
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.pttl(name)
    ttls = pipe.execute()
    return {
        name for name, ttl in zip(names, ttls, strict=True) if ttl == -1 or ttl > seconds * 1000
    }


WRITE_INTERVAL = 0.25  # seconds between one learner's writes
LEARNERS = 4
COURSES = 40
FULL = ("--maxmemory", "1mb", "--maxmemory-policy", "noeviction")


def metric_total(text: str, name: str) -> float:
    """The sum of every sample of ``name`` (all label sets)."""
    return sum(
        float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    )


@dataclass
class Snapshot:
    hits: float
    misses: float
    errors: float

    @classmethod
    def take(cls, srv: Gunicorn) -> Snapshot:
        text = srv.metrics()
        return cls(
            metric_total(text, "cache_hits_total"),
            metric_total(text, "cache_misses_total"),
            metric_total(text, "cache_errors_total"),
        )


def breaker_open(srv: Gunicorn) -> float:
    return metric_total(srv.metrics(), "cache_breaker_open")


def p99(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else 0.0


class AnonymousReader:
    """Reads the shared course list and details; counts may never go below the acked floor."""

    def __init__(self, world: World, course_ids: list[str]) -> None:
        self.world = world
        self.course_ids = course_ids

    def step(self, i: int) -> None:
        world = self.world
        phase = world.phase
        if i % 2:
            course_id = self.course_ids[i % len(self.course_ids)]
            floors = {course_id: world.acked_count(course_id)}
            path = f"/api/v1/courses/{course_id}"
        else:
            floors = {c: world.acked_count(c) for c in self.course_ids}
            path = "/api/v1/courses?limit=50"
        status, raw, seconds = world.call("GET", path)
        problem = None if status == 200 else f"status {status}"
        if problem is None:
            data = json.loads(raw)["data"]
            items = data if isinstance(data, list) else [data]
            now = dict(
                Enrollment.objects.filter(course_id__in=[item["id"] for item in items])
                .values("course_id")
                .annotate(n=Count("id"))
                .values_list("course_id", "n")
            )
            for item in items:
                floor, ceiling = floors.get(item["id"], 0), now.get(uuid.UUID(item["id"]), 0)
                if item["isEnrolled"] or not floor <= item["enrolledCount"] <= ceiling:
                    problem = (
                        f"stale: {item['id']} count {item['enrolledCount']} not in "
                        f"[{floor}, {ceiling}] or isEnrolled for anonymous"
                    )
                    break
        world.record(Result(phase, "anonymous", "GET", path, status, seconds, raw, problem))


@pytest.fixture
def private_server():
    server = RedisServer()
    server.start()
    yield server
    server.extra = ()
    server.cleanup()


@pytest.fixture
def service(private_server):
    srv = Gunicorn(
        REDIS_URL=private_server.url,
        CACHE_BREAKER_COOLDOWN="1",
        **NO_RATE_LIMITS,
    )
    srv.start()
    yield srv
    srv.stop()


def fill_until_refused(url: str) -> int:
    """Write filler keys until Redis refuses writes (noeviction at maxmemory)."""
    client = redis.Redis.from_url(url)
    try:
        for i in range(1000):
            try:
                client.set(f"filler:{i}", b"x" * 65536)
            except redis.exceptions.OutOfMemoryError:
                return i
        raise AssertionError("Redis never refused a write")
    finally:
        client.close()


def test_redis_outage_under_load(service, private_server):
    srv = service
    courses = [course_with_modules(1, title=f"Load {i}") for i in range(COURSES)]
    course_ids = [str(c.id) for c in courses]
    world = World(srv, phase="baseline")
    world.acked = dict.fromkeys(course_ids, 0)
    learners = []
    for n in range(LEARNERS):
        order = courses[n * 10 :] + courses[: n * 10]  # shared courses, different orders
        learners.append(Learner(world, UserFactory(), write_plan(order)))
    reader = AnonymousReader(world, course_ids)
    stop = threading.Event()
    errors: list[BaseException] = []
    barrier = threading.Barrier(LEARNERS + 2)

    def drive(learner: Learner) -> Callable[[], None]:
        def body() -> None:
            barrier.wait(30)
            next_write, i = 0.0, 0
            while not stop.is_set():
                if learner.plan and time.monotonic() >= next_write:
                    learner.write()
                    next_write = time.monotonic() + WRITE_INTERVAL
                else:
                    learner.step(i, write_every=10**9)  # reads only
                i += 1

        return body

    def read_anonymously() -> None:
        barrier.wait(30)
        i = 0
        while not stop.is_set():
            reader.step(i)
            i += 1

    threads = [run_thread(drive(learner), errors) for learner in learners]
    threads.append(run_thread(read_anonymously, errors))
    barrier.wait(30)

    snapshots: dict[str, tuple[Snapshot, Snapshot]] = {}
    breaker_seen: dict[str, float] = {}

    def phase(name: str, seconds: float, during: Callable[[], None] | None = None) -> None:
        world.phase = name
        before = Snapshot.take(srv)
        started = time.monotonic()
        if during:
            during()
        remaining = seconds - (time.monotonic() - started)
        if remaining > 0:
            stop.wait(remaining)  # the phase's time box (load keeps running meanwhile)
        snapshots[name] = (before, Snapshot.take(srv))

    def breaker_opens(name: str) -> Callable[[], None]:
        def check() -> None:
            wait_for(lambda: breaker_open(srv) >= 1, f"breaker open ({name})", FAULT_SECONDS)
            breaker_seen[name] = 1

        return check

    def breaker_closes() -> None:
        wait_for(lambda: breaker_open(srv) == 0, "breaker closed again", 15)

    try:
        phase("baseline", RECOVERY_SECONDS)

        private_server.stop()
        phase("a: redis stopped", FAULT_SECONDS, breaker_opens("a: redis stopped"))
        private_server.start()  # back, empty
        phase("a: recovered (empty)", RECOVERY_SECONDS, breaker_closes)

        survivors = keys_outliving(private_server.url, FAULT_SECONDS + 20)
        private_server.pause()
        phase("b: redis paused", FAULT_SECONDS, breaker_opens("b: redis paused"))
        private_server.resume()
        # A pause loses nothing: every key that was to outlive it (the epoch, the
        # generations, entries with time left) is still there.
        assert survivors
        assert survivors <= set(redis.Redis.from_url(private_server.url).keys("*"))
        phase("b: recovered (data kept)", RECOVERY_SECONDS, breaker_closes)

        private_server.stop()
        private_server.extra = FULL
        private_server.start()
        assert fill_until_refused(private_server.url) >= 0
        phase("c: redis full (noeviction)", FAULT_SECONDS, breaker_opens("c: redis full"))
        private_server.stop()
        private_server.extra = ()
        private_server.start()
        phase("c: recovered", RECOVERY_SECONDS, breaker_closes)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not errors, errors

    rows = []
    for name, (before, after) in snapshots.items():
        results = [r for r in world.results if r.phase == name]
        hits, misses = after.hits - before.hits, after.misses - before.misses
        rows.append(
            {
                "scenario": name,
                "requests": len(results),
                "writes": sum(r.method == "POST" for r in results),
                "faults": int(after.errors - before.errors),
                "5xx": sum(r.status >= 500 for r in results),
                "stale": sum(bool(r.problem and r.problem.startswith("stale")) for r in results),
                "p99_ms": round(p99([r.seconds for r in results]) * 1000, 1),
                "hits": int(hits),
                "hit_rate": round(hits / (hits + misses), 2) if hits + misses else 0.0,
            }
        )
    print_table(rows)

    problems = [r for r in world.results if r.problem]
    assert not problems, [(r.phase, r.who, r.method, r.path, r.problem) for r in problems[:10]]
    assert all(row["5xx"] == 0 and row["stale"] == 0 for row in rows)
    for row in rows:
        assert row["requests"] > 0, row
        if row["scenario"].endswith(("stopped", "paused", "(noeviction)")):
            assert row["faults"] > 0, row  # Redis really failed, and the service absorbed it
            assert row["writes"] > 0, row  # writes happened while Redis was away
        else:
            assert row["hits"] > 0, row  # the cache serves again
    assert len(breaker_seen) == 3
    assert breaker_open(srv) == 0
    assert sum(len(learner.plan) for learner in learners) < LEARNERS * COURSES * 4


def print_table(rows: list[dict[str, object]]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(row[c])) for row in rows)) for c in columns}
    print()
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def test_a_write_in_a_worker_whose_breaker_is_open_still_invalidates_for_the_others(
    private_server, service, use_redis
):
    """A Redis blip seen by one worker only: its breaker opens while the others' stay closed.

    This test process plays that worker (same code, same Redis); gunicorn's workers are the
    others. A write it commits while its breaker is still open (within the cooldown, Redis
    already back) must not leave the other workers serving the old value.
    """
    from rest_framework.test import APIClient

    from caching import connection
    from tests.factories import token_for

    srv = service
    course = course_with_modules(1, title="Blip")
    learner = UserFactory()
    path = f"/api/v1/courses/{course.id}"
    for _ in range(2):  # filled, then served from Redis by the other workers
        status, body = srv.get(path)
        assert status == 200 and json.loads(body)["data"]["enrolledCount"] == 0

    use_redis(private_server.url)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(learner)}")
    private_server.pause()
    try:
        for _ in range(connection.breaker.threshold):
            assert client.get("/api/v1/users/me/progress").status_code == 200
    finally:
        private_server.resume()
    assert connection.breaker.state == connection.breaker.OPEN

    assert client.post(f"{path}/enroll").status_code == 201

    status, body = srv.get(path)
    assert status == 200
    assert json.loads(body)["data"]["enrolledCount"] == 1


def test_a_worker_cut_off_from_redis_bumps_its_lost_invalidation_for_the_others_unasked(
    private_server, service, use_redis, settings
):
    """Redis unreachable from one worker only: this test process, which reaches it through a
    proxy it cuts; gunicorn's workers reach it directly and see no failure, so they hold no
    mark. A write this worker commits meanwhile loses its invalidation. Once the proxy is
    back, its process bumps the epochs without a read of its own (``connection._repair``),
    and the others read the write."""
    from caching import connection
    from chainlearn.caches import course_detail_cache
    from courses.models import Course
    from tests.tcp_proxy import TcpProxy

    srv = service
    course = course_with_modules(1, title="Before the cut")
    path = f"/api/v1/courses/{course.id}"
    for _ in range(2):  # filled, then served from Redis
        status, body = srv.get(path)
        assert status == 200 and json.loads(body)["data"]["title"] == "Before the cut"
    direct = redis.Redis.from_url(private_server.url)
    generation = course_detail_cache.slot({"course_id": course.id}).scope_gen_key
    before = direct.get(generation)

    proxy = TcpProxy(("127.0.0.1", private_server.port)).start()
    try:
        use_redis(f"redis://127.0.0.1:{proxy.port}/0")
        proxy.cut()
        Course.objects.filter(pk=course.pk).update(title="Written while cut off")
        assert direct.get(generation) == before  # the invalidation did not reach Redis
        assert connection.stale_shards() == set(range(16))
        proxy.restore()
        # A bounded wait for the repairer (past one breaker cooldown), with no read here.
        wait_for(
            lambda: not connection.stale_shards(),
            "the lost invalidation bumped",
            3 * settings.CACHE_BREAKER_COOLDOWN,
        )
    finally:
        proxy.stop()
    status, body = srv.get(path)
    assert status == 200 and json.loads(body)["data"]["title"] == "Written while cut off"
