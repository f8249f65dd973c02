"""Two app servers (two gunicorn instances on their own ports, sharing PostgreSQL and Redis,
as two hosts would), each with its in-process tier warm: a write through one, then at once
a read through the other, 1,000 times in each direction, by the API (an enrollment), the
admin (the deactivate and activate actions) and ``QuerySet.update`` (from this process, a
third host). No read may show the value from before the write.

That the tiers were in play is read from each server's ``/metrics``: the warm-up reads
before each write are served in-process.
"""

import http.client
import json
import re
from collections.abc import Callable
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest

from courses.models import Course
from tests.factories import UserFactory, course_with_modules, token_for
from tests.live_server import Gunicorn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PAIRS = 1000  # per direction
WARM_READS = 6
LIST = "/api/v1/courses?page=1&limit=20"


class AdminSession:
    """A signed-in admin session on one server, over HTTP (cookies and CSRF as a browser)."""

    def __init__(self, server: Gunicorn, username: str, password: str) -> None:
        self.server = server
        self.cookies: dict[str, str] = {}
        page = self._send("GET", "/admin/login/")
        token = self._csrf(page)
        status, _ = self._post(
            "/admin/login/?next=/admin/",
            {"username": username, "password": password, "csrfmiddlewaretoken": token},
        )
        assert status == 302 and "sessionid" in self.cookies

    def act(self, action: str, course_id: str) -> None:
        token = self._csrf(self._send("GET", "/admin/courses/course/"))
        form = {"action": action, "_selected_action": course_id, "index": "0"}
        status, body = self._post("/admin/courses/course/", {**form, "csrfmiddlewaretoken": token})
        assert status == 302, body[:500]

    def _post(self, path: str, form: dict[str, str]) -> tuple[int, bytes]:
        return self._send_raw("POST", path, urlencode(form))

    def _send(self, method: str, path: str) -> bytes:
        status, body = self._send_raw(method, path, None)
        assert status == 200, (path, status)
        return body

    def _send_raw(self, method: str, path: str, body: str | None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            for header in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(header).items():
                    self.cookies[name] = morsel.value
            return response.status, response.read()
        finally:
            conn.close()

    @staticmethod
    def _csrf(page: bytes) -> str:
        match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert match, "no CSRF token in the page"
        return match.group(1).decode()


def l1_hits(server: Gunicorn) -> float:
    pattern = r'^cache_l1_reads_total\{namespace="([^"]+)",outcome="hit"\} (\S+)$'
    return sum(float(value) for _, value in re.findall(pattern, server.metrics(), re.M))


def data(server: Gunicorn, path: str) -> object:
    status, body = server.get(path)
    assert status == 200, body
    return json.loads(body)["data"]


def listed(server: Gunicorn, course: Course) -> bool:
    items = data(server, LIST)
    assert isinstance(items, list)
    return any(item["id"] == str(course.id) for item in items)


def enrolled_count(server: Gunicorn, course: Course) -> int:
    detail = data(server, f"/api/v1/courses/{course.id}")
    assert isinstance(detail, dict)
    return int(detail["enrolledCount"])


def warm(read: Callable[..., object], *args: object) -> None:
    """Read until this server's tier serves the entry (or ``WARM_READS`` times). Each of the
    server's request threads reads its own invalidation stream, so a thread's first read
    after a write also drops entries other threads kept since (conservatively), and under
    this one-request-at-a-time traffic the threads take turns."""
    for _ in range(WARM_READS):
        read(*args)


@pytest.fixture
def servers():
    started = [Gunicorn(workers=1, threads=4) for _ in range(2)]
    for server in started:
        server.start()
    yield started
    for server in started:
        server.stop()


def test_a_write_on_one_server_is_never_read_old_on_the_other(servers, settings):
    first, second = servers
    counted, toggled, renamed = (course_with_modules(1, title=t) for t in "ABC")
    learners = [token_for(UserFactory()) for _ in range(PAIRS * 2 // 3 + 2)]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    admin = UserFactory(is_staff=True, is_superuser=True)
    admin.set_password("admin-pass-for-tests")
    admin.save()
    sessions = {
        server.port: AdminSession(server, admin.username, "admin-pass-for-tests")
        for server in servers
    }
    enrolled, active = 0, True
    stale: list[tuple[int, str, object, object]] = []
    directions = {(first.port, second.port): 0, (second.port, first.port): 0}
    for round_ in range(PAIRS * 2):
        writer, reader = (first, second) if round_ % 2 == 0 else (second, first)
        kind = ("api", "admin", "update")[(round_ // 2) % 3]
        if kind == "api":
            warm(enrolled_count, reader, counted)
            status, body = writer.request(
                "POST",
                f"/api/v1/courses/{counted.id}/enroll",
                {"Authorization": f"Bearer {learners.pop()}"},
            )
            assert status == 201, body
            enrolled += 1
            shown: object = enrolled_count(reader, counted)
            expected: object = enrolled
        elif kind == "admin":
            warm(listed, reader, toggled)
            active = not active
            sessions[writer.port].act("activate" if active else "deactivate", str(toggled.id))
            shown, expected = listed(reader, toggled), active
        else:  # this process writes, as a third host would (a shell, a task)
            path = f"/api/v1/courses/{renamed.id}"
            warm(data, reader, path)
            expected = f"Title {round_}"
            Course.objects.filter(pk=renamed.pk).update(title=expected)
            shown = data(reader, path)["title"]  # type: ignore[index]
        if shown != expected:
            stale.append((round_, kind, shown, expected))
        directions[(writer.port, reader.port)] += 1
    assert list(directions.values()) == [PAIRS, PAIRS]
    assert stale == []
    hits = [l1_hits(server) for server in servers]
    print(f"pairs per direction {list(directions.values())}, stale {len(stale)}, L1 hits {hits}")
    assert min(hits) >= PAIRS / 2, f"in-process hits per server: {hits}"
