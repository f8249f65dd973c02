"""Properties 5 and 6 in one process with real threads: one fill at a time, takeover when
a filler dies, stale-while-revalidate on expiry and never after an invalidation.
(The cross-process acceptance test with gunicorn is in test_cache_gunicorn.py.)"""

import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from caching import entries, invalidation, keys, refresh
from caching.entries import LEASE
from caching.manager import fresh_ms
from chainlearn.caches import course_detail_cache, course_list_cache
from courses.models import Course
from tests.factories import course_with_modules
from tests.helpers import CacheCounts, redis_keys

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10


class LoadCounter:
    """An after-load hook that counts loads and can hold the loader until released."""

    def __init__(self, hold=False):
        self.loads = 0
        self.lock = threading.Lock()
        self.loading = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self):
        with self.lock:
            self.loads += 1
        self.loading.set()
        assert self.release.wait(TIMEOUT)


def concurrently(count, fn):
    barrier = threading.Barrier(count)

    def run(_):
        barrier.wait(TIMEOUT)
        try:
            return fn()
        finally:
            connection.close()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def list_page():
    return course_list_cache.read({"difficulty": None, "page": 1, "limit": 20})


def detail(course):
    return course_detail_cache.read({"course_id": course.id}).value()


def test_many_concurrent_misses_run_the_loader_once(monkeypatch, redis_client, settings):
    course_with_modules(1)
    counter = LoadCounter()
    monkeypatch.setattr(course_list_cache, "after_load", counter)
    counts = CacheCounts("courses:list")

    results = concurrently(20, list_page)

    assert counter.loads == 1
    assert all(result == results[0] for result in results)
    assert results[0].total == 1
    seen = counts.now()
    # Requests that looked up after the store are plain hits; the rest waited for the fill.
    assert (seen["misses"], seen["hits"]) == (1, 19)
    assert seen["waits"] <= 19


def test_waiters_keep_waiting_while_the_filler_is_slow(monkeypatch, settings):
    """The filler is held inside its load until every other request is polling for it."""
    course_with_modules(1)
    counter = LoadCounter(hold=True)
    monkeypatch.setattr(course_list_cache, "after_load", counter)
    pollers, lock = set(), threading.Lock()
    real_lookup = entries.lookup

    def spy_lookup(slots, modes, **kwargs):
        found = real_lookup(slots, modes, **kwargs)
        if found[0].state == "wait":  # a request that found the fill under way, polling
            with lock:
                pollers.add(threading.get_ident())
                if len(pollers) == 9:
                    counter.release.set()
        return found

    monkeypatch.setattr(entries, "lookup", spy_lookup)

    results = concurrently(10, list_page)

    assert counter.loads == 1
    assert len(pollers) == 9
    assert all(result == results[0] for result in results)


def test_a_dead_filler_is_taken_over_within_the_lease_timeout(monkeypatch, settings):
    settings.CACHE_LEASE_MS = 300
    course = course_with_modules(1, title="Takeover")

    def die():
        raise SystemExit("filler died between load and store")

    monkeypatch.setattr(course_detail_cache, "after_load", die)
    with pytest.raises(SystemExit):
        detail(course)  # holds the lease and never stores
    monkeypatch.setattr(course_detail_cache, "after_load", None)

    counts = CacheCounts("courses:detail")
    value = detail(course)

    assert value["title"] == "Takeover"
    assert counts.now()["fills"] == 1  # took over the lapsed lease: a fill, not a give-up
    slot = course_detail_cache.slot({"course_id": course.id})
    (found,) = entries.lookup([slot], [LEASE], lease_ms=1000)
    assert found.state == "hit"  # and the taker-over stored the entry


