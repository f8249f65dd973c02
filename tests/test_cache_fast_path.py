"""The hot reads' fast path (``chainlearn.hot_reads``): a hit is one Redis round trip
without DRF, and answers exactly as the full DRF view does."""

from urllib.parse import parse_qsl, urlsplit

import pytest
from django.conf import settings

import courses.views
import rewards.views
from caching import entries, keys, refresh
from chainlearn.caches import course_list_cache
from tests.conftest import client_for
from tests.factories import course_with_modules, learner_with_history
from tests.helpers import CacheCounts, assert_error, command_calls, reset_command_stats

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("without_l1")]

# DRF's content negotiation accepts this as JSON; the fast path hands it to DRF untouched,
# so it asks for the full view's answer to the same request.
FULL_VIEW = {"HTTP_ACCEPT": "application/json; charset=utf-8"}
# Headers that differ per response by design.
PER_RESPONSE = {"X-Request-Id"}


@pytest.fixture
def learner_world():
    course = course_with_modules(3, title="Rust 101")
    course_with_modules(2, title="Go 101", difficulty="advanced")
    return learner_with_history(course), course


def per_user_paths():
    return [
        "/api/v1/users/me/progress",
        "/api/v1/rewards/history",
        "/api/v1/rewards/history?page=1&limit=5",
        "/api/v1/credentials",
    ]


def signed_in_round_trips(learner, path):
    """A signed-in hit reads the token's principal and the entry in one script. On a Redis
    Cluster a script reaches one slot: the principal sits in the user's shard, as do the
    user's own entries, but a course read's entry sits in its own (``caching.keys``), so
    the two are read in two round trips unless the shards happen to match."""
    url = urlsplit(path)
    query = dict(parse_qsl(url.query))
    user_shard = keys.shard_of(str(learner.id), "")
    if url.path.startswith("/api/v1/courses/"):
        shard = keys.shard_of(url.path.rsplit("/", 1)[1], "")
    elif url.path == "/api/v1/courses":
        page = {
            "difficulty": query.get("difficulty"),
            "page": query.get("page", "1"),
            "limit": query.get("limit", "20"),
        }
        shard = course_list_cache.slot(page).shard
    else:
        shard = user_shard
    return 1 if shard == user_shard or settings.CACHE_REDIS_MODE != "cluster" else 2


def anonymous_paths(course):
    return [
        "/api/v1/courses",
        "/api/v1/courses?difficulty=advanced&page=1&limit=5",
        f"/api/v1/courses/{course.id}",
    ]


def answer(response):
    body = response.json()
    body.pop("meta")
    headers = {k: v for k, v in response.headers.items() if k not in PER_RESPONSE}
    return response.status_code, body, headers


@pytest.mark.parametrize("path", per_user_paths())
def test_per_user_hit_is_one_round_trip_with_no_sql(
    learner_world, redis_client, django_assert_num_queries, path
):
    learner, _ = learner_world
    client = client_for(learner)
    first = client.get(path)
    namespace = {
        "users": "users:progress",
        "rewards": "rewards:history",
        "credentials": "credentials:list",
    }[path.split("/")[3]]
    principal, entry = CacheCounts("users:principal"), CacheCounts(namespace)
    reset_command_stats(redis_client)
    with django_assert_num_queries(0):
        second = client.get(path)
    calls = command_calls(redis_client)
    # One EVALSHA; inside it only reads (two entries: epoch, two generations and the entry
    # each): no lease, no store, no counter in Redis.
    assert calls == {"evalsha": 1, "get": 8}
    # Each read is counted once, as a hit, in the process's counters.
    assert principal.now() == {"hits": 1, "misses": 0, "stale": 0, "waits": 0, "fills": 0}
    assert entry.now() == {"hits": 1, "misses": 0, "stale": 0, "waits": 0, "fills": 0}
    assert second.json()["data"] == first.json()["data"]


@pytest.mark.parametrize("index", range(3))
def test_anonymous_hit_is_one_round_trip_with_no_sql(
    api, learner_world, redis_client, django_assert_num_queries, index
):
    path = anonymous_paths(learner_world[1])[index]
    api.get(path)
    reset_command_stats(redis_client)
    with django_assert_num_queries(0):
        response = api.get(path)
    assert response.status_code == 200
    assert command_calls(redis_client)["evalsha"] == 1


