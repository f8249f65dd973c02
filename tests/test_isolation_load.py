"""Isolation under load: many learners at once, across two gunicorn worker processes and the
shared Redis cache, each only ever see their own data, and always their current data.

Each client thread acts as one learner: it reads its own profile, progress, reward history
and credentials over and over, and some learners write meanwhile (enroll, submit, claim,
mint). Every response is checked as it arrives against the caller's own rows in the
database (only that thread changes them, so the comparison is exact), and after the run every
response body is scanned for any other learner's ids, usernames or asset codes.

The load machinery here (``World``, ``Learner``) is reused by the Redis-outage scenario.
"""

from __future__ import annotations

import http.client
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from courses.models import Course, Enrollment, QuizSubmission
from credentials.models import Credential
from credentials.selectors import credential_list
from rewards.models import Reward
from rewards.selectors import reward_history
from tests.factories import (
    CredentialFactory,
    EnrollmentFactory,
    QuizSubmissionFactory,
    RewardFactory,
    UserFactory,
    course_with_modules,
    token_for,
)
from tests.live_server import Gunicorn
from users.models import User
from users.selectors import user_progress

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Rate limits are not under test here: many claims per learner per minute are intended.
NO_RATE_LIMITS = {"RATE_LIMIT_CLAIMS": "1000000", "RATE_LIMIT_AUTH": "1000000"}
OWN_PATHS = (
    "/api/v1/users/me",
    "/api/v1/users/me/progress",
    "/api/v1/rewards/history",
    "/api/v1/credentials",
)
ANSWERS = {"answers": [{"questionId": f"q{i}", "selectedIndex": 1} for i in range(1, 6)]}


@dataclass
class Result:
    phase: str
    who: str
    method: str
    path: str
    status: int
    seconds: float
    body: bytes
    problem: str | None = None


