"""PostgreSQL unavailable: the service answers 503 envelopes (never a 500, never internals)
and recovers on its own once the database is back, without restarting gunicorn.

A loopback TCP proxy sits between gunicorn and PostgreSQL; cutting it drops every pooled
connection and refuses new ones, as a database restart or a network partition would.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection
from django.utils import timezone

from courses.models import Enrollment, QuizSubmission
from credentials.models import Credential
from rewards.models import Reward
from tests.factories import (
    PASSWORD,
    EnrollmentFactory,
    QuizSubmissionFactory,
    UserFactory,
    course_with_modules,
    token_for,
)
from tests.live_server import Gunicorn
from tests.tcp_proxy import TcpProxy
from users.models import ApiToken, User

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

INTERNALS = re.compile(
    r"Traceback|File \"|site-packages|\.py\b|psycopg|OperationalError|InterfaceError|"
    r"connection refused|server closed|127\.0\.0\.1|5432",
    re.IGNORECASE,
)


def assert_no_internals(body: bytes) -> None:
    text = body.decode(errors="replace")
    assert not INTERNALS.search(text), text


def assert_unavailable(status: int, body: bytes, what: str) -> None:
    assert status == 503, (what, status, body)
    payload = json.loads(body)
    assert payload == {
        "statusCode": 503,
        "error": "SERVICE_UNAVAILABLE",
        "message": "Database unavailable",
    }, what
    assert_no_internals(body)


@dataclass
class Call:
    name: str
    method: str
    path: str
    token: str | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    ok_status: int = 200
    # Anonymous hot reads already in Redis must keep answering from the cache while PG is
    # down; other reads may too (cached principal and data) or answer 503; writes are 503.
    served_from_cache: bool = False


def send(srv: Gunicorn, call: Call) -> tuple[int, bytes, dict[str, str]]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", **call.headers}
        if call.token:
            headers["Authorization"] = f"Bearer {call.token}"
        payload = json.dumps(call.body) if call.body is not None else None
        conn.request(call.method, call.path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


@pytest.fixture
def proxy():
    db = connection.settings_dict
    tcp = TcpProxy((db["HOST"], int(db["PORT"]))).start()
    yield tcp
    tcp.stop()


@pytest.fixture
def start_server(proxy):
    servers = []

    def start(**env: str) -> Gunicorn:
        db = connection.settings_dict
        srv = Gunicorn(
            DATABASE_URL=f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}",
            DB_CONNECT_TIMEOUT="2",
            **env,
        )
        srv.start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def world():
    learner = UserFactory(username="outage-learner")
    # The server runs the production hashers (tests use a fast one): store a hash it knows.
    hasher = PBKDF2PasswordHasher()
    learner.password = hasher.encode(PASSWORD, hasher.salt(), iterations=1000)
    learner.save(update_fields=["password"])
    token = token_for(learner)
    started = course_with_modules(2, title="Outage started")
    EnrollmentFactory(user=learner, course=started)
    quizzes = [module.quiz for module in started.modules.order_by("order")]
    passed = QuizSubmissionFactory(user=learner, quiz=quizzes[0])
    done = course_with_modules(1, title="Outage done")
    EnrollmentFactory(user=learner, course=done, completed_at=timezone.now())
    QuizSubmissionFactory(user=learner, quiz=done.modules.get().quiz)
    fresh = course_with_modules(1, title="Outage fresh")
    return {
        "learner": learner,
        "token": token,
        "started": started,
        "unanswered_quiz": quizzes[1],
        "passed": passed,
        "done": done,
        "fresh": fresh,
    }


def calls_for(world: dict[str, Any]) -> list[Call]:
    token = world["token"]
    answers = [{"questionId": f"q{i}", "selectedIndex": 1} for i in range(1, 6)]
    return [
        Call("courses anon", "GET", "/api/v1/courses", served_from_cache=True),
        Call(
            "course detail anon",
            "GET",
            f"/api/v1/courses/{world['started'].id}",
            served_from_cache=True,
        ),
        Call("courses auth", "GET", "/api/v1/courses", token),
        Call("course detail auth", "GET", f"/api/v1/courses/{world['started'].id}", token),
        Call("me", "GET", "/api/v1/users/me", token),
        Call("progress", "GET", "/api/v1/users/me/progress", token),
        Call("reward history", "GET", "/api/v1/rewards/history", token),
        Call("credentials", "GET", "/api/v1/credentials", token),
        Call("quiz", "GET", f"/api/v1/quizzes/{world['unanswered_quiz'].id}", token),
        Call("profile update", "PUT", "/api/v1/users/me", token, {"displayName": "After"}),
        Call("enroll", "POST", f"/api/v1/courses/{world['fresh'].id}/enroll", token, ok_status=201),
        Call(
            "submit",
            "POST",
            f"/api/v1/quizzes/{world['unanswered_quiz'].id}/submit",
            token,
            {"answers": answers},
        ),
        Call(
            "claim",
            "POST",
            "/api/v1/rewards/claim",
            token,
            {"submissionId": str(world["passed"].id)},
            headers={"Idempotency-Key": "outage-claim-key-0001"},
        ),
        Call(
            "mint",
            "POST",
            "/api/v1/credentials/mint",
            token,
            {"courseId": str(world["done"].id)},
            ok_status=201,
        ),
        Call(
            "register",
            "POST",
            "/api/v1/auth/register",
            None,
            {"username": "born-in-outage", "password": PASSWORD},
            ok_status=201,
        ),
        Call(
            "login",
            "POST",
            "/api/v1/auth/token",
            None,
            {"username": "outage-learner", "password": PASSWORD},
        ),
    ]


def effects(learner: User) -> dict[str, int]:
    return {
        "enrollments": Enrollment.objects.filter(user=learner).count(),
        "submissions": QuizSubmission.objects.filter(user=learner).count(),
        "rewards": Reward.objects.filter(user=learner).count(),
        "credentials": Credential.objects.filter(user=learner).count(),
        "users": User.objects.count(),
        "tokens": ApiToken.objects.filter(user=learner).count(),
    }


def hammer(srv: Gunicorn, call: Call, count: int) -> list[tuple[int, bytes, dict[str, str]]]:
    """``count`` concurrent copies of ``call``, so every worker thread serves some."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: send(srv, call), range(count)))


