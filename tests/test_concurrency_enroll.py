"""Races decided by the database: concurrent enrollments and concurrent last-module passes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from courses import services
from courses.models import Enrollment, QuizSubmission
from tests.conftest import client_for
from tests.factories import CourseFactory, EnrollmentFactory, UserFactory, course_with_modules

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads released at once by a barrier; each uses its own connection."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = calls[index]()
        except Exception as exc:  # surfaced by the assertions below
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_twenty_concurrent_enrollments_make_one_row():
    # given one learner with a separate token per request, and one course
    user = UserFactory()
    course = CourseFactory()
    clients = [client_for(user) for _ in range(20)]
    url = f"/api/v1/courses/{course.id}/enroll"

    # when all 20 enroll at once
    responses = run_together([lambda c=client: c.post(url) for client in clients])

    # then the unique constraint lets exactly one through
    statuses = sorted(getattr(r, "status_code", repr(r)) for r in responses)
    assert statuses == [201] + [409] * 19
    conflicts = [r.json() for r in responses if r.status_code == 409]
    assert all(body["error"] == "CONFLICT" for body in conflicts)
    assert Enrollment.objects.filter(user=user, course=course).count() == 1


PERFECT = {"answers": [{"questionId": f"q{i}", "selectedIndex": 1} for i in range(1, 6)]}


def pass_first_module(user, course) -> None:
    quiz = course.modules.get(order=1).quiz
    response = client_for(user).post(f"/api/v1/quizzes/{quiz.id}/submit", PERFECT, format="json")
    assert response.json()["data"]["passed"]


def submit_last_two_at_once(user, course) -> list[Any]:
    """Submit perfect answers to modules 2 and 3 concurrently."""
    second, third = (course.modules.get(order=n).quiz for n in (2, 3))
    clients = [client_for(user), client_for(user)]
    return run_together(
        [
            lambda: clients[0].post(f"/api/v1/quizzes/{second.id}/submit", PERFECT, format="json"),
            lambda: clients[1].post(f"/api/v1/quizzes/{third.id}/submit", PERFECT, format="json"),
        ]
    )


def test_concurrent_passes_of_the_last_two_modules_complete_the_course():
    user = UserFactory()
    course = course_with_modules(3)
    enrollment = EnrollmentFactory(user=user, course=course)
    pass_first_module(user, course)

    responses = submit_last_two_at_once(user, course)

    assert [getattr(r, "status_code", repr(r)) for r in responses] == [200, 200]
    assert QuizSubmission.objects.filter(user=user, passed=True).count() == 3
    enrollment.refresh_from_db()
    assert enrollment.completed_at is not None


def test_last_two_passes_cannot_both_miss_completion(monkeypatch):
    # Force the dangerous interleaving: each submission has inserted its pass and now checks
    # for completion; the hook holds the first arrival until the other arrives too. Without
    # the enrollment row lock both would check before either commits and neither would see
    # the other's pass. With the lock the second is still waiting for the row, so the first
    # stops waiting after the timeout, commits, and the second then sees its pass.
    user = UserFactory()
    course = course_with_modules(3)
    enrollment = EnrollmentFactory(user=user, course=course)
    pass_first_module(user, course)
    both_checking = threading.Barrier(2)
    checked = services._course_completed

    def meet_then_check(**kwargs: Any) -> bool:
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checking.wait(timeout=1.5)
        return checked(**kwargs)

    monkeypatch.setattr(services, "_course_completed", meet_then_check)

    responses = submit_last_two_at_once(user, course)

    assert [getattr(r, "status_code", repr(r)) for r in responses] == [200, 200]
    enrollment.refresh_from_db()
    assert enrollment.completed_at is not None


def test_concurrent_duplicate_submissions_record_one():
    user = UserFactory()
    course = course_with_modules(1)
    EnrollmentFactory(user=user, course=course)
    quiz = course.modules.get().quiz
    body = {"answers": [{"questionId": "q1", "selectedIndex": 1}]}
    clients = [client_for(user) for _ in range(8)]

    responses = run_together(
        [
            lambda c=client: c.post(f"/api/v1/quizzes/{quiz.id}/submit", body, format="json")
            for client in clients
        ]
    )

    assert sorted(getattr(r, "status_code", repr(r)) for r in responses) == [200] + [409] * 7
    assert QuizSubmission.objects.filter(user=user, quiz=quiz).count() == 1