@dataclass
class World:
    """What every client thread shares: the server, the phase label and what was acknowledged."""

    srv: Gunicorn
    phase: str = "steady"
    results: list[Result] = field(default_factory=list)
    # Enrollments per course whose POST already returned 201 (a lower bound for enrolledCount).
    acked: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, result: Result) -> Result:
        with self.lock:
            self.results.append(result)
        return result

    def acked_count(self, course_id: str) -> int:
        with self.lock:
            return self.acked.get(course_id, 0)

    def ack_enrollment(self, course_id: str) -> None:
        with self.lock:
            self.acked[course_id] = self.acked.get(course_id, 0) + 1

    def call(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, bytes, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        started = time.perf_counter()
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            response = conn.getresponse()
            return response.status, response.read(), time.perf_counter() - started
        finally:
            conn.close()


@dataclass
class Step:
    kind: str  # enroll | submit | claim | mint
    course_id: str
    quiz_id: str


def write_plan(courses: list[Course]) -> list[Step]:
    """For each one-module course: enroll, pass its quiz (completing it), claim, mint."""
    steps = []
    for course in courses:
        quiz_id = str(course.modules.get().quiz.id)
        steps += [
            Step(kind, str(course.id), quiz_id) for kind in ("enroll", "submit", "claim", "mint")
        ]
    return steps


class Learner:
    """One client thread's learner: its reads, its writes, and the check of every answer."""

    def __init__(self, world: World, user: User, plan: list[Step] | None = None) -> None:
        self.world = world
        self.user = user
        self.token = token_for(user)
        self.plan = list(plan or [])
        self.submissions: dict[str, str] = {}
        self.enrolled: set[str] = set(
            str(c) for c in Enrollment.objects.filter(user=user).values_list("course_id", flat=True)
        )
        self.reads = 0
        self.writes = 0

    # -- expected values, from the database (only this thread changes this learner's rows) --

    def expected(self, path: str) -> Callable[[dict[str, Any]], str | None]:
        uid = self.user.pk
        if path == "/api/v1/users/me":
            user = User.objects.get(pk=uid)
            want = {"id": str(uid), "username": user.username, "credits": user.credits}
            return lambda body: _diff({k: body["data"].get(k) for k in want}, want)
        if path == "/api/v1/users/me/progress":
            want = user_progress(user_id=uid)
            return lambda body: _diff(body["data"], want)
        if path == "/api/v1/rewards/history":
            page = reward_history(user_id=uid, page=1, limit=20)
            return lambda body: _diff(
                [body["data"], body["pagination"]["total"]], [page["items"], page["total"]]
            )
        if path == "/api/v1/credentials":
            want = credential_list(user_id=uid)
            return lambda body: _diff(body["data"], want)
        raise AssertionError(path)

    def check_course(self, body: dict[str, Any], course_id: str, floor: int) -> str | None:
        """A course as the caller sees it: ``isEnrolled`` exact, ``enrolledCount`` not stale."""
        enrolled_now = Enrollment.objects.filter(course_id=course_id).count()
        data = body["data"]
        if data["isEnrolled"] != (course_id in self.enrolled):
            return f"isEnrolled {data['isEnrolled']} for {course_id}"
        if not floor <= data["enrolledCount"] <= enrolled_now:
            return f"enrolledCount {data['enrolledCount']} not in [{floor}, {enrolled_now}]"
        return None

    # -- requests -------------------------------------------------------------------------

    def read(self, path: str) -> Result:
        phase = self.world.phase
        status, raw, seconds = self.world.call("GET", path, self.token)
        problem = None
        if status != 200:
            problem = f"status {status}"
        else:
            problem = self.expected(path)(json.loads(raw))
            problem = problem and f"stale: {problem}"
        self.reads += 1
        return self.world.record(
            Result(phase, self.user.username, "GET", path, status, seconds, raw, problem)
        )

    def read_course(self, course_id: str) -> Result:
        phase = self.world.phase
        floor = self.world.acked_count(course_id)
        path = f"/api/v1/courses/{course_id}"
        status, raw, seconds = self.world.call("GET", path, self.token)
        problem = f"status {status}" if status != 200 else None
        if problem is None:
            problem = self.check_course(json.loads(raw), course_id, floor)
            problem = problem and f"stale: {problem}"
        self.reads += 1
        return self.world.record(
            Result(phase, self.user.username, "GET", path, status, seconds, raw, problem)
        )

    def write(self) -> list[Result]:
        """The next planned write, then the reads that must already show it."""
        step = self.plan.pop(0)
        phase = self.world.phase
        if step.kind == "enroll":
            method, path, body, ok = "POST", f"/api/v1/courses/{step.course_id}/enroll", None, 201
        elif step.kind == "submit":
            method, path, body, ok = "POST", f"/api/v1/quizzes/{step.quiz_id}/submit", ANSWERS, 200
        elif step.kind == "claim":
            body = {"submissionId": self.submissions[step.quiz_id]}
            method, path, ok = "POST", "/api/v1/rewards/claim", 200
        else:
            method, path, body, ok = (
                "POST",
                "/api/v1/credentials/mint",
                {"courseId": step.course_id},
                201,
            )
        status, raw, seconds = self.world.call(method, path, self.token, body)
        problem = None if status == ok else f"status {status}: {raw[:200]!r}"
        self.writes += 1
        results = [
            self.world.record(
                Result(phase, self.user.username, method, path, status, seconds, raw, problem)
            )
        ]
        if problem:
            self.plan.clear()  # the chain cannot go on; keep reading
            return results
        if step.kind == "enroll":
            self.enrolled.add(step.course_id)
            self.world.ack_enrollment(step.course_id)
            results += [self.read_course(step.course_id), self.read("/api/v1/users/me/progress")]
        elif step.kind == "submit":
            self.submissions[step.quiz_id] = json.loads(raw)["data"]["id"]
            results.append(self.read("/api/v1/users/me/progress"))
        elif step.kind == "claim":
            results += [self.read("/api/v1/rewards/history"), self.read("/api/v1/users/me")]
        else:
            results.append(self.read("/api/v1/credentials"))
        return results

    def step(self, i: int, write_every: int = 4) -> None:
        if self.plan and i % write_every == write_every - 1:
            self.write()
        else:
            self.read(OWN_PATHS[i % len(OWN_PATHS)])


def _diff(got: Any, want: Any) -> str | None:
    if got == want:
        return None
    return f"got {json.dumps(got, default=str)[:300]} want {json.dumps(want, default=str)[:300]}"


def run_thread(body: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    """A client thread that closes its own database connection and reports any crash."""

    def target() -> None:
        try:
            body()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def owned_secrets(user: User) -> set[str]:
    """Strings that only this learner's responses may contain."""
    values = {str(user.pk), user.username}
    values |= {
        str(i) for i in QuizSubmission.objects.filter(user=user).values_list("id", flat=True)
    }
    values |= {str(i) for i in Credential.objects.filter(user=user).values_list("id", flat=True)}
    values |= set(Credential.objects.filter(user=user).values_list("asset_code", flat=True))
    values |= {str(i) for i in Reward.objects.filter(user=user).values_list("id", flat=True)}
    return values


@pytest.fixture
def server():
    srv = Gunicorn(**NO_RATE_LIMITS)
    srv.start()
    yield srv
    srv.stop()


def seed_learners(count: int) -> list[User]:
    """Learners with distinct histories in shared courses: scores, rewards, credentials."""
    shared = [course_with_modules(2, title=f"Shared {i}") for i in range(4)]
    learners = []
    for i in range(count):
        user = UserFactory(username=f"iso{i:02d}x{secrets.token_hex(3)}")
        for j, course in enumerate(shared[: 1 + i % 4]):
            EnrollmentFactory(user=user, course=course)
            quiz = course.modules.order_by("order").first().quiz
            submission = QuizSubmissionFactory(user=user, quiz=quiz, score=(i + j) % 5 + 1)
            if submission.passed and (i + j) % 2 == 0:
                RewardFactory(submission=submission)
        if i % 3 == 0:
            done = course_with_modules(1, title=f"Done by {i}")
            EnrollmentFactory(user=user, course=done, completed_at=timezone.now())
            CredentialFactory(user=user, course=done, score=60 + i)
        learners.append(user)
    return learners


def test_every_learner_sees_only_and_exactly_their_own_data_under_load(server):
    users = seed_learners(10)
    fresh = [course_with_modules(1, title=f"Fresh {i}") for i in range(7)]
    world = World(server)
    for course in fresh:
        world.acked[str(course.id)] = 0
    # Learners 0-4 write (each its own three courses, some shared with another writer).
    learners = [
        Learner(world, user, write_plan(fresh[i : i + 3]) if i < 5 else None)
        for i, user in enumerate(users)
    ]
    iterations = 40
    barrier = threading.Barrier(len(learners))
    errors: list[BaseException] = []

    def act(learner: Learner) -> Callable[[], None]:
        def body() -> None:
            barrier.wait(30)
            for i in range(iterations):
                learner.step(i, write_every=3)

        return body

    threads = [run_thread(act(learner), errors) for learner in learners]
    for thread in threads:
        thread.join(120)
    assert not errors, errors

    results = world.results
    problems = [r for r in results if r.problem]
    assert not problems, [(r.who, r.method, r.path, r.problem) for r in problems[:10]]
    writes = [r for r in results if r.method == "POST"]
    assert len(writes) == 5 * 3 * 4  # every planned write happened, and answered as expected
    assert len(results) >= 300

    # No response ever carried another learner's ids, username or asset codes.
    secrets_by_user = {u.username: owned_secrets(u) for u in users}
    leaks = []
    for result in results:
        text = result.body.decode()
        for owner, owned in secrets_by_user.items():
            if owner == result.who:
                continue
            leaks += [(result.who, result.path, owner, s) for s in owned if s in text]
    assert not leaks, leaks[:10]
    # Each learner saw their own username and id on /users/me.
    for learner in learners:
        assert any(
            r.who == learner.user.username
            and r.path == "/api/v1/users/me"
            and str(learner.user.pk) in r.body.decode()
            for r in results
        )