def test_fast_and_full_paths_answer_alike(api, learner_world, redis_client):
    learner, course = learner_world
    client = client_for(learner)
    cases = [
        *[(client, p) for p in per_user_paths() + anonymous_paths(course)],
        *[(api, p) for p in anonymous_paths(course)],
    ]
    for caller, path in cases:
        caller.get(path)  # fill
        reset_command_stats(redis_client)
        fast = caller.get(path)
        fast_calls = command_calls(redis_client)["evalsha"]
        reset_command_stats(redis_client)
        full = caller.get(path, **FULL_VIEW)
        full_calls = command_calls(redis_client)["evalsha"]
        assert answer(fast) == answer(full), path
        assert fast["Allow"] == "GET, HEAD, OPTIONS"
        # The full view of a signed-in read looks the token and the entry up separately.
        if caller is client:
            assert (fast_calls, full_calls) == (signed_in_round_trips(learner, path), 2), path
        else:
            assert (fast_calls, full_calls) == (1, 1), path


def test_fast_path_off_answers_alike_through_drf(api, learner_world, redis_client, settings):
    learner, course = learner_world
    client = client_for(learner)
    cases = [
        *[(client, p) for p in per_user_paths() + anonymous_paths(course)],
        *[(api, p) for p in anonymous_paths(course)],
    ]
    for caller, path in cases:
        settings.CACHE_FAST_PATH = True
        caller.get(path)  # fill
        fast = caller.get(path)
        settings.CACHE_FAST_PATH = False
        reset_command_stats(redis_client)
        slow = caller.get(path)
        assert answer(fast) == answer(slow), path
        # Without the short-circuit a signed-in read authenticates first: two round trips.
        assert command_calls(redis_client)["evalsha"] == (2 if caller is client else 1), path


@pytest.mark.parametrize(
    ("module", "path", "signed_in"),
    [
        (courses.views, "/api/v1/courses?limit=99", False),
        (courses.views, "/api/v1/courses?page=0", True),
        (rewards.views, "/api/v1/rewards/history?page=abc", True),
    ],
)
def test_a_validation_error_is_parsed_once_and_answered_once(
    api, learner_world, monkeypatch, module, path, signed_in
):
    learner, _ = learner_world
    caller = client_for(learner) if signed_in else api
    caller.get("/api/v1/credentials")  # the token's principal is cached
    calls = []
    real = module.page_params

    def counting(query):
        calls.append(query)
        return real(query)

    monkeypatch.setattr(module, "page_params", counting)
    assert_error(caller.get(path), 400, "VALIDATION_ERROR")
    assert len(calls) == 1


def test_bad_query_answers_as_drf_does_in_drf_order(learner_world, api):
    learner, _ = learner_world
    client = client_for(learner)
    client.get("/api/v1/rewards/history")  # token cached
    # A signed-in caller with a bad page: 400. A bad token with a bad page: 401 first,
    # as DRF checks the permission before the view parses its query.
    assert_error(client.get("/api/v1/rewards/history?page=0"), 400, "VALIDATION_ERROR")
    api.credentials(HTTP_AUTHORIZATION="Bearer " + "x" * 40)
    assert_error(api.get("/api/v1/rewards/history?page=0"), 401, "UNAUTHORIZED")
    api.credentials()
    assert_error(api.get("/api/v1/courses?limit=99"), 400, "VALIDATION_ERROR")
    assert_error(api.get("/api/v1/courses/not-a-uuid"), 400, "VALIDATION_ERROR")
    missing = "/api/v1/courses/00000000-0000-4000-8000-000000000000"
    assert_error(api.get(missing), 404, "NOT_FOUND")


def test_logout_and_deactivation_end_fast_reads_at_once(learner_world):
    learner, _ = learner_world
    client = client_for(learner)
    assert client.get("/api/v1/credentials").status_code == 200
    assert client.get("/api/v1/credentials").status_code == 200  # fast-path hit
    assert client.post("/api/v1/auth/logout").status_code in (200, 204)
    assert_error(client.get("/api/v1/credentials"), 401, "UNAUTHORIZED")

    other = client_for(learner)
    other.get("/api/v1/users/me/progress")
    other.get("/api/v1/users/me/progress")
    learner.is_active = False
    learner.save(update_fields=["is_active"])
    assert_error(other.get("/api/v1/users/me/progress"), 401, "UNAUTHORIZED")


