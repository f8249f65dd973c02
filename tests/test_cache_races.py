"""Property 3, no stale set: "reader loads old data → writer commits and invalidates →
reader stores" is forced with the managers' after-load hook and thread events; the late
store must not be what later readers get."""

import threading

import pytest
from django.db import connection

from chainlearn.caches import course_detail_cache, principal_cache, progress_cache
from tests.factories import EnrollmentFactory, UserFactory, course_with_modules
from tests.helpers import redis_keys

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10


def run_reader_paused_after_load(manager, monkeypatch, write, **params):
    """Start a reader, let it load, run ``write`` (commit + invalidate), then let it store."""
    loaded, written = threading.Event(), threading.Event()
    hooked_thread = {}

    def hook():
        if threading.current_thread() is hooked_thread.get("t"):
            loaded.set()
            assert written.wait(TIMEOUT)

    monkeypatch.setattr(manager, "after_load", hook)
    result = {}

    def read():
        try:
            result["value"] = manager.read(params).value()
        finally:
            connection.close()

    reader = threading.Thread(target=read)
    hooked_thread["t"] = reader
    reader.start()
    assert loaded.wait(TIMEOUT)
    write()
    written.set()
    reader.join(TIMEOUT)
    assert not reader.is_alive()
    monkeypatch.setattr(manager, "after_load", None)
    return result["value"]


def test_stale_set_of_a_shared_entry_is_not_served(monkeypatch):
    course = course_with_modules(1, title="Before")

    def write():
        course.title = "After"
        course.save(update_fields=["title"])

    slow_value = run_reader_paused_after_load(
        course_detail_cache, monkeypatch, write, course_id=course.id
    )

    assert slow_value["title"] == "Before"  # the slow reader answered with what it loaded
    assert course_detail_cache.read({"course_id": course.id}).value()["title"] == "After"
    assert course_detail_cache.read({"course_id": course.id}).value()["title"] == "After"


def test_stale_set_of_a_per_user_entry_is_not_served(monkeypatch):
    learner = UserFactory()
    course = course_with_modules(1)

    slow_value = run_reader_paused_after_load(
        progress_cache,
        monkeypatch,
        lambda: EnrollmentFactory(user=learner, course=course),
        user_id=learner.id,
    )

    assert slow_value["enrolledCourses"] == 0
    assert progress_cache.read({"user_id": learner.id}).value()["enrolledCourses"] == 1


def test_without_a_write_the_paused_reader_stores_normally(monkeypatch, redis_client):
    """Control: the hook alone does not prevent the store (so the tests above are meaningful)."""
    course = course_with_modules(1, title="Same")
    run_reader_paused_after_load(
        course_detail_cache, monkeypatch, lambda: None, course_id=course.id
    )
    assert len(redis_keys(redis_client, "chainlearn:courses:detail:v*")) == 1


def test_logout_racing_a_token_fill_cannot_revive_the_token(monkeypatch, api):
    """A request that loaded the principal before logout committed must not store it."""
    from tests.factories import token_for
    from users.models import ApiToken, hash_token

    learner = UserFactory()
    raw = token_for(learner)
    key_hash = hash_token(raw)

    slow_value = run_reader_paused_after_load(
        principal_cache,
        monkeypatch,
        lambda: ApiToken.objects.filter(key_hash=key_hash).delete(),
        user_id=learner.id,
        key_hash=key_hash,
    )

    assert slow_value["username"] == learner.username
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/users/me").status_code == 401


def test_deactivated_user_is_refused_at_once(api):
    from tests.factories import token_for

    learner = UserFactory()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(learner)}")
    assert api.get("/api/v1/users/me").status_code == 200
    assert api.get("/api/v1/users/me").status_code == 200  # principal cached
    learner.is_active = False
    learner.save(update_fields=["is_active"])
    assert api.get("/api/v1/users/me").status_code == 401
