"""The in-process tier (caching.local) in one process, against the real Redis: a held entry
is served with no Redis command and no SQL, is never served after a change Redis applied
(from any client) before the read, is not served while its invalidation stream is down,
and stays within its bound.

Whether a read crossed the network is told by Redis itself: ``INFO commandstats`` counts
the ``EVALSHA`` lookups it ran.
"""

import threading

import pytest
import redis
from prometheus_client import REGISTRY

from caching import connection, entries, keys, local
from caching.local import Held, LocalTier
from caching.tracking import Streams
from chainlearn.caches import course_detail_cache, course_list_cache
from courses.models import Course
from tests.factories import EnrollmentFactory, course_with_modules
from tests.redis_server import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

LIST = "/api/v1/courses?page=1&limit=20"


def lookups(redis_client) -> int:
    """The lookups (``EVALSHA``) Redis has run."""
    return int(redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def l1(namespace: str, outcome: str) -> float:
    labels = {"namespace": namespace, "outcome": outcome}
    return REGISTRY.get_sample_value("cache_l1_reads_total", labels) or 0.0


def tier() -> LocalTier:
    process = local._current()
    assert process is not None
    return process.tier


def streams() -> Streams:
    process = local._current()
    assert process is not None
    return process.streams


def connected_stream() -> Streams:
    """The streams, this thread's connected and past the test's own flush of Redis (which
    empties the tier)."""
    assert streams().sync()
    return streams()


def hold(client, path: str):
    """Read ``path`` until it is held: a fill, this thread's stream past the fill's own
    changes (the counts it wrote), then a hit kept in the tier. Returns the last response."""
    client.get(path)
    assert streams().sync()
    return client.get(path)


@pytest.fixture
def course():
    return course_with_modules(1, title="Held")


def test_a_second_read_is_served_in_process_with_no_redis_command_and_no_sql(
    api, course, redis_client, django_assert_num_queries
):
    connected_stream()
    first = hold(api, f"/api/v1/courses/{course.id}")
    before, hits = lookups(redis_client), l1("courses:detail", "hit")
    with django_assert_num_queries(0):
        again = api.get(f"/api/v1/courses/{course.id}")
    assert lookups(redis_client) == before
    assert l1("courses:detail", "hit") == hits + 1
    assert again.json()["data"] == first.json()["data"]
    assert again["ETag"] == first["ETag"]


def test_the_tier_is_off_with_its_switch(api, course, redis_client, settings):
    settings.CACHE_L1 = False
    for _ in range(2):
        api.get(f"/api/v1/courses/{course.id}")
    before = lookups(redis_client)
    api.get(f"/api/v1/courses/{course.id}")
    assert lookups(redis_client) == before + 1


def test_a_change_made_by_another_client_is_never_served_from_the_tier(api, course, redis_client):
    """Another host's write is a generation bump on Redis: each read right after one (same
    thread, no pause) must go to Redis and load the new stamp."""
    connected_stream()
    for _ in range(3):
        api.get(LIST)
    page = course_list_cache.slot({"difficulty": None, "page": 1, "limit": 20})
    gen = keys.generation_key("courses:list", page.shard)
    for round_ in range(200):
        assert hold(api, LIST).status_code == 200
        redis_client.incr(gen)  # what an invalidation on another host does
        held_hits, before = l1("courses:list", "hit"), lookups(redis_client)
        assert api.get(LIST).status_code == 200
        assert l1("courses:list", "hit") == held_hits, f"served from the tier in round {round_}"
        assert lookups(redis_client) > before


def test_a_model_write_and_a_queryset_update_drop_the_held_entry_before_the_next_read(api, course):
    connected_stream()
    for title in ("Renamed", "Updated"):
        hold(api, f"/api/v1/courses/{course.id}")
        if title == "Renamed":
            course.title = title
            course.save()
        else:
            Course.objects.filter(pk=course.pk).update(title=title)
        assert api.get(f"/api/v1/courses/{course.id}").json()["data"]["title"] == title


@pytest.fixture
def per_user_local(monkeypatch):
    """The principal and progress declared ``local`` (they are not by default: see
    ``PER_USER_LOCAL`` in chainlearn/caches.py), the tier restarted to track them."""
    from chainlearn.caches import principal_cache, progress_cache

    for manager in (principal_cache, progress_cache):
        monkeypatch.setattr(manager, "local", True)
    local.stop()
    yield
    local.stop()


def test_per_user_reads_are_not_held_by_default(auth_api, user, redis_client):
    connected_stream()
    hold(auth_api, "/api/v1/users/me/progress")
    before = lookups(redis_client)
    assert auth_api.get("/api/v1/users/me/progress").status_code == 200
    assert lookups(redis_client) == before + 1
    assert len(tier()) == 0


@pytest.mark.usefixtures("per_user_local")
def test_a_signed_in_progress_read_and_its_principal_are_held_together(
    auth_api, user, redis_client, django_assert_num_queries
):
    connected_stream()
    hold(auth_api, "/api/v1/users/me/progress")
    before = lookups(redis_client)
    hits = l1("users:principal", "hit"), l1("users:progress", "hit")
    with django_assert_num_queries(0):
        assert auth_api.get("/api/v1/users/me/progress").status_code == 200
    assert lookups(redis_client) == before
    assert (l1("users:principal", "hit"), l1("users:progress", "hit")) == (
        hits[0] + 1,
        hits[1] + 1,
    )


@pytest.mark.usefixtures("per_user_local")
def test_a_revoked_token_is_refused_at_once_though_its_principal_was_held(auth_api, user):
    connected_stream()
    hold(auth_api, "/api/v1/users/me/progress")
    assert auth_api.post("/api/v1/auth/logout").status_code in (200, 204)
    assert auth_api.get("/api/v1/users/me/progress").status_code == 401


def test_while_the_stream_is_down_nothing_is_served_from_the_tier_and_it_restarts_empty(
    api, course, redis_client
):
    connected_stream()
    path = f"/api/v1/courses/{course.id}"
    hold(api, path)
    assert len(tier()) == 1
    reconnects = REGISTRY.get_sample_value("cache_invalidation_stream_reconnects_total") or 0
    unsynced = l1("courses:detail", "unsynced")
    for tracking in [c for c in redis_client.client_list() if "t" in c["flags"]]:
        redis_client.client_kill_filter(_id=tracking["id"])
    before = lookups(redis_client)
    assert api.get(path).status_code == 200  # the stream is found down: to Redis
    assert l1("courses:detail", "unsynced") == unsynced + 1
    assert lookups(redis_client) == before + 1
    api.get(path)  # reconnects, which empties the tier: to Redis again
    assert REGISTRY.get_sample_value("cache_invalidation_stream_reconnects_total") == (
        reconnects + 1
    )
    assert lookups(redis_client) == before + 2
    api.get(path)  # held again
    assert lookups(redis_client) == before + 2


def test_a_frozen_redis_stops_the_tier_and_a_change_made_meanwhile_is_not_served(
    api, course, private_redis, settings
):
    """SIGSTOP Redis: the held entry is not served (the stream cannot confirm it); the read
    falls back to the database. A change written while frozen (queued in the socket, applied
    at SIGCONT) is never served old afterwards."""
    settings.CACHE_BREAKER_THRESHOLD = 1000  # keep the breaker out of it: the tier decides
    connected_stream()
    client = redis.Redis.from_url(private_redis.url)
    hold(api, f"/api/v1/courses/{course.id}")
    assert len(tier()) == 1
    gen = course_detail_cache.slot({"course_id": course.id}).scope_gen_key
    private_redis.pause()
    try:
        unsynced = l1("courses:detail", "unsynced")
        response = api.get(f"/api/v1/courses/{course.id}")
        assert response.status_code == 200
        assert l1("courses:detail", "unsynced") == unsynced + 1
        course.title = "Changed while frozen"
        course.save()  # its generation bump times out: the epoch is bumped once Redis is back
        pending = threading.Thread(target=client.incr, args=[gen])  # another host's bump
        pending.start()
    finally:
        private_redis.resume()
    pending.join(5)
    for _ in range(20):
        assert api.get(f"/api/v1/courses/{course.id}").json()["data"]["title"] == (
            "Changed while frozen"
        )


def test_a_count_refresh_lost_while_redis_was_frozen_is_not_served_from_the_tier(
    api, course, private_redis, settings, monkeypatch
):
    """An enrollment while Redis is frozen cannot read the shards' epochs, so its count
    refresh writes nothing: Redis, back, has no change to report and the held entry stays
    in the tier. The process's pending epoch bump is what must keep it from being served
    while its breaker is closed (CI's outage test once served such an entry)."""
    settings.CACHE_EPOCH_REPAIR_MS = 0  # no eager bump: the read must find the mark itself
    # A process where fewer calls failed than the breaker's threshold: it stays closed.
    monkeypatch.setattr(connection.breaker, "threshold", 1000)
    connected_stream()
    path = f"/api/v1/courses/{course.id}"
    assert hold(api, path).json()["data"]["enrolledCount"] == 0
    private_redis.pause()
    try:
        EnrollmentFactory(course=course)  # its count refresh times out
    finally:
        private_redis.resume()
    assert connected_stream()  # the stream is up and has reported every change
    assert len(tier()) == 1  # still held: nothing in Redis changed for it
    assert connection.breaker.state == connection.breaker.CLOSED
    hits = l1("courses:detail", "hit")
    assert api.get(path).json()["data"]["enrolledCount"] == 1
    assert l1("courses:detail", "hit") == hits
    assert connection.stale_shards().isdisjoint(
        {course_detail_cache.slot({"course_id": course.id}).shard}
    )


def test_the_bound_holds_under_ten_times_more_keys_than_it_may_hold(api, settings, redis_client):
    settings.CACHE_L1_ENTRIES = 20
    local.stop()
    connected_stream()
    evicted = (
        REGISTRY.get_sample_value("cache_l1_evictions_total", {"namespace": "courses:list"}) or 0
    )
    pages = [(page, limit) for page in range(1, 5) for limit in range(1, 51)]
    for page, limit in pages:
        assert api.get(f"/api/v1/courses?page={page}&limit={limit}").status_code == 200  # fill
        assert streams().sync()  # the fill's own count writes reported
        assert api.get(f"/api/v1/courses?page={page}&limit={limit}").status_code == 200  # held
        assert len(tier()) <= 20
    assert len(tier()) == 20
    after = REGISTRY.get_sample_value("cache_l1_evictions_total", {"namespace": "courses:list"})
    assert after == evicted + 180
    before = lookups(redis_client)
    api.get("/api/v1/courses?page=4&limit=50")  # the newest is still held
    api.get("/api/v1/courses?page=1&limit=1")  # the oldest was evicted
    assert lookups(redis_client) == before + 1


def test_a_change_reported_between_a_lookup_and_its_keep_refuses_the_keep(course, redis_client):
    """The interleaving forced: mark, a change applied by Redis and read by the stream, then
    the keep of what the lookup returned before it. Refused; a keep with no change since its
    mark is taken."""
    live = connected_stream()
    from chainlearn.caches import course_detail_cache as detail_cache

    slot = detail_cache.slot({"course_id": str(course.id)})
    detail_cache.read({"course_id": str(course.id)})
    mark = local.mark()
    (found,) = entries.lookup([slot], [entries.LEASE], lease_ms=1000, since=[""])
    assert found.frame is not None and found.is_current_hit()
    held = Held(slot.namespace, found.frame, found.counts, slot.validity_keys())
    redis_client.incr(slot.scope_gen_key)
    assert live.sync()
    assert mark is not None and not tier().put(slot.key, held, mark)
    assert tier().put(slot.key, held, tier().mark())


def test_a_keep_whose_mark_fell_out_of_the_change_window_is_refused(course):
    shard = LocalTier(capacity=10, window=4)
    mark = shard.mark()
    for n in range(5):
        shard.invalidate([f"unrelated:{n}"])
    frame = entries.Frame(
        fresh_until_ms=entries.now_ms() + 60_000, stamp="0.0.0", data=b"1", total=None
    )
    held = Held("courses:detail", frame, None, ("a", "b"))
    assert not shard.put("entry", held, mark)  # 5 changes, 4 remembered: cannot tell
    assert shard.put("entry", held, shard.mark())


def test_a_flush_empties_the_tier(api, course, redis_client):
    live = connected_stream()
    hold(api, f"/api/v1/courses/{course.id}")
    assert len(tier()) == 1
    redis_client.flushdb()
    assert live.sync()
    assert len(tier()) == 0


def test_only_fresh_entries_are_served_from_the_tier(api, course, redis_client, settings):
    settings.CACHE_TTLS = {**settings.CACHE_TTLS, "courses:detail": 1}
    settings.CACHE_TTL_JITTER = 0.0
    connected_stream()
    hold(api, f"/api/v1/courses/{course.id}")
    (held,) = local.all_held(tier(), [next(iter(tier()._entries))])
    wait_for(lambda: entries.now_ms() > held.frame.fresh_until_ms, "the entry expired", 3)
    before = lookups(redis_client)
    api.get(f"/api/v1/courses/{course.id}")  # expired: Redis decides (stale grace)
    assert lookups(redis_client) == before + 1