@pytest.mark.usefixtures("learner_world")
def test_format_override_and_other_accepts_go_to_drf(api):
    api.get("/api/v1/courses")
    # DRF has no renderer for these: its answers, not the fast path's 200.
    assert api.get("/api/v1/courses?format=xml").status_code == 404
    assert api.get("/api/v1/courses", HTTP_ACCEPT="text/html").status_code == 406
    assert api.get("/api/v1/courses", HTTP_ACCEPT="*/*").status_code == 200


def test_expired_per_user_entry_is_served_stale_and_reloaded_after_the_response(
    learner_world, monkeypatch, settings, redis_client, django_assert_num_queries
):
    learner, _ = learner_world
    client = client_for(learner)
    path = "/api/v1/users/me/progress"
    first = client.get(path)
    # Past progress's TTL (within its grace), not the token's: still the fast path.
    assert settings.CACHE_TTLS["users:progress"] + 1 < settings.CACHE_TTLS["users:principal"]
    real = entries.now_ms
    monkeypatch.setattr(
        entries, "now_ms", lambda: real() + (settings.CACHE_TTLS["users:progress"] + 1) * 1000
    )
    counts = CacheCounts("users:progress")
    reset_command_stats(redis_client)
    with django_assert_num_queries(0):  # the reload runs after the response
        stale = client.get(path)
    assert command_calls(redis_client)["evalsha"] == 1
    assert stale.json()["data"] == first.json()["data"]
    assert refresh.drain()
    # The request that served stale and queued the reload counts as a miss, once.
    assert (counts.now()["misses"], counts.now()["stale"]) == (1, 1)

    with django_assert_num_queries(0):
        again = client.get(path)
    assert again.json()["data"] == first.json()["data"]
    assert counts.now() == {"hits": 1, "misses": 1, "stale": 1, "waits": 0, "fills": 1}


def test_expired_token_principal_is_reloaded_after_the_response_on_the_fast_path(
    learner_world, monkeypatch, settings, redis_client, django_assert_num_queries
):
    learner, _ = learner_world
    client = client_for(learner)
    path = "/api/v1/credentials"
    # Past the token principal's TTL (within its grace), not the credential list's.
    ttl = settings.CACHE_TTLS["users:principal"]
    assert ttl + 1 < settings.CACHE_TTLS["credentials:list"] + settings.CACHE_STALE_GRACE
    monkeypatch.setitem(settings.CACHE_TTLS, "credentials:list", ttl + 30)
    first = client.get(path)
    real = entries.now_ms
    monkeypatch.setattr(entries, "now_ms", lambda: real() + (ttl + 1) * 1000)
    principal = CacheCounts("users:principal")
    reset_command_stats(redis_client)
    with django_assert_num_queries(0):
        response = client.get(path)
    assert command_calls(redis_client)["evalsha"] == 1
    assert response.json()["data"] == first.json()["data"]
    assert refresh.drain()
    assert (principal.now()["misses"], principal.now()["stale"]) == (1, 1)  # the reload
    learner.display_name = "Renamed"  # invalidates the reloaded principal at once
    learner.save(update_fields=["display_name"])
    assert client.get("/api/v1/users/me").json()["data"]["displayName"] == "Renamed"


def test_signed_in_course_reads_are_one_round_trip_per_slot_and_one_enrollment_query(
    learner_world, redis_client, django_assert_num_queries
):
    learner, course = learner_world
    client = client_for(learner)
    other = course_with_modules(1, title="Zig 101")
    paths = ["/api/v1/courses", f"/api/v1/courses/{other.id}"]
    for path in paths:
        client.get(path)
        reset_command_stats(redis_client)
        with django_assert_num_queries(1):  # isEnrolled, never cached
            response = client.get(path)
        assert command_calls(redis_client)["evalsha"] == signed_in_round_trips(learner, path)
        data = response.json()["data"]
        listed = {c["id"]: c["isEnrolled"] for c in (data if isinstance(data, list) else [data])}
        assert listed[str(other.id)] is False
        if isinstance(data, list):
            assert listed[str(course.id)] is True
    assert client.post(f"/api/v1/courses/{other.id}/enroll").status_code == 201
    for path in paths:
        data = client.get(path).json()["data"]
        listed = {c["id"]: c["isEnrolled"] for c in (data if isinstance(data, list) else [data])}
        assert listed[str(other.id)] is True
