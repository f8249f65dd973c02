"""Hardening: security headers, CORS, admin and metrics access, body limits, token revocation
across worker processes, and error bodies that never show internals.

Production-only behaviour (DEBUG=false settings such as HSTS) is checked against real
gunicorn workers, since settings are read when the process starts.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.test import Client
from prometheus_client.mmap_dict import MmapedDict
from rest_framework.test import APIClient

from courses.models import Enrollment
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
from users.models import ApiToken, User

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

APP_ORIGIN = "https://app.chainlearn.test"
DEV_ORIGIN = "http://localhost:3000"
MAX_BODY = 100 * 1024
# Python's own exception texts and anything pointing into the code or the stack.
INTERNALS = re.compile(
    r"Traceback|File \"|line \d+, in|site-packages|\.py\b|sys\.|set_int_max_str_digits|"
    r"codec can't|RecursionError|Exception|psycopg|django|rest_framework",
    re.IGNORECASE,
)


# --- helpers ------------------------------------------------------------------------------


def raw_request(
    srv: Gunicorn,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        if chunked:
            conn.putrequest(method, path)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            assert body is not None
            for start in range(0, len(body), 8192):
                piece = body[start : start + 8192]
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def assert_error_envelope(status: int, body: bytes, code: str | None = None) -> dict[str, Any]:
    payload = json.loads(body)
    assert set(payload) <= {"statusCode", "error", "message", "details"}, payload
    assert payload["statusCode"] == status
    if code is not None:
        assert payload["error"] == code
    assert not INTERNALS.search(payload["message"]), payload["message"]
    assert not INTERNALS.search(body.decode()), body
    return payload


def requests_by_worker(srv: Gunicorn) -> dict[str, float]:
    """Requests each gunicorn worker has answered, from its own prometheus sample file."""
    counts: dict[str, float] = {}
    for path in glob.glob(os.path.join(srv.metrics_dir, "counter_*.db")):
        pid = os.path.basename(path)[len("counter_") : -len(".db")]
        counts[pid] = sum(
            value
            for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(path)
            if json.loads(key)[1] == "django_http_requests_before_middlewares_total"
        )
    return counts


@pytest.fixture(scope="module")
def prod(django_db_setup, django_db_blocker):
    """Two gunicorn workers with production settings (DEBUG=false) and two CORS origins."""
    srv = Gunicorn(CORS_ALLOWED_ORIGINS=f"{APP_ORIGIN}, {DEV_ORIGIN}")
    srv.start()
    yield srv
    srv.stop()


# --- security headers ---------------------------------------------------------------------


def security_header_cases(srv: Gunicorn) -> list[tuple[str, int, dict[str, str]]]:
    token = token_for(UserFactory())
    auth = {"Authorization": f"Bearer {token}"}
    json_type = {"Content-Type": "application/json"}
    big = json.dumps({"username": "x" * MAX_BODY}).encode()
    cases = [
        ("GET", "/api/v1/courses", None, {}),
        ("GET", "/api/v1/users/me", None, auth),
        ("GET", "/api/v1/users/me", None, {}),
        ("GET", "/api/v1/courses?page=0", None, {}),
        ("GET", "/api/v1/nowhere", None, {}),
        ("POST", "/api/v1/auth/register", big, json_type),
        ("GET", "/api/courses", None, {}),
        ("GET", "/health/ready", None, {}),
    ]
    results = []
    for method, path, body, headers in cases:
        status, _body, got = raw_request(srv, method, path, body, headers)
        results.append((f"{method} {path} -> {status}", status, got))
    return results


def test_security_headers_on_every_api_response(prod):
    expected = {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
    }
    seen, missing = set(), []
    for label, status, headers in security_header_cases(prod):
        seen.add(status)
        missing += [
            f"{label}: {name}" for name, value in expected.items() if headers.get(name) != value
        ]
    assert seen == {200, 401, 400, 404, 413, 301}
    assert not missing, "\n".join(missing)


def test_hsts_sent_on_https_in_production_only(prod, api):
    # Behind the TLS proxy (X-Forwarded-Proto from a trusted loopback peer) HSTS is sent...
    _s, _b, headers = raw_request(
        prod, "GET", "/api/v1/courses", None, {"X-Forwarded-Proto": "https"}
    )
    assert headers.get("strict-transport-security") == "max-age=31536000"
    # ...never over plain HTTP, where browsers must ignore it (RFC 6797 §7.2)...
    _s, _b, headers = raw_request(prod, "GET", "/api/v1/courses")
    assert "strict-transport-security" not in headers
    # ...and not by a DEBUG (development) process, even over HTTPS.
    response = api.get("/api/v1/courses", secure=True)
    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response.headers


# --- CORS ---------------------------------------------------------------------------------


@pytest.fixture
def cors(settings):
    settings.CORS_ALLOWED_ORIGINS = [APP_ORIGIN, "null", "*"]
    return APIClient()


def test_cors_allowed_origin_gets_its_origin_back_on_success_and_errors(cors):
    token = token_for(UserFactory())
    responses = [
        cors.get("/api/v1/courses", HTTP_ORIGIN=APP_ORIGIN),
        cors.get("/api/v1/users/me", HTTP_ORIGIN=APP_ORIGIN),
        cors.get("/api/v1/users/me", HTTP_ORIGIN=APP_ORIGIN, HTTP_AUTHORIZATION=f"Bearer {token}"),
        cors.get("/api/v1/courses?limit=99", HTTP_ORIGIN=APP_ORIGIN),
        cors.generic(
            "POST",
            "/api/v1/auth/register",
            "x" * (MAX_BODY + 1),
            content_type="application/json",
            HTTP_ORIGIN=APP_ORIGIN,
        ),
    ]
    assert [r.status_code for r in responses] == [200, 401, 200, 400, 413]
    for response in responses:
        assert response["Access-Control-Allow-Origin"] == APP_ORIGIN
        assert "Origin" in [v.strip() for v in response["Vary"].split(",")]
        assert "Access-Control-Allow-Credentials" not in response
        assert "X-Request-Id" in response["Access-Control-Expose-Headers"]


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.test",
        "http://app.chainlearn.test",  # wrong scheme
        "https://app.chainlearn.test:8443",  # wrong port
        "https://app.chainlearn.test.evil.test",  # suffix trick
        "https://evil.test/https://app.chainlearn.test",
        "null",  # sandboxed iframes, file:// — never trusted even if configured
        "*",
    ],
)
def test_cors_other_origins_get_no_cors_headers(cors, origin):
    response = cors.get("/api/v1/courses", HTTP_ORIGIN=origin)
    assert response.status_code == 200
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    assert "Origin" in response["Vary"]

    preflight = cors.options(
        "/api/v1/rewards/claim",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    assert not [h for h in preflight.headers if h.lower().startswith("access-control-")]


def test_cors_preflight_from_allowed_origin(cors):
    rewards = Reward.objects.count()
    response = cors.options(
        "/api/v1/rewards/claim",
        HTTP_ORIGIN=APP_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key",
    )
    assert response.status_code == 204
    assert response.content == b""
    assert response["Access-Control-Allow-Origin"] == APP_ORIGIN
    methods = {m.strip() for m in response["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "PUT"} <= methods
    allowed = {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "x-request-id"} <= allowed
    assert int(response["Access-Control-Max-Age"]) > 0
    assert "Origin" in response["Vary"]
    assert Reward.objects.count() == rewards


def test_cors_only_on_the_api_and_off_by_default(cors, settings, api):
    response = cors.get("/health/live", HTTP_ORIGIN=APP_ORIGIN)
    assert "Access-Control-Allow-Origin" not in response
    settings.CORS_ALLOWED_ORIGINS = []
    response = api.get("/api/v1/courses", HTTP_ORIGIN=APP_ORIGIN)
    assert "Access-Control-Allow-Origin" not in response


def test_cors_origins_come_from_the_environment(prod):
    for origin in (APP_ORIGIN, DEV_ORIGIN):
        status, _b, headers = raw_request(prod, "GET", "/api/v1/courses", None, {"Origin": origin})
        assert status == 200
        assert headers.get("access-control-allow-origin") == origin
    status, _b, headers = raw_request(
        prod,
        "OPTIONS",
        "/api/v1/users/me",
        None,
        {"Origin": DEV_ORIGIN, "Access-Control-Request-Method": "PUT"},
    )
    assert status == 204
    assert headers["access-control-allow-origin"] == DEV_ORIGIN
    _s, _b, headers = raw_request(
        prod, "GET", "/api/v1/courses", None, {"Origin": "https://x.test"}
    )
    assert "access-control-allow-origin" not in headers


# --- admin and metrics --------------------------------------------------------------------


def admin_login(username: str) -> tuple[Client, Any]:
    client = Client(enforce_csrf_checks=True)
    page = client.get("/admin/login/")
    assert page.status_code == 200
    csrf = client.cookies["csrftoken"].value
    response = client.post(
        "/admin/login/?next=/admin/",
        {
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": csrf,
            "next": "/admin/",
        },
    )
    return client, response


def test_admin_requires_staff():
    anonymous = Client()
    response = anonymous.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert anonymous.get("/admin/users/user/").status_code == 302

    learner = UserFactory(is_staff=False)
    client, login = admin_login(learner.username)
    assert login.status_code == 200  # the form again, with an error
    assert b"staff account" in login.content
    assert "sessionid" not in client.cookies or not client.cookies["sessionid"].value
    assert client.get("/admin/").status_code == 302
    assert client.get("/admin/users/user/").status_code == 302

    # A bearer token, even a staff member's, is no way into the admin.
    staff = UserFactory(is_staff=True, is_superuser=True)
    bearer = Client(HTTP_AUTHORIZATION=f"Bearer {token_for(staff)}")
    assert bearer.get("/admin/").status_code == 302

    client, login = admin_login(staff.username)
    assert login.status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong",
        "Bearer metrics-secret ",
        "Basic bWV0cmljcy1zZWNyZXQ=",
        "metrics-secret",
    ],
)
def test_metrics_refuse_without_the_token(settings, header):
    settings.METRICS_TOKEN = "metrics-secret"
    client = Client(HTTP_AUTHORIZATION=header) if header else Client()
    response = client.get("/metrics?token=metrics-secret")
    assert response.status_code == 404
    assert_error_envelope(404, response.content, "NOT_FOUND")
    assert b"cache_hits_total" not in response.content
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-secret").status_code == 200


def test_metrics_without_a_configured_token_are_loopback_only(settings):
    settings.METRICS_TOKEN = ""
    assert Client(REMOTE_ADDR="203.0.113.7").get("/metrics").status_code == 404
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 404
    # No token configured: a forged Authorization header opens nothing either.
    remote = Client(REMOTE_ADDR="203.0.113.7", HTTP_AUTHORIZATION="Bearer ")
    assert remote.get("/metrics").status_code == 404
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200


# --- body size ----------------------------------------------------------------------------


def padded_json(payload: dict[str, Any], size: int) -> bytes:
    """``payload`` as JSON padded with insignificant whitespace to exactly ``size`` bytes."""
    raw = json.dumps(payload).encode()
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def test_body_over_100kb_is_413_and_creates_nothing(prod):
    users, tokens = User.objects.count(), ApiToken.objects.count()
    json_type = {"Content-Type": "application/json"}
    over = padded_json({"username": "too-big-user", "password": PASSWORD}, MAX_BODY + 1)
    status, body, _h = raw_request(prod, "POST", "/api/v1/auth/register", over, json_type)
    assert status == 413
    assert assert_error_envelope(413, body, "PAYLOAD_TOO_LARGE")["message"]
    assert (User.objects.count(), ApiToken.objects.count()) == (users, tokens)

    # A huge chunked body (no Content-Length) is not read into a row either, and is no 500.
    status, body, _h = raw_request(
        prod, "POST", "/api/v1/auth/register", over * 4, json_type, chunked=True
    )
    assert 400 <= status < 500, body
    assert_error_envelope(status, body)
    assert (User.objects.count(), ApiToken.objects.count()) == (users, tokens)

    # A write that would have an effect: the claim is refused before anything reads it.
    learner = UserFactory()
    submission = QuizSubmissionFactory(user=learner)
    claim = padded_json({"submissionId": str(submission.id)}, MAX_BODY + 1)
    headers = {**json_type, "Authorization": f"Bearer {token_for(learner)}"}
    status, body, _h = raw_request(prod, "POST", "/api/v1/rewards/claim", claim, headers)
    assert status == 413
    assert Reward.objects.filter(user=learner).count() == 0

    # The limit is exactly 100 KB: a body of 102400 bytes is accepted.
    exact = padded_json({"username": "exactly-100k", "password": PASSWORD}, MAX_BODY)
    status, body, _h = raw_request(prod, "POST", "/api/v1/auth/register", exact, json_type)
    assert status == 201, body
    assert User.objects.filter(username="exactly-100k").exists()


# --- logout across workers ----------------------------------------------------------------


def test_logged_out_token_stops_working_at_once_on_every_worker(prod):
    def post(path: str, payload: dict[str, str]) -> str:
        status, body, _h = raw_request(
            prod, "POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
        assert status in (200, 201), body
        return json.loads(body)["data"]["token"]

    # Created through the service so its password hash is one the server's hashers know.
    credentials = {"username": "logout-learner", "password": PASSWORD}
    token = post("/api/v1/auth/register", credentials)
    other_session = post("/api/v1/auth/token", credentials)
    learner = User.objects.get(username="logout-learner")
    course = course_with_modules(1)
    EnrollmentFactory(user=learner, course=course)

    def me(tok: str) -> tuple[int, bytes, dict[str, str]]:
        return raw_request(
            prod, "GET", "/api/v1/users/me", None, {"Authorization": f"Bearer {tok}"}
        )

    def until_every_worker_served(tok: str, minimum: int) -> list[tuple[int, bytes, dict]]:
        """At least ``minimum`` requests, and more until each worker answered some of them."""
        start = requests_by_worker(prod)
        results: list[tuple[int, bytes, dict]] = []
        with ThreadPoolExecutor(8) as pool:
            while len(results) < 400:
                results += pool.map(lambda _: me(tok), range(8))
                now = requests_by_worker(prod)
                served = [pid for pid in now if now[pid] > start.get(pid, 0)]
                if len(results) >= minimum and len(served) >= prod.workers:
                    return results
        raise AssertionError(f"requests did not reach {prod.workers} workers: {now}")

    assert {s for s, _, _ in until_every_worker_served(token, 8)} == {200}

    status, body, _h = raw_request(
        prod, "POST", "/api/v1/auth/logout", None, {"Authorization": f"Bearer {token}"}
    )
    assert status == 200, body

    results = until_every_worker_served(token, 20)
    assert [s for s, _, _ in results] == [401] * len(results)
    for _status, body, headers in results:
        assert_error_envelope(401, body, "UNAUTHORIZED")
        assert headers.get("www-authenticate") == "Bearer"
    # On an optional-auth endpoint the dead token is anonymous: nothing of the learner shows.
    status, body, _h = raw_request(
        prod, "GET", f"/api/v1/courses/{course.id}", None, {"Authorization": f"Bearer {token}"}
    )
    assert status == 200 and json.loads(body)["data"]["isEnrolled"] is False
    # The learner's other login is untouched.
    assert {s for s, _, _ in until_every_worker_served(other_session, 8)} == {200}
    assert Enrollment.objects.filter(user=learner).count() == 1


# --- error bodies -------------------------------------------------------------------------

JSON = "application/json"


def bad_requests(token: str) -> list[tuple[str, str, bytes | None, dict[str, str], int]]:
    auth = {"Authorization": f"Bearer {token}"}
    return [
        ("POST", "/api/v1/auth/register", b'{"username": "abc", ', {"Content-Type": JSON}, 400),
        (
            "POST",
            "/api/v1/auth/register",
            b"username=abc&password=x",
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
        ),
        ("POST", "/api/v1/auth/register", b"\xff\xfe{}", {"Content-Type": JSON}, 400),
        ("POST", "/api/v1/auth/register", b'{"username": NaN}', {"Content-Type": JSON}, 400),
        (
            "POST",
            "/api/v1/auth/register",
            b'{"username": 1' + b"0" * 5000 + b"}",
            {"Content-Type": JSON},
            400,
        ),
        ("POST", "/api/v1/auth/register", b'"just a string"', {"Content-Type": JSON}, 400),
        ("POST", "/api/v1/rewards/claim", b"[1, 2, 3]", {"Content-Type": JSON, **auth}, 400),
        ("POST", "/api/v1/quizzes/not-a-uuid/submit", b"{}", {"Content-Type": JSON, **auth}, 400),
        ("PUT", "/api/v1/users/me", b'{"pace": {"$gt": ""}}', {"Content-Type": JSON, **auth}, 400),
        ("GET", "/api/v1/courses?page=99999999999999999999", None, {}, 400),
        ("GET", "/api/v1/courses?difficulty=%00", None, {}, 400),
        ("GET", "/api/v1/courses/%27%20OR%201=1--", None, {}, 400),
        ("DELETE", "/api/v1/courses", None, {}, 405),
        ("GET", "/api/v1/courses", None, {"Accept": "text/html"}, 406),
        ("POST", "/api/v1/courses/00000000-0000-0000-0000-000000000000/enroll", None, auth, 404),
    ]


def test_bad_input_answers_an_envelope_without_internals(prod):
    token = token_for(UserFactory())
    users = User.objects.count()
    problems = []
    for method, path, body, headers, expected in bad_requests(token):
        status, raw, got = raw_request(prod, method, path, body, headers)
        label = f"{method} {path} {(body or b'')[:30]!r} -> {status} {raw[:160]!r}"
        if status != expected:
            problems.append(f"expected {expected}: {label}")
            continue
        assert got["content-type"].startswith("application/json"), label
        try:
            assert_error_envelope(status, raw)
        except AssertionError:
            problems.append(f"internals: {label}")
    assert not problems, "\n".join(problems)
    assert User.objects.count() == users


def test_deeply_nested_json_is_a_400_not_a_500(prod):
    """Deep nesting makes the JSON decoder raise RecursionError, not ValueError."""
    token = token_for(UserFactory())
    nested = b'{"answers": ' + b"[" * 20000 + b"]" * 20000 + b"}"
    for path, headers in (
        ("/api/v1/auth/register", {"Content-Type": JSON}),
        (
            f"/api/v1/quizzes/{course_with_modules(1).modules.get().quiz.id}/submit",
            {"Content-Type": JSON, "Authorization": f"Bearer {token}"},
        ),
    ):
        status, raw, _h = raw_request(prod, "POST", path, nested, headers)
        assert_error_envelope(status, raw)
        assert status == 400, (path, raw)