def test_database_cut_answers_503_everywhere_and_recovers_without_restart(proxy, server, world):
    srv = server
    calls = calls_for(world)
    reads = [c for c in calls if c.method == "GET"]

    # Before: every worker thread holds a pooled connection; anonymous hot reads are cached.
    warm = {}
    for call in reads:
        for status, body, _ in hammer(srv, call, 16):
            assert status == 200, (call.name, body)
            warm[call.name] = json.loads(body)["data"]
    pooled = proxy.live_connections
    assert pooled >= 2
    workers_before = worker_pids(srv)
    before = effects(world["learner"])

    served: dict[str, int] = {}
    proxy.cut()
    try:
        status, body = srv.get("/health/ready")
        assert status == 503, body
        ready = json.loads(body)
        assert ready["statusCode"] == 503 and ready["error"] == "SERVICE_UNAVAILABLE"
        assert ready["details"]["checks"]["database"] == "error"
        assert_no_internals(body)
        assert srv.get("/health/live")[0] == 200

        for call in calls:
            for status, body, headers in hammer(srv, call, 6):
                if status == 200 and call.method == "GET":
                    assert json.loads(body)["data"] == warm[call.name], call.name
                    served[call.name] = served.get(call.name, 0) + 1
                    continue
                assert not call.served_from_cache, (call.name, status, body)
                assert_unavailable(status, body, call.name)
                assert headers.get("retry-after") == "5", call.name
        assert served["courses anon"] == served["course detail anon"] == 6
        assert "quiz" not in served  # not a cached read: it needs the database
        # Routing and input checks that need no database still answer as usual.
        assert srv.get("/api/v1/nope")[0] == 404
        assert srv.get("/api/v1/courses?limit=0")[0] == 400
    finally:
        proxy.restore()

    assert effects(world["learner"]) == before  # nothing was half-written

    # After: the very same processes serve every request. A pooled connection that died in
    # the cut costs at most its next request (a clean 503) and is then replaced.
    settle = hammer(srv, reads[-1], 24)
    assert_replaced_at_most_once_each(settle, pooled)
    status, body = srv.get("/health/ready")
    assert status == 200, body
    for call in reads:
        results = hammer(srv, call, 24)
        assert [s for s, _, _ in results] == [200] * 24, (call.name, results[0][1])
    for call in calls:
        if call.method == "GET":
            continue
        status, body, _ = send(srv, call)
        assert status == call.ok_status, (call.name, body)
        assert json.loads(body)["success"] is True
    assert worker_pids(srv) == workers_before
    after = effects(world["learner"])
    assert after["enrollments"] == before["enrollments"] + 1
    assert after["submissions"] == before["submissions"] + 1
    assert after["rewards"] == before["rewards"] + 1
    assert after["credentials"] == before["credentials"] + 1
    assert after["users"] == before["users"] + 1
    assert after["tokens"] == before["tokens"] + 1
    with open(srv.log.name) as log:
        text = log.read()
    assert "WORKER TIMEOUT" not in text
    assert text.count("Booting worker") == srv.workers  # no worker was replaced


