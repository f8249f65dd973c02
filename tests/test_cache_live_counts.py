"""Live counts (caching.counts): ``enrolledCount`` in list pages and details stays exact
after every kind of enrollment write, and no enrollment makes those entries cold.

Each check after a write reads with ``django_assert_num_queries(0)``: the entry is still a
hit and the count comes from Redis, so a count that was not rewritten would show stale.
"""

import threading
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test import Client
from prometheus_client import REGISTRY

from caching import counts, entries, invalidation, keys
from chainlearn.caches import enrolled_counts
from courses.models import Enrollment
from tests.conftest import client_for
from tests.factories import EnrollmentFactory, UserFactory, course_with_modules
from tests.helpers import CacheCounts

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10


@pytest.fixture
def course():
    return course_with_modules(1, title="Counted")


@pytest.fixture
def other():
    return course_with_modules(1, title="Other")


def shown(api, course):
    """The course's count in the list and in its detail (both must agree)."""
    items = api.get("/api/v1/courses").json()["data"]
    listed = next(item["enrolledCount"] for item in items if item["id"] == str(course.id))
    detailed = api.get(f"/api/v1/courses/{course.id}").json()["data"]["enrolledCount"]
    assert listed == detailed
    return listed


def cached(api, course, django_assert_num_queries):
    """The count as served by two cache hits (no SQL at all)."""
    with django_assert_num_queries(0):
        return shown(api, course)


@contextmanager
def entries_stay_warm(redis_client, course):
    """Asserts that nothing in the block invalidated or refilled a list or detail entry."""
    generations = [
        keys.generation_key(namespace, shard)
        for namespace in ("courses:list", "courses:detail")
        for shard in keys.EVERY_SHARD
    ]
    shard = keys.shard_of(str(course.id), "")
    generations.append(keys.generation_key("courses:detail", shard, str(course.id)))
    before = [redis_client.get(key) for key in generations]
    fills = {ns: CacheCounts(ns) for ns in ("courses:list", "courses:detail")}
    yield
    assert [redis_client.get(key) for key in generations] == before
    assert {ns: c.now()["fills"] for ns, c in fills.items()} == {ns: 0 for ns in fills}


def test_enrolling_through_the_api_shows_each_new_count_from_a_warm_entry(
    api, course, django_assert_num_queries, redis_client
):
    assert shown(api, course) == 0  # fills the list page and the detail
    with entries_stay_warm(redis_client, course):
        for expected in range(1, 4):
            learner = UserFactory()
            response = client_for(learner).post(f"/api/v1/courses/{course.id}/enroll")
            assert response.status_code == 201
            assert cached(api, course, django_assert_num_queries) == expected


