"""Property 4: invalidating a whole namespace is a constant number of Redis commands,
whatever the number of live keys, with no KEYS or SCAN."""

import pytest

from caching import keys
from caching.entries import Frame
from caching.invalidation import flush
from chainlearn.caches import course_list_cache
from tests.factories import CourseFactory
from tests.helpers import command_calls, key_count, reset_command_stats

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("without_l1")]


def fill_list_keys(redis_client, count):
    """``count`` live entries in the list namespace, under the current stamp."""
    value = Frame(fresh_until_ms=99999999999999, stamp="0.0.0", data=b"[]", total=0).encode()
    pipe = redis_client.pipeline(transaction=False)
    for i in range(count):
        fragment = keys.params({"difficulty": None, "page": i + 1, "limit": 20})
        shard = keys.shard_of(keys.ALL, fragment)
        key = keys.entry_key("courses:list", course_list_cache.version, shard, keys.ALL, fragment)
        pipe.set(key, value, px=600_000)
    pipe.execute()


def commands_for_one_invalidation(redis_client, invalidate):
    reset_command_stats(redis_client)
    invalidate()
    return command_calls(redis_client)


@pytest.mark.parametrize("how", ["flush", "course save"])
def test_invalidation_cost_does_not_grow_with_live_keys(redis_client, how):
    course = CourseFactory()

    def invalidate():
        if how == "flush":
            flush(["courses:list"])
        else:
            course.title = course.title + "!"
            course.save(update_fields=["title"])

    fill_list_keys(redis_client, 10)
    small = commands_for_one_invalidation(redis_client, invalidate)
    redis_client.flushdb()
    fill_list_keys(redis_client, 10_000)
    assert key_count(redis_client) >= 10_000
    large = commands_for_one_invalidation(redis_client, invalidate)

    assert small == large
    # Per shard: an INCR per namespace made stale as a whole (a course save: up to three)
    # and a GET of the epoch; pipelined, one round trip per node.
    assert sum(large.values()) <= 4 * keys.SHARDS + 8
    assert not {"keys", "scan", "del", "unlink", "flushdb", "flushall"} & set(large)
    # The old entries' stamp is stale: a read now misses and computes afresh.
    found = course_list_cache.read({"difficulty": None, "page": 1, "limit": 20})
    assert found.total == 1
