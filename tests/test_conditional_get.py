"""Conditional GETs on the hot reads: a strong ETag from the cached entry (and the caller's
own isEnrolled part), 304 on If-None-Match without the database, and headers that make
every cache revalidate."""

import pytest
from prometheus_client import REGISTRY

from tests.conftest import client_for
from tests.factories import UserFactory, course_with_modules, learner_with_history
from tests.helpers import command_calls, reset_command_stats

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world():
    course = course_with_modules(2, title="Tagged")
    return learner_with_history(course), course


def not_modified(namespace):
    return REGISTRY.get_sample_value("http_not_modified_total", {"namespace": namespace}) or 0.0


def evalsha_calls(redis_client):
    return command_calls(redis_client).get("evalsha", 0)


@pytest.mark.parametrize("fast_path", [True, False])
def test_anonymous_read_revalidates_with_a_304_and_no_sql(
    api, world, redis_client, django_assert_num_queries, settings, fast_path
):
    settings.CACHE_FAST_PATH = fast_path
    _, course = world
    for path, namespace in (
        ("/api/v1/courses", "courses:list"),
        (f"/api/v1/courses/{course.id}", "courses:detail"),
    ):
        first = api.get(path)
        assert first.status_code == 200
        etag = first["ETag"]
        assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
        assert first["Cache-Control"] == "no-cache"
        assert "Authorization" in [v.strip() for v in first["Vary"].split(",")]
        counted = not_modified(namespace)
        reset_command_stats(redis_client)

        with django_assert_num_queries(0):
            again = api.get(path, HTTP_IF_NONE_MATCH=etag)

        assert again.status_code == 304
        assert again.content == b""
        assert again["ETag"] == etag
        assert again["Cache-Control"] == "no-cache"
        assert evalsha_calls(redis_client) == 1
        assert not_modified(namespace) == counted + 1


def test_a_write_changes_the_etag_at_once(api, world):
    _, course = world
    etag = api.get(f"/api/v1/courses/{course.id}")["ETag"]
    list_etag = api.get("/api/v1/courses")["ETag"]
    course.title = "Renamed"
    course.save(update_fields=["title"])

    detail = api.get(f"/api/v1/courses/{course.id}", HTTP_IF_NONE_MATCH=etag)
    listed = api.get("/api/v1/courses", HTTP_IF_NONE_MATCH=list_etag)

    assert detail.status_code == 200 and detail.json()["data"]["title"] == "Renamed"
    assert detail["ETag"] != etag
    assert listed.status_code == 200 and listed["ETag"] != list_etag


def test_signed_in_list_304_costs_only_the_enrollment_query(world, django_assert_num_queries):
    learner, _ = world
    client = client_for(learner)
    first = client.get("/api/v1/courses")
    assert first["Cache-Control"] == "private, no-cache"
    with django_assert_num_queries(1):  # isEnrolled: the caller's own part of the tag
        again = client.get("/api/v1/courses", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304


def test_the_callers_own_part_is_in_the_etag(api, world):
    learner, course = world  # enrolled in the course
    stranger = client_for(UserFactory())
    path = f"/api/v1/courses/{course.id}"
    mine, theirs, anonymous = client_for(learner).get(path), stranger.get(path), api.get(path)

    assert mine.json()["data"]["isEnrolled"] is True
    assert theirs.json()["data"]["isEnrolled"] is False
    assert len({mine["ETag"], theirs["ETag"], anonymous["ETag"]}) == 3
    # Another caller's tag does not validate this caller's copy.
    assert stranger.get(path, HTTP_IF_NONE_MATCH=mine["ETag"]).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/api/v1/users/me/progress", "/api/v1/rewards/history", "/api/v1/credentials"],
)
def test_per_user_reads_revalidate_privately_without_sql(world, path, django_assert_num_queries):
    learner, _ = world
    client = client_for(learner)
    first = client.get(path)
    assert first["Cache-Control"] == "private, no-cache"
    with django_assert_num_queries(0):
        again = client.get(path, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    # Another user's entry never matches this one's tag.
    other = client_for(learner_with_history(world[1], UserFactory()))
    assert other.get(path, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 200


@pytest.mark.parametrize(
    ("header", "status"),
    [("{etag}", 304), ("W/{etag}", 304), ('"other", {etag}', 304), ("*", 304), ('"x"', 200)],
)
def test_if_none_match_forms(api, world, header, status):
    etag = api.get("/api/v1/courses")["ETag"]
    response = api.get("/api/v1/courses", HTTP_IF_NONE_MATCH=header.format(etag=etag))
    assert response.status_code == status


def test_uncached_reads_carry_no_etag(api, world, settings):
    settings.CACHE_ENABLED = False
    response = api.get("/api/v1/courses")
    assert response.status_code == 200
    assert "ETag" not in response
    assert response["Cache-Control"] == "no-cache"
    assert api.get("/api/v1/courses", HTTP_IF_NONE_MATCH="*").status_code == 200