def assert_replaced_at_most_once_each(
    results: list[tuple[int, bytes, dict[str, str]]], pooled: int
) -> None:
    failed = [(status, body) for status, body, _ in results if status != 200]
    for status, body in failed:
        assert_unavailable(status, body, "first use of a dead pooled connection")
    assert len(failed) <= pooled, failed


@pytest.mark.parametrize("health_checks", ["false", "true"])
def test_connections_broken_by_a_failover_are_replaced_without_a_restart(
    proxy, start_server, world, health_checks
):
    """A cut and an immediate restore (a PostgreSQL failover or restart).

    Without connection health checks (the default: they cost a query per request) each
    dead pooled connection fails at most its next request, with a clean 503, and is then
    replaced; with ``DB_CONN_HEALTH_CHECKS=true`` not one request fails.
    """
    srv = start_server(DB_CONN_HEALTH_CHECKS=health_checks)
    # An uncached read: every request needs the database.
    quiz = Call("quiz", "GET", f"/api/v1/quizzes/{world['unanswered_quiz'].id}", world["token"])
    assert {s for s, _, _ in hammer(srv, quiz, 32)} == {200}
    pooled = proxy.live_connections
    assert pooled >= 2
    accepted = proxy.accepted
    workers = worker_pids(srv)

    proxy.cut()
    proxy.restore()

    first = hammer(srv, quiz, 32)
    if health_checks == "true":
        assert [s for s, _, _ in first] == [200] * 32, [b for s, b, _ in first if s != 200][:1]
    else:
        assert_replaced_at_most_once_each(first, pooled)
    then = hammer(srv, quiz, 32)
    assert [s for s, _, _ in then] == [200] * 32
    assert proxy.accepted - accepted >= 2  # the dead connections were really replaced
    assert worker_pids(srv) == workers


def test_readiness_is_not_fooled_by_a_dead_pooled_connection(proxy, server, world):
    """After a failover the database answers again: /health/ready must say so at once on
    every worker thread, not report 503 once per stale pooled connection."""
    srv = server
    ready = Call("ready", "GET", "/health/ready")
    assert {s for s, _, _ in hammer(srv, ready, 32)} == {200}
    assert proxy.live_connections >= 2

    proxy.cut()
    proxy.restore()

    results = hammer(srv, ready, 32)
    assert [s for s, _, _ in results] == [200] * 32, [b for s, b, _ in results if s != 200][:1]


def worker_pids(srv: Gunicorn) -> set[str]:
    import subprocess

    assert srv.proc is not None
    out = subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True)
    return set(out.stdout.split())
