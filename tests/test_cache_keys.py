"""Keys: every key comes from keys.py, scripts touch only the keys they are given, an entry
key is fixed (its stamp travels in the value), and only validated parameters reach a key."""

import re

import pytest

from caching import entries, keys, scripts
from caching.entries import LEASE, Frame
from chainlearn.caches import course_list_cache, principal_cache, progress_cache
from chainlearn.throttling import COUNT_HIT
from tests.factories import CourseFactory, UserFactory
from tests.helpers import key_count, redis_keys

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPTS = {
    "LOOKUP": scripts.LOOKUP,
    "STORE": scripts.STORE,
    "RELEASE": scripts.RELEASE,
    "COUNT_HIT": COUNT_HIT.source,
}
# Commands whose first argument is a key name.
_KEY_COMMAND = re.compile(r"redis\.call\('(\w+)',\s*([^,)]+)")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_touch_only_keys_they_are_given(name):
    calls = _KEY_COMMAND.findall(SCRIPTS[name])
    assert calls, "no redis.call found: the pattern no longer matches the scripts"
    for command, key in calls:
        assert re.fullmatch(r"KEYS\[[^\]]+\]", key.strip()), f"{name}: {command} on {key}"
    # No key name is built inside Lua: no literal with a key's ``:`` separator to join.
    assert not re.search(r"'[^']*:[^']*'", SCRIPTS[name])


def test_lookup_reads_the_fixed_key_that_keys_py_builds(redis_client):
    params = {"difficulty": None, "page": 2, "limit": 5}
    fragment = keys.params(params)
    shard = keys.shard_of(keys.ALL, fragment)  # a shared entry's shard: by its parameters
    redis_client.set(keys.epoch_key(shard), 3)
    redis_client.set(keys.generation_key("courses:list", shard), 7)
    slot = course_list_cache.slot(params)

    (found,) = entries.lookup([slot], [LEASE], lease_ms=1000)

    expected = keys.entry_key("courses:list", course_list_cache.version, shard, keys.ALL, fragment)
    assert expected == (
        f"chainlearn:courses:list:v{course_list_cache.version}:{{{shard}}}:*:{fragment}"
    )
    assert slot.key == expected
    assert found.state == "fill"
    assert found.stamp == "3.7.7"  # epoch, namespace, scope (for a shared entry: the same)
    assert redis_client.exists(keys.lease_key(expected))


def list_stamp(redis_client, key):
    """The current stamp of the list entry ``key`` (its shard's counters)."""
    _, shard, _ = keys.entry_scope("courses:list", key.decode())
    gen = int(redis_client.get(keys.generation_key("courses:list", shard)) or 0)
    return f"{int(redis_client.get(keys.epoch_key(shard)) or 0)}.{gen}.{gen}"


def test_a_stale_stamp_is_a_miss_and_the_next_fill_overwrites_in_place(redis_client, api):
    CourseFactory(title="First")
    api.get("/api/v1/courses")
    [key] = redis_keys(redis_client, "chainlearn:courses:list:v*")
    filled = Frame.decode(redis_client.get(key))
    assert filled.stamp == list_stamp(redis_client, key)

    CourseFactory(title="Second")  # bumps the namespace's generation
    assert list_stamp(redis_client, key) != filled.stamp
    assert b"Second" in api.get("/api/v1/courses").content  # the old stamp was a miss

    # Same key, new stamp: no orphan waits for its TTL.
    assert redis_keys(redis_client, "chainlearn:courses:list:v*") == [key]
    assert Frame.decode(redis_client.get(key)).stamp == list_stamp(redis_client, key)


def test_per_user_and_principal_keys_carry_the_user_and_payload_version():
    user = UserFactory()
    shard = keys.shard_of(str(user.id), "")  # a user's entries share the user's shard
    tag = f"{{{shard}}}"
    slot = progress_cache.slot({"user_id": user.id})
    assert slot.key == f"chainlearn:users:progress:v{progress_cache.version}:{tag}:{user.id}:"
    assert slot.scope_gen_key == f"chainlearn:users:progress:gen:{tag}:{user.id}"

    principal = principal_cache.slot({"user_id": user.id, "key_hash": "ab" * 32})
    assert principal.key == (
        f"chainlearn:users:principal:v{principal_cache.version}:{tag}:{user.id}:"
        f"key_hash={'ab' * 32}"
    )
    assert principal.scope_gen_key == f"chainlearn:users:principal:gen:{tag}:{user.id}"
    # One script reads a token's principal and the user's entry: one slot on a cluster.
    assert principal.shard == slot.shard == shard


def test_values_are_framed_json_not_pickle(redis_client, api):
    course = CourseFactory(title="Plain JSON")
    api.get("/api/v1/courses")
    [key] = redis_keys(redis_client, "chainlearn:courses:list:v*")
    raw = redis_client.get(key)

    head, payload = raw.split(b"\n", 1)
    fresh_until, stamp, total, ids = head.split(b" ")
    assert fresh_until.isdigit()
    assert stamp.decode() == list_stamp(redis_client, key)
    assert total == b"1"
    assert ids == str(course.id).encode()  # whose live count fills the item's hole
    # The page's items as they go into the envelope, the count cut out: no wrapper to cut
    # off at read time, and nothing but the hole to fill.
    assert payload.startswith(b'[{"id":')
    assert b"Plain JSON" in payload
    assert b'"enrolledCount":%b,' in payload  # the hole the count fills


@pytest.mark.parametrize(
    "query",
    ["?utm_source=x", "?page=1&limit=20&junk=1", "?difficulty=beginner&zzz=9", "?a=1&b=2&c=3"],
)
def test_unknown_query_parameters_mint_no_keys(api, redis_client, query):
    api.get("/api/v1/courses")
    api.get("/api/v1/courses?difficulty=beginner")
    before = key_count(redis_client)

    response = api.get(f"/api/v1/courses{query}")

    assert response.status_code == 200
    assert key_count(redis_client) == before


@pytest.mark.parametrize("query", ["?page=0", "?limit=51", "?limit=abc", "?difficulty=expert"])
def test_invalid_parameters_are_400_and_mint_no_keys(api, redis_client, query):
    before = key_count(redis_client)
    response = api.get(f"/api/v1/courses{query}")
    assert response.status_code == 400
    assert response.json()["error"] == "VALIDATION_ERROR"
    assert key_count(redis_client) == before
