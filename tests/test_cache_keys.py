"""Keys: the Lua scripts and keys.py agree; only validated parameters reach a key."""

import pytest

from caching import backend, keys
from caching.managers import course_list_cache, progress_cache
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_lookup_builds_the_key_that_keys_py_builds(redis_client):
    redis_client.set(keys.epoch_key(), 3)
    redis_client.set(keys.generation_key("courses:list"), 7)
    slot = course_list_cache.slot({"difficulty": None, "page": 2, "limit": 5})

    found = backend.lookup(slot, lease_ms=1000)

    expected = keys.entry_key(
        keys.entry_head("courses:list", course_list_cache.version, keys.ALL),
        keys.stamp(3, 7, 7),
        keys.params({"difficulty": None, "page": 2, "limit": 5}),
    )
    assert found.key == expected
    assert found.state == "fill"
    assert redis_client.exists(keys.lease_key(expected))


def test_per_user_keys_carry_the_user_and_payload_version():
    user = UserFactory()
    slot = progress_cache.slot({"user_id": user.id})
    assert slot.head == f"chainlearn:users:progress:v{progress_cache.version}:{user.id}:"
    assert slot.scope_gen_key == f"chainlearn:users:progress:gen:{user.id}"


def test_values_are_json_not_pickle(redis_client, api):
    from tests.factories import CourseFactory

    CourseFactory(title="Plain JSON")
    api.get("/api/v1/courses")
    [key] = [
        k for k in redis_client.keys("chainlearn:courses:list:v*") if not k.endswith(b":lease")
    ]
    raw = redis_client.get(key)
    fresh_until, payload = raw.split(b"\n", 1)
    assert fresh_until.isdigit()
    assert payload.startswith(b'{"items":[{')
    assert b"Plain JSON" in payload


@pytest.mark.parametrize(
    "query",
    ["?utm_source=x", "?page=1&limit=20&junk=1", "?difficulty=beginner&zzz=9", "?a=1&b=2&c=3"],
)
def test_unknown_query_parameters_mint_no_keys(api, redis_client, query):
    api.get("/api/v1/courses")
    api.get("/api/v1/courses?difficulty=beginner")
    before = redis_client.dbsize()

    response = api.get(f"/api/v1/courses{query}")

    assert response.status_code == 200
    assert redis_client.dbsize() == before


@pytest.mark.parametrize("query", ["?page=0", "?limit=51", "?limit=abc", "?difficulty=expert"])
def test_invalid_parameters_are_400_and_mint_no_keys(api, redis_client, query):
    before = redis_client.dbsize()
    response = api.get(f"/api/v1/courses{query}")
    assert response.status_code == 400
    assert response.json()["error"] == "VALIDATION_ERROR"
    assert redis_client.dbsize() == before
