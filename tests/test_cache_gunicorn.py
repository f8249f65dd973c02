"""Across real gunicorn worker processes: one fill for 100 concurrent cold requests,
metrics aggregated over workers, and warming when the service starts."""

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tests.factories import UserFactory, course_with_modules, token_for
from tests.helpers import command_calls, redis_keys, reset_command_stats
from tests.live_server import Gunicorn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

COLD_PAGE = "/api/v1/courses?page=1&limit=20"


@pytest.fixture
def server(request):
    servers = []

    def start(**env):
        srv = Gunicorn(**env)
        srv.start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def statements():
    """PostgreSQL's own statement counts (pg_stat_statements), reset at the start."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        cursor.execute("SELECT pg_stat_statements_reset()")

    def calls(fragment):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND query ILIKE %s",
                [f"%{fragment}%"],
            )
            return int(cursor.fetchone()[0])

    return calls


def test_hundred_concurrent_cold_requests_run_the_loader_once(server, redis_client, statements):
    for i in range(30):
        course_with_modules(1, title=f"Course {i}")
    srv = server(CACHE_LEASE_MS="10000")
    barrier = threading.Barrier(100)
    locked, in_flight = threading.Event(), threading.Event()

    # Hold the course table locked so the first fill blocks inside its COUNT query while the
    # other requests arrive; release once PostgreSQL shows that query waiting on the lock
    # and Redis has seen every worker thread look the key up.
    def hold_lock():
        from django.db import connections

        with connections["default"].cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE courses_course IN ACCESS EXCLUSIVE MODE")
            locked.set()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                # pg_stat_activity is a snapshot per transaction unless cleared
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query ILIKE '%%COUNT(*)%%courses_course%%'"
                )
                lookups = command_calls(redis_client).get("evalsha", 0)
                waiting = cursor.fetchone()[0]
                if waiting >= 1 and lookups >= 8:
                    break
                time.sleep(0.01)
            in_flight.set()
            cursor.execute("COMMIT")
        connections["default"].close()

    reset_command_stats(redis_client)
    locker = threading.Thread(target=hold_lock)
    locker.start()
    assert locked.wait(10)

    def fetch(_):
        barrier.wait(30)
        return srv.get(COLD_PAGE)

    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(fetch, range(100)))
    locker.join(30)

    assert in_flight.is_set()
    assert {status for status, _ in results} == {200}
    bodies = {json.dumps(json.loads(body)["data"], sort_keys=True) for _, body in results}
    assert len(bodies) == 1
    text = srv.metrics()
    # Counted once per request, across both workers: one fill, the rest served from Redis.
    assert metric_value(text, "cache_misses_total", "courses:list") == 1
    assert metric_value(text, "cache_hits_total", "courses:list") == 99
    # PostgreSQL agrees: the list's COUNT and page queries each ran once
    assert statements('COUNT(*) AS "__count" FROM "courses_course"') == 1
    assert statements('"enrolled_count" FROM "courses_course"') == 1
    fills = re.search(r'^cache_fill_seconds_count\{namespace="courses:list"\} (\S+)$', text, re.M)
    assert float(fills.group(1)) == 1.0


def metric_value(text, name, namespace):
    match = re.search(rf'^{name}{{namespace="{re.escape(namespace)}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_are_exact_across_two_workers(server):
    learner = UserFactory()
    course = course_with_modules(2)
    token = token_for(learner)
    srv = server()
    paths = {
        "courses:list": "/api/v1/courses",
        "courses:detail": f"/api/v1/courses/{course.id}",
        "users:progress": "/api/v1/users/me/progress",
        "rewards:history": "/api/v1/rewards/history",
        "credentials:list": "/api/v1/credentials",
    }
    for path in paths.values():
        for _ in range(2):  # a miss, then a hit
            status, _body = srv.get(path, Authorization=f"Bearer {token}")
            assert status == 200
    # more hits, spread over both workers (new connection each time)
    for _ in range(20):
        srv.get(paths["courses:list"])
    text = srv.metrics()

    for namespace in paths:
        hits = metric_value(text, "cache_hits_total", namespace)
        misses = metric_value(text, "cache_misses_total", namespace)
        expected_hits = 21 if namespace == "courses:list" else 1
        assert (hits, misses) == (expected_hits, 1), namespace
        assert metric_value(text, "cache_hit_rate", namespace) == pytest.approx(
            expected_hits / (expected_hits + 1)
        )
    assert "cache_breaker_open" in text
    # Request metrics from both workers: every course-list request, by view and status.
    listed = re.search(
        r'^django_http_responses_total_by_status_view_method_total\{method="GET",'
        r'status="200",view="course-list"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    assert listed is not None and float(listed.group(1)) == 22.0
    assert "django_http_requests_latency_seconds_by_view_method_bucket" in text
    assert "django_http_requests_before_middlewares_total" in text


@pytest.mark.parametrize("token", [None, "Bearer wrong-token"])
def test_metrics_refuse_missing_or_wrong_token(server, token):
    srv = server()
    headers = {"Authorization": token} if token else {}
    status, body = srv.get("/metrics", **headers)
    assert status == 404
    assert json.loads(body)["error"] == "NOT_FOUND"


def test_starting_the_service_warms_list_and_detail(server, redis_client):
    courses = [course_with_modules(1, difficulty=d) for d in ("beginner", "intermediate")]
    server(CACHE_WARM_ON_START="true")
    entries = [
        k.decode()
        for k in redis_keys(redis_client, "chainlearn:courses:*:v*")
        if not k.endswith(b":lease")
    ]
    lists = [k for k in entries if k.startswith("chainlearn:courses:list:")]
    details = [k for k in entries if k.startswith("chainlearn:courses:detail:")]
    assert len(lists) == 4  # all, beginner, intermediate, advanced at the default limit
    assert sorted(k.split(":")[5] for k in details) == sorted(str(c.id) for c in courses)