def test_admin_deletes_one_enrollment_then_the_rest_with_the_bulk_action(
    api, course, django_assert_num_queries
):
    enrollments = [EnrollmentFactory(course=course) for _ in range(3)]
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert shown(api, course) == 3

    response = admin.post(f"/admin/courses/enrollment/{enrollments[0].id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert cached(api, course, django_assert_num_queries) == 2

    response = admin.post(
        "/admin/courses/enrollment/",
        {
            "action": "delete_selected",
            "_selected_action": [str(e.id) for e in enrollments[1:]],
            "post": "yes",
        },
    )
    assert response.status_code == 302
    assert cached(api, course, django_assert_num_queries) == 0


def test_bulk_create_and_queryset_delete(api, course, django_assert_num_queries, redis_client):
    assert shown(api, course) == 0
    learners = UserFactory.create_batch(5)

    with entries_stay_warm(redis_client, course):
        Enrollment.objects.bulk_create([Enrollment(user=u, course=course) for u in learners])
        assert cached(api, course, django_assert_num_queries) == 5

        Enrollment.objects.filter(user__in=learners[:2]).delete()
        assert cached(api, course, django_assert_num_queries) == 3


def test_a_moved_enrollment_moves_its_count(
    api, course, other, django_assert_num_queries, redis_client
):
    enrollment = EnrollmentFactory(course=course)
    EnrollmentFactory(course=course)
    assert (shown(api, course), shown(api, other)) == (2, 0)

    with entries_stay_warm(redis_client, course):
        enrollment.course = other
        enrollment.save()  # a full save: the old course's count is rewritten as well
        assert cached(api, course, django_assert_num_queries) == 1
        assert cached(api, other, django_assert_num_queries) == 1

        Enrollment.objects.filter(course=course).update(course=other)
        assert cached(api, course, django_assert_num_queries) == 0
        assert cached(api, other, django_assert_num_queries) == 2


def test_a_signed_in_reader_sees_the_live_count_and_its_own_enrollment(api, course):
    learner = UserFactory()
    client = client_for(learner)
    assert client.get(f"/api/v1/courses/{course.id}").json()["data"]["enrolledCount"] == 0

    client.post(f"/api/v1/courses/{course.id}/enroll")

    detail = client.get(f"/api/v1/courses/{course.id}").json()["data"]
    assert (detail["enrolledCount"], detail["isEnrolled"]) == (1, True)
    item = client.get("/api/v1/courses").json()["data"][0]
    assert (item["enrolledCount"], item["isEnrolled"]) == (1, True)


def test_an_enrollment_changes_the_etag(api, course):
    path = f"/api/v1/courses/{course.id}"
    first = api.get(path)
    assert api.get(path, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304

    EnrollmentFactory(course=course)

    after = api.get(path, HTTP_IF_NONE_MATCH=first["ETag"])
    assert after.status_code == 200
    assert after.json()["data"]["enrolledCount"] == 1
    assert after["ETag"] != first["ETag"]
    assert api.get(path, HTTP_IF_NONE_MATCH=after["ETag"]).status_code == 304


def test_a_count_missing_from_redis_is_read_once_then_served_from_redis(
    api, course, django_assert_num_queries, redis_client
):
    EnrollmentFactory(course=course)
    assert shown(api, course) == 1
    # evicted, or Redis restarted
    redis_client.delete(keys.counter_key(enrolled_counts.name, detail_shard(course)))
    loads = count_loads()

    with django_assert_num_queries(2):  # the count's version, the count
        assert api.get(f"/api/v1/courses/{course.id}").json()["data"]["enrolledCount"] == 1
    assert count_loads() == loads + 1
    assert cached(api, course, django_assert_num_queries) == 1


def count_loads():
    labels = {"counter": enrolled_counts.name}
    return REGISTRY.get_sample_value("cache_count_loads_total", labels) or 0.0


def test_a_count_update_lost_while_redis_was_unreachable_is_never_served(
    private_redis, api, course
):
    assert shown(api, course) == 0
    private_redis.pause()
    try:
        EnrollmentFactory(course=course)  # its count update times out
    finally:
        private_redis.resume()
    # The old count (0) is still in Redis, but under the epoch the lost update gave up.
    assert shown(api, course) == 1
    assert shown(api, course) == 1


def test_a_slow_refresh_never_overwrites_a_newer_count(
    api, course, monkeypatch, django_assert_num_queries
):
    """A refresh reads the count (0), then stalls; an enrollment commits and writes its
    count (1); the stalled refresh then lands: its older version is refused."""
    assert shown(api, course) == 0
    stalled, resume = threading.Event(), threading.Event()
    real_read = counts.read

    def read(counter, ids):
        found = real_read(counter, ids)
        if threading.current_thread().name == "slow-refresh":
            stalled.set()
            assert resume.wait(TIMEOUT)
        return found

    monkeypatch.setattr(counts, "read", read)
    epochs = {shard: redis_epoch(shard) for shard in keys.EVERY_SHARD}

    def refresh():
        try:
            invalidation.refresh_counts(enrolled_counts, {str(course.id)}, epochs)
        finally:
            connection.close()

    slow = threading.Thread(target=refresh, name="slow-refresh")
    slow.start()
    assert stalled.wait(TIMEOUT)
    EnrollmentFactory(course=course)
    resume.set()
    slow.join(TIMEOUT)

    assert cached(api, course, django_assert_num_queries) == 1


def test_a_refresh_that_read_an_older_epoch_writes_nothing(redis_client, course):
    shard = detail_shard(course)
    epoch = redis_epoch(shard)
    entries.bump_epoch()

    counts = {str(course.id): 7}
    assert entries.set_counts(enrolled_counts.name, {shard: epoch}, 10**9, counts) == set()
    assert redis_client.hget(keys.counter_key(enrolled_counts.name, shard), str(course.id)) is None


def detail_shard(course):
    """The shard of the course's detail entry, whose counts hash it reads."""
    return keys.shard_of(str(course.id), "")


def redis_epoch(shard):
    from caching.connection import redis_client

    return (redis_client().get(keys.epoch_key(shard)) or b"0").decode()


def test_an_epoch_bump_empties_the_counts_but_not_their_versions(
    api, course, redis_client, django_assert_num_queries
):
    """A refresh whose version predates a count wiped by an epoch bump is still refused:
    otherwise its older count would fill the emptied field."""
    EnrollmentFactory(course=course)  # its refresh stored count 1 under a fresh version
    shard = detail_shard(course)
    counter = keys.counter_key(enrolled_counts.name, shard)
    assert redis_client.hget(counter, str(course.id)) == b"1"
    entries.bump_epoch()
    epoch = redis_epoch(shard)

    assert entries.set_counts(enrolled_counts.name, {shard: epoch}, 1, {str(course.id): 0}) == set()
    assert redis_client.hget(counter, str(course.id)) is None  # emptied, and 0 refused
    assert redis_client.hget(counter, "~epoch") == epoch.encode()
    assert shown(api, course) == 1  # read again from the database under a newer version
    assert cached(api, course, django_assert_num_queries) == 1