def polling_spy(monkeypatch, waiters, polls, then):
    """Spies on lookups: once each of ``waiters`` requests has polled for a fill under way
    ``polls`` times, calls ``then`` (once)."""
    seen, lock, done = defaultdict(int), threading.Lock(), threading.Event()
    real_lookup = entries.lookup

    def spy_lookup(slots, modes, **kwargs):
        found = real_lookup(slots, modes, **kwargs)
        if found[0].state == "wait":
            with lock:
                seen[threading.get_ident()] += 1
                ready = len(seen) == waiters and min(seen.values()) >= polls
            if ready and not done.is_set():
                done.set()
                then()
        return found

    monkeypatch.setattr(entries, "lookup", spy_lookup)
    return seen


def test_waiters_outwait_a_slow_fill_instead_of_loading(monkeypatch, settings):
    """The fill takes longer than the old 500 ms wait bound (each waiter polls 40 times, at
    most 20 ms apart): nobody gives up and loads on their own."""
    settings.CACHE_LEASE_MS = 10_000
    course_with_modules(1)
    counter = LoadCounter(hold=True)
    monkeypatch.setattr(course_list_cache, "after_load", counter)
    seen = polling_spy(monkeypatch, waiters=5, polls=40, then=counter.release.set)
    counts = CacheCounts("courses:list")

    results = concurrently(6, list_page)

    assert counter.loads == 1
    assert min(seen.values()) >= 40
    assert all(result == results[0] for result in results)
    assert counts.now() == {"hits": 5, "misses": 1, "stale": 0, "waits": 5, "fills": 1}


def test_waiters_are_served_the_fill_a_write_outdated_meanwhile(monkeypatch, redis_client):
    """A write commits while the fill loads, so the store is refused as current. The
    requests that were already waiting get the fill (it saw every write that had returned
    before they arrived); the next request misses and loads the write's value."""
    course = course_with_modules(1, title="Before")
    counter = LoadCounter(hold=True)
    monkeypatch.setattr(course_list_cache, "after_load", counter)

    def write_then_release():
        assert counter.loading.wait(TIMEOUT)  # the filler has read "Before"
        Course.objects.filter(pk=course.pk).update(title="After")  # bumps courses:list
        counter.release.set()

    polling_spy(monkeypatch, waiters=5, polls=1, then=write_then_release)
    counts = CacheCounts("courses:list")

    results = concurrently(6, list_page)

    assert counter.loads == 1
    assert {result.value()[0]["title"] for result in results} == {"Before"}
    assert counts.now()["waits"] == 5
    monkeypatch.setattr(course_list_cache, "after_load", None)
    assert list_page().value()[0]["title"] == "After"  # not served to a later request
    assert counts.now()["fills"] == 2


def test_continuous_invalidation_runs_the_loader_at_most_once_per_invalidation(
    monkeypatch, redis_client
):
    """A background writer bumps the list's generation 200 times while 4 readers read it
    without pause. Every load runs under its own stamp, so loads <= bumps, whatever the
    interleaving; no reader gives up and loads uncounted (misses == fills)."""
    course_with_modules(1)
    list_page()  # warm: every later load is caused by a bump
    loads = []
    real_loader = course_list_cache.loader
    monkeypatch.setattr(
        course_list_cache, "loader", lambda **params: loads.append(1) or real_loader(**params)
    )
    counts = CacheCounts("courses:list")
    bumps = 200
    done = threading.Event()

    def writer():
        try:
            for _ in range(bumps):
                invalidation.invalidate({"courses:list": {keys.ALL}}, "test")
        finally:
            done.set()

    def reader():
        reads = 0
        try:
            while not done.is_set() or reads == 0:
                assert list_page().total == 1
                reads += 1
        finally:
            connection.close()
        return reads

    with ThreadPoolExecutor(5) as pool:
        readers = [pool.submit(reader) for _ in range(4)]
        pool.submit(writer).result(timeout=60)
        reads = sum(future.result(timeout=60) for future in readers)

    seen = counts.now()
    assert seen["fills"] == len(loads) <= bumps
    assert seen["misses"] == seen["fills"]
    assert seen["hits"] + seen["misses"] == reads


