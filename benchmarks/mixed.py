"""The mixed workload: wrk keeps up a read-mostly load while Python threads write at a
steady rate over HTTP (enrollments, quiz submissions, reward claims, an admin course edit
through the Django admin change form) and check sampled reads against PostgreSQL.

Freshness rule. For each checked read the database is read just before the request is
sent (``before``) and just after the response arrives (``after``). The read is fresh when
it equals one of the two: ``before`` already holds every write whose request had returned,
so a value older than ``before`` is a stale read; a value equal to ``after`` saw a write
that committed while it was in flight. Course-list enrollment counts are live (no lag
allowed): a count is accepted when it lies between the count of enrollments whose request
had returned when the read was sent and ``after`` (an enrollment still in flight may show
or not).

Reads are checked right after each write (read-your-write on everything the write must
invalidate, including the admin edit's list, detail, reward-history and credential-list
entries) and continuously at random by sampler threads.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any

from benchmarks import truth
from benchmarks.config import Config
from benchmarks.dataset import Dataset, list_path
from benchmarks.truth import Truth


class Http:
    """One keep-alive HTTP/1.1 connection to the server, reconnecting when it is closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                data = response.read()
                return response.status, response.headers, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # gunicorn closed an idle keep-alive connection before this request was read.
                self.conn.close()
                self.conn = None
                if attempt or method != "GET":
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    checked: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stale: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    writes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    write_failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    write_seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    examples: list[dict[str, Any]] = field(default_factory=list)
    list_max_lag: int = 0
    list_lagging_items: int = 0

    def check(self, kind: str, fresh: bool, detail: dict[str, Any] | None = None) -> None:
        with self.lock:
            self.checked[kind] += 1
            if not fresh:
                self.stale[kind] += 1
                if len(self.examples) < 10:
                    self.examples.append({"kind": kind, **(detail or {})})

    def error(self, kind: str, note: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            if len(self.examples) < 10:
                self.examples.append({"kind": kind, "error": note})


class FormParser(HTMLParser):
    """The fields a browser would submit from the form with ``form_id``."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.fields: list[tuple[str, str]] = []
        self._textarea: str | None = None
        self._text: list[str] = []
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == self.form_id:
            self.inside = True
        if not self.inside:
            return
        name = a.get("name", "")
        if tag == "input" and name and "__prefix__" not in name:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "image", "file", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields.append((name, a.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "textarea" and name and "__prefix__" not in name:
            self._textarea, self._text = name, []
        elif tag == "select" and name and "__prefix__" not in name:
            self._select, self._options = name, []
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value", ""), "selected" in a))

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.inside:
            self.inside = False
        elif tag == "textarea" and self._textarea is not None:
            text = "".join(self._text)
            # Browsers drop the newline Django's widget puts right after <textarea>.
            self.fields.append((self._textarea, text[1:] if text.startswith("\n") else text))
            self._textarea = None
        elif tag == "select" and self._select is not None:
            chosen = [v for v, selected in self._options if selected] or [
                v for v, _ in self._options[:1]
            ]
            self.fields.extend((self._select, v) for v in chosen)
            self._select = None


class AdminSession:
    """A staff browser session on /admin/: session cookie plus CSRF token, as a person has."""

    def __init__(self, port: int, password: str) -> None:
        self.http = Http(port)
        self.cookies: dict[str, str] = {}
        self.password = password

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        headers.update(extra or {})
        return headers

    def _remember(self, headers: http.client.HTTPMessage) -> None:
        for raw in headers.get_all("Set-Cookie") or []:
            jar: SimpleCookie = SimpleCookie()
            jar.load(raw)
            for name, morsel in jar.items():
                self.cookies[name] = morsel.value

    def get_form(self, path: str, form_id: str) -> list[tuple[str, str]]:
        status, headers, body = self.http.request("GET", path, headers=self._headers())
        self._remember(headers)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        parser = FormParser(form_id)
        parser.feed(body.decode())
        return parser.fields

    def post_form(self, path: str, fields: list[tuple[str, str]]) -> tuple[int, str]:
        status, headers, body = self.http.request(
            "POST",
            path,
            body=urllib.parse.urlencode(fields).encode(),
            headers=self._headers({"Content-Type": "application/x-www-form-urlencoded"}),
        )
        self._remember(headers)
        return status, headers.get("Location", "") or body.decode(errors="replace")[:300]

    def login(self) -> None:
        path = "/admin/login/?next=/admin/"
        fields = [
            (k, v)
            for k, v in self.get_form(path, "login-form")
            if k not in ("username", "password")
        ]
        fields += [("username", "admin"), ("password", self.password)]
        status, where = self.post_form(path, fields)
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"admin login failed ({status}): {where}")

    def edit_course_title(self, course_id: str, title: str) -> tuple[int, str]:
        path = f"/admin/courses/course/{course_id}/change/"
        fields = [(k, v) for k, v in self.get_form(path, "course_form") if k != "title"]
        fields += [("title", title), ("_save", "Save")]
        return self.post_form(path, fields)


@dataclass
class Plan:
    """Everything the writers may do, picked up front from the database."""

    enrolled: dict[str, set[str]]
    submissions: list[tuple[str, str, list[dict[str, Any]]]]
    claims: list[tuple[str, str]]
    edit_courses: list[str]
    reward_users: dict[str, list[str]]
    credential_users: dict[str, list[str]]
    titles: dict[str, str]


def plan(config: Config, data: Dataset) -> Plan:
    users = data.token_user_ids
    t = Truth(config.pg)
    conn = t.conn
    enrolled: dict[str, set[str]] = defaultdict(set)
    for user_id, course_id in conn.execute(
        "SELECT user_id::text, course_id::text FROM courses_enrollment "
        "WHERE user_id = ANY(%s::uuid[])",
        [users],
    ):
        enrolled[user_id].add(course_id)
    submissions = []
    for user_id, quiz_id, questions in conn.execute(
        """
        SELECT e.user_id::text, q.id::text, q.questions FROM courses_enrollment e
        JOIN courses_course c ON c.id = e.course_id AND c.is_active
        JOIN courses_module m ON m.course_id = e.course_id
        JOIN courses_quiz q ON q.module_id = m.id
        WHERE e.user_id = ANY(%s::uuid[]) AND NOT EXISTS (
          SELECT 1 FROM courses_quizsubmission s WHERE s.quiz_id = q.id AND s.user_id = e.user_id)
        ORDER BY md5(q.id::text || e.user_id::text) LIMIT 3000
        """,
        [users],
    ):
        rng = random.Random(quiz_id)
        answers = [
            {
                "questionId": q["id"],
                "selectedIndex": q["correctIndex"] if rng.random() < 0.85 else 0,
            }
            for q in questions
        ]
        submissions.append((user_id, quiz_id, answers))
    claims = [
        (u, s)
        for u, s in conn.execute(
            """
            SELECT s.user_id::text, s.id::text FROM courses_quizsubmission s
            WHERE s.passed AND s.user_id = ANY(%s::uuid[])
              AND NOT EXISTS (SELECT 1 FROM rewards_reward r WHERE r.submission_id = s.id)
            ORDER BY md5(s.id::text) LIMIT 3000
            """,
            [users],
        )
    ]
    reward_users: dict[str, list[str]] = defaultdict(list)
    for course_id, user_id in conn.execute(
        """
        SELECT DISTINCT m.course_id::text, r.user_id::text FROM rewards_reward r
        JOIN courses_quizsubmission s ON s.id = r.submission_id
        JOIN courses_quiz q ON q.id = s.quiz_id JOIN courses_module m ON m.id = q.module_id
        WHERE r.user_id = ANY(%s::uuid[])
        """,
        [users],
    ):
        reward_users[course_id].append(user_id)
    credential_users: dict[str, list[str]] = defaultdict(list)
    for course_id, user_id in conn.execute(
        "SELECT course_id::text, user_id::text FROM credentials_credential "
        "WHERE user_id = ANY(%s::uuid[])",
        [users],
    ):
        credential_users[course_id].append(user_id)
    titles = {
        cid: title
        for cid, title in conn.execute("SELECT id::text, title FROM courses_course WHERE is_active")
    }
    active = set(data.course_ids)
    both = [c for c in data.course_ids if c in reward_users and c in credential_users]
    edit_courses = both or [c for c in data.course_ids if c in active]
    t.close()
    random.Random(5).shuffle(submissions)
    random.Random(6).shuffle(edit_courses)
    return Plan(
        dict(enrolled),
        submissions,
        claims,
        edit_courses,
        dict(reward_users),
        dict(credential_users),
        titles,
    )


class Workload:
    def __init__(self, config: Config, data: Dataset, work: Plan, port: int) -> None:
        self.config = config
        self.port = port
        self.data = data
        self.plan = work
        self.tally = Tally()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # course id -> [sent at, returned at or None] of this run's enrollments
        self.enroll_log: dict[str, list[list[float | None]]] = defaultdict(list)
        self.rng = random.Random(17)
        self.claims = list(work.claims)
        self.submissions = list(work.submissions)
        self.edit_counter = 0

    # ----------------------------------------------------------------- checked reads

    def _get(self, client: Http, path: str, user_id: str | None) -> tuple[int, Any]:
        headers = {}
        if user_id is not None:
            headers["Authorization"] = f"Bearer {self.data.tokens[user_id]}"
        status, _, body = client.request("GET", path, headers=headers)
        return status, json.loads(body) if body else None

    def check_detail(
        self, client: Http, db: Truth, course_id: str, user_id: str | None, why: str
    ) -> None:
        before = db.detail(course_id, user_id)
        status, body = self._get(client, f"/api/v1/courses/{course_id}", user_id)
        after = db.detail(course_id, user_id)
        if status != 200:
            self.tally.error("detail", f"{why}: status {status}")
            return
        served = truth.served_detail(body["data"])
        self.tally.check(
            "detail",
            served in (before, after),
            {"why": why, "course": course_id, "served": served, "db": after},
        )

    def check_progress(self, client: Http, db: Truth, user_id: str, why: str) -> None:
        before = db.progress(user_id)
        status, body = self._get(client, "/api/v1/users/me/progress", user_id)
        after = db.progress(user_id)
        if status != 200:
            self.tally.error("progress", f"{why}: status {status}")
            return
        self.tally.check(
            "progress",
            body["data"] in (before, after),
            {"why": why, "user": user_id, "served": body["data"], "db": after},
        )

    def check_history(self, client: Http, db: Truth, user_id: str, page: int, why: str) -> None:
        before = db.history(user_id, page)
        status, body = self._get(client, f"/api/v1/rewards/history?page={page}", user_id)
        after = db.history(user_id, page)
        if status != 200:
            self.tally.error("history", f"{why}: status {status}")
            return
        served = truth.served_history(body)
        self.tally.check(
            "history", served in (before, after), {"why": why, "user": user_id, "page": page}
        )

    def check_credentials(self, client: Http, db: Truth, user_id: str, why: str) -> None:
        before = db.credentials(user_id)
        status, body = self._get(client, "/api/v1/credentials", user_id)
        after = db.credentials(user_id)
        if status != 200:
            self.tally.error("credentials", f"{why}: status {status}")
            return
        served = truth.served_credentials(body["data"])
        self.tally.check("credentials", served in (before, after), {"why": why, "user": user_id})

    def _count_floor(self, course_id: str, count_after: int, started: float) -> int:
        """Enrollments of ``course_id`` every legitimate list value already includes: all
        but those whose request had not returned when the read was sent."""
        with self.lock:
            in_flight = sum(
                1
                for _, returned in self.enroll_log.get(course_id, [])
                if returned is None or returned > started
            )
        return count_after - in_flight

    def check_list(
        self, client: Http, db: Truth, difficulty: str | None, page: int, why: str
    ) -> None:
        before = db.course_list(difficulty, page)
        started = time.time()
        status, body = self._get(client, list_path(difficulty, page), None)
        after = db.course_list(difficulty, page)
        if status != 200:
            self.tally.error("list", f"{why}: status {status}")
            return
        served = truth.served_list(body)
        shape = {"total": served["total"], "items": served["items"]}
        fresh = shape in (
            {"total": before["total"], "items": before["items"]},
            {"total": after["total"], "items": after["items"]},
        )
        for course_id, count in served["counts"].items():
            true_now = after["counts"].get(course_id)
            if true_now is None:
                continue
            floor = self._count_floor(course_id, true_now, started)
            if not floor <= count <= true_now:
                fresh = False
            lag = true_now - count
            if lag > 0:
                with self.tally.lock:
                    self.tally.list_lagging_items += 1
                    self.tally.list_max_lag = max(self.tally.list_max_lag, lag)
        self.tally.check("list", fresh, {"why": why, "difficulty": difficulty, "page": page})

    # ------------------------------------------------------------------- writers

    def _post(self, path: str, user_id: str, payload: Any = None) -> tuple[int, Any]:
        client = Http(self.port)  # a fresh connection: never retry a write
        try:
            headers = {"Authorization": f"Bearer {self.data.tokens[user_id]}"}
            body = None
            if payload is not None:
                body = json.dumps(payload).encode()
                headers["Content-Type"] = "application/json"
            status, _, raw = client.request("POST", path, headers=headers, body=body)
            return status, json.loads(raw) if raw else None
        finally:
            client.close()

    def _record(self, kind: str, ok: bool, seconds: float) -> None:
        with self.tally.lock:
            if ok:
                self.tally.writes[kind] += 1
                self.tally.write_seconds[kind].append(seconds)
            else:
                self.tally.write_failures[kind] += 1

    def enroll(self, client: Http, db: Truth) -> None:
        users = self.data.token_user_ids
        with self.lock:
            for _ in range(50):
                user_id = self.rng.choice(users)
                course_id = self.rng.choice(self.data.course_ids)
                if course_id not in self.plan.enrolled.setdefault(user_id, set()):
                    self.plan.enrolled[user_id].add(course_id)  # reserved for this thread
                    break
            else:
                return
        entry: list[float | None] = [time.time(), None]
        with self.lock:
            self.enroll_log[course_id].append(entry)
        status, _ = self._post(f"/api/v1/courses/{course_id}/enroll", user_id)
        entry[1] = time.time()
        self._record("enrollment", status == 201, entry[1] - entry[0])  # type: ignore[operator]
        if status != 201:
            self.tally.error("enrollment", f"status {status}")
            return
        self.check_detail(client, db, course_id, user_id, "after enrollment")
        self.check_progress(client, db, user_id, "after enrollment")
        self.check_list(client, db, None, db.list_page_of(course_id), "after enrollment")

    def submit(self, client: Http, db: Truth) -> None:
        with self.lock:
            if not self.submissions:
                return
            user_id, quiz_id, answers = self.submissions.pop()
        started = time.time()
        status, body = self._post(
            f"/api/v1/quizzes/{quiz_id}/submit", user_id, {"answers": answers}
        )
        self._record("quiz submission", status == 200, time.time() - started)
        if status != 200:
            self.tally.error("quiz submission", f"status {status}: {body}")
            return
        if body["data"]["passed"]:
            with self.lock:
                self.claims.append((user_id, body["data"]["id"]))
        self.check_progress(client, db, user_id, "after quiz submission")

    def claim(self, client: Http, db: Truth) -> None:
        with self.lock:
            if not self.claims:
                return
            user_id, submission_id = self.claims.pop()
        started = time.time()
        status, body = self._post("/api/v1/rewards/claim", user_id, {"submissionId": submission_id})
        self._record("reward claim", status == 200, time.time() - started)
        if status != 200:
            self.tally.error("reward claim", f"status {status}: {body}")
            return
        self.check_history(client, db, user_id, 1, "after claim")
        self.check_progress(client, db, user_id, "after claim")

    def admin_edit(self, client: Http, db: Truth, admin: AdminSession) -> None:
        course_id = self.plan.edit_courses[self.edit_counter % len(self.plan.edit_courses)]
        self.edit_counter += 1
        title = f"{self.plan.titles[course_id]} (rev {self.edit_counter})"
        started = time.time()
        try:
            status, where = admin.edit_course_title(course_id, title)
        except (RuntimeError, OSError) as exc:
            self._record("admin course edit", False, 0.0)
            self.tally.error("admin course edit", str(exc))
            return
        self._record("admin course edit", status == 302, time.time() - started)
        if status != 302:
            self.tally.error("admin course edit", f"status {status}: {where}")
            return
        self.check_detail(client, db, course_id, None, "after admin edit")
        self.check_list(client, db, None, db.list_page_of(course_id), "after admin edit")
        reward_users = self.plan.reward_users.get(course_id)
        if reward_users:
            user_id = self.rng.choice(reward_users)
            page = db.history_page_of(user_id, course_id)
            self.check_history(client, db, user_id, page, "after admin edit")
        credential_users = self.plan.credential_users.get(course_id)
        if credential_users:
            self.check_credentials(
                client, db, self.rng.choice(credential_users), "after admin edit"
            )

    def sample(self, client: Http, db: Truth) -> None:
        roll = self.rng.random()
        users = self.data.token_user_ids
        if roll < 0.4:
            self.check_detail(client, db, self.rng.choice(self.data.course_ids), None, "sampled")
        elif roll < 0.55:
            difficulty, page = self.rng.choice(self.data.list_variants)
            self.check_list(client, db, difficulty, page, "sampled")
        elif roll < 0.7:
            self.check_progress(client, db, self.rng.choice(users), "sampled")
        elif roll < 0.85:
            self.check_history(client, db, self.rng.choice(users), 1, "sampled")
        else:
            self.check_credentials(client, db, self.rng.choice(users), "sampled")

    # ------------------------------------------------------------------- running

    def _loop(self, name: str, rate: float | None, step: Any) -> None:
        client = Http(self.port)
        db = Truth(self.config.pg)
        interval = 1.0 / rate if rate else 0.0
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                if interval:
                    delay = next_at - time.monotonic()
                    if delay > 0 and self.stop.wait(delay):
                        break
                    # Steady rate: a write that ran late does not cause a burst to catch up.
                    next_at = max(next_at + interval, time.monotonic() - interval)
                try:
                    step(client, db)
                except Exception as exc:
                    self.tally.error(name, f"{type(exc).__name__}: {exc}")
        finally:
            client.close()
            db.close()

    def threads(self, admin: AdminSession) -> list[threading.Thread]:
        """Writers (enough threads per kind that their checks do not slow the rate down),
        the admin editor and two samplers."""
        c = self.config
        loops: list[tuple[str, float | None, Any]] = []
        for kind, rate, step in (
            ("enrollment", c.enroll_rate, self.enroll),
            ("quiz submission", c.submit_rate, self.submit),
            ("reward claim", c.claim_rate, self.claim),
        ):
            count = max(1, math.ceil(rate / 2.5))
            loops += [(kind, rate / count, step)] * count
        loops += [
            (
                "admin course edit",
                c.admin_edit_rate,
                lambda client, db: self.admin_edit(client, db, admin),
            ),
            ("sampler-1", 25.0, self.sample),
            ("sampler-2", 25.0, self.sample),
        ]
        return [
            threading.Thread(target=self._loop, args=loop, name=loop[0], daemon=True)
            for loop in loops
        ]