def expire_entries(monkeypatch, seconds):
    """Move the caching layer's clock past the TTL (Redis keeps the entries for the grace)."""
    real = entries.now_ms
    monkeypatch.setattr(entries, "now_ms", lambda: real() + seconds * 1000)


def change_description_without_invalidating(course, text):
    """A change the cache may show late (like a count within its TTL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE courses_course SET description = %s WHERE id = %s", [text, course.id]
        )


def test_expired_entry_is_served_stale_while_exactly_one_reload_runs_after_the_responses(
    monkeypatch, redis_client, settings
):
    course = course_with_modules(1, description="old")
    detail(course)
    change_description_without_invalidating(course, "new")
    expire_entries(monkeypatch, settings.CACHE_TTLS["courses:detail"] + 1)
    counter = LoadCounter(hold=True)
    monkeypatch.setattr(course_detail_cache, "after_load", counter)

    # All 8 answer while the one reload is still held: nobody waits for the database.
    counts = CacheCounts("courses:detail")
    results = concurrently(8, lambda: detail(course)["description"])

    assert results == ["old"] * 8
    assert counter.loading.wait(TIMEOUT)  # the lease winner's reload, in the background
    counter.release.set()
    refresh.drain()
    assert counter.loads == 1
    assert counts.now()["stale"] == 8
    monkeypatch.setattr(course_detail_cache, "after_load", None)
    assert detail(course)["description"] == "new"
    assert counts.now()["stale"] == 8


def test_reload_queue_full_reloads_inline(monkeypatch, settings):
    settings.CACHE_REFRESH_QUEUE = 0
    course = course_with_modules(1, description="old")
    detail(course)
    change_description_without_invalidating(course, "new")
    expire_entries(monkeypatch, settings.CACHE_TTLS["courses:detail"] + 1)
    counter = LoadCounter()
    monkeypatch.setattr(course_detail_cache, "after_load", counter)

    assert detail(course)["description"] == "old"
    assert counter.loads == 1  # reloaded before answering, not queued
    assert detail(course)["description"] == "new"


def test_write_during_background_reload_wins(monkeypatch, settings):
    course = course_with_modules(1, title="old")
    detail(course)
    expire_entries(monkeypatch, settings.CACHE_TTLS["courses:detail"] + 1)
    counter = LoadCounter(hold=True)
    monkeypatch.setattr(course_detail_cache, "after_load", counter)
    assert detail(course)["title"] == "old"
    assert counter.loading.wait(TIMEOUT)  # the reload has read "old" and is held
    course.title = "written"
    course.save(update_fields=["title"])  # commits and bumps the course's generation
    counter.release.set()
    refresh.drain()
    monkeypatch.setattr(course_detail_cache, "after_load", None)
    assert detail(course)["title"] == "written"


def test_invalidated_entry_is_never_served_stale(monkeypatch, settings):
    course = course_with_modules(1, title="before")
    detail(course)
    expire_entries(monkeypatch, settings.CACHE_TTLS["courses:detail"] + 1)
    course.title = "after"
    course.save(update_fields=["title"])

    results = concurrently(8, lambda: detail(course)["title"])

    assert results == ["after"] * 8


def test_entry_past_ttl_and_grace_is_gone(redis_client, settings):
    course = course_with_modules(1)
    detail(course)
    [key] = redis_keys(redis_client, "chainlearn:courses:detail:v*")
    ttl_ms = redis_client.pttl(key)
    expected = (settings.CACHE_TTLS["courses:detail"] + settings.CACHE_STALE_GRACE) * 1000
    assert expected - 2000 < ttl_ms <= expected


def test_freshness_is_jittered_below_the_ttl_never_above(settings):
    settings.CACHE_TTL_JITTER = 0.2
    samples = {fresh_ms(10_000) for _ in range(500)}
    assert min(samples) >= 8_000 and max(samples) <= 10_000
    assert len(samples) > 100  # spread out, not one instant
    settings.CACHE_TTL_JITTER = 0
    assert {fresh_ms(10_000) for _ in range(50)} == {10_000}
