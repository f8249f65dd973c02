"""The write side of the write-heavy scenario (``benchmarks/write_heavy.py``), in a process
of its own so that its CPU is not the benchmark driver's:
``python -m benchmarks.enroller PLAN.json``.

It enrolls learners through the API (``POST /api/v1/courses/<id>/enroll`` with each
learner's bearer token) at a fixed rate, open loop: enroll ``i`` is due at
``start + i / rate`` whatever happened to the earlier ones, and goes out on the first of a
few keep-alive connections (one thread each) that is free. Every (learner, course) pair of
the plan is not enrolled yet, so each enroll should answer 201.

Freshness check: after every ``check_every``-th enroll has returned 2xx, the thread that
got it reads the endpoint and compares the course's ``enrolledCount`` with PostgreSQL's
count read just before the GET is sent (``before``) and just after its answer (``after``):
fresh iff ``before <= served <= after``. There is no lag window: counts must be exact.
``before`` may include enrolls committed by other threads whose requests have not returned
yet; how many of the course's enrolls were in flight when the GET was sent is recorded
with each check, so a read below ``before`` by no more than that can be told apart.

It prints ``ready`` once its connections are open, then sends ``rate * seconds`` enrolls (or
as many as the plan has pairs; none after ``seconds``, so it stops in time even when the
server cannot keep up) and writes what happened to the plan's ``out`` file, with times on
the monotonic clock, which every process on the machine shares.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

# gunicorn closes a keep-alive connection idle for 2 s; a connection idle for this long is
# reopened before a write is sent on it, so no write meets a closed connection.
IDLE_REOPEN_S = 1.0
TIMEOUT_S = 10.0
COUNT = "SELECT count(*) FROM courses_enrollment WHERE course_id = %s"


@dataclass(frozen=True)
class Plan:
    port: int
    rate: float
    seconds: float
    connections: int
    read: str  # "list" (``read_path`` lists the courses) or "detail" (/courses/<id>)
    read_path: str
    pg: dict[str, Any]
    pairs: list[tuple[str, str]]  # (course id, bearer token), none enrolled yet
    check_every: int
    out: str


class Connection:
    """One keep-alive HTTP/1.1 connection to the server; a request is never retried."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.used = 0.0

    def open(self) -> None:
        self.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        self.conn.connect()
        self.used = time.monotonic()

    def request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.conn is None or time.monotonic() - self.used > IDLE_REOPEN_S:
            self.open()
        assert self.conn is not None
        try:
            self.conn.request(method, path, headers=headers)
            response = self.conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        self.used = time.monotonic()
        if response.will_close:
            self.close()
        return response.status, body

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def served_count(read: str, body: bytes, course_id: str) -> int | None:
    data = json.loads(body)["data"]
    if read == "detail":
        return int(data["enrolledCount"])
    return next((int(c["enrolledCount"]) for c in data if c["id"] == course_id), None)


@dataclass
class Enroller:
    plan: Plan
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_slot: int = 0
    succeeded: int = 0
    # [due, sent, returned, status] per enroll (status 0: no answer)
    enrolls: list[tuple[float, float, float, int]] = field(default_factory=list)
    # course id -> enrolls sent and not answered yet
    in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # [sent, before, served, after, in flight when sent] per checked read
    checks: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    start: float = 0.0

    @property
    def scheduled(self) -> int:
        return int(self.plan.rate * self.plan.seconds)

    def _slot(self) -> int | None:
        """The next enroll to send; None once every one is sent or the time is up (an
        enroll the connections could not send in time is missed, not sent late)."""
        with self.lock:
            slot = self.next_slot
            self.next_slot += 1
        if slot >= min(len(self.plan.pairs), self.scheduled):
            return None
        return slot if time.monotonic() <= self.start + self.plan.seconds else None

    def _problem(self, note: str) -> None:
        with self.lock:
            if len(self.problems) < 10:
                self.problems.append(note)

    def _check(self, client: Connection, db: psycopg.Connection, course_id: str) -> None:
        before = db.execute(COUNT, [course_id]).fetchone()[0]  # type: ignore[index]
        # Enrolls of the course that ``before`` may count but whose requests have not
        # returned: a read may not show them yet without breaking read-your-writes.
        in_flight = self.in_flight[course_id]
        sent = time.monotonic()
        try:
            status, body = client.request("GET", self.plan.read_path, {})
        except (OSError, http.client.HTTPException) as exc:
            self._problem(f"check GET: {type(exc).__name__}: {exc}")
            return
        after = db.execute(COUNT, [course_id]).fetchone()[0]  # type: ignore[index]
        served = served_count(self.plan.read, body, course_id) if status == 200 else None
        if served is None:
            self._problem(f"check GET {self.plan.read_path}: {status}, course {course_id} absent")
            return
        self.checks.append((sent, before, served, after, in_flight))

    def _loop(self, client: Connection, db: psycopg.Connection) -> None:
        plan = self.plan
        while (slot := self._slot()) is not None:
            due = self.start + slot / plan.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            course_id, token = plan.pairs[slot]
            with self.lock:
                self.in_flight[course_id] += 1
            sent = time.monotonic()
            try:
                status, body = client.request(
                    "POST",
                    f"/api/v1/courses/{course_id}/enroll",
                    {"Authorization": f"Bearer {token}"},
                )
            except (OSError, http.client.HTTPException) as exc:
                status, body = 0, f"{type(exc).__name__}: {exc}".encode()
            self.enrolls.append((due, sent, time.monotonic(), status))
            with self.lock:
                self.in_flight[course_id] -= 1
            if not 200 <= status < 300:
                self._problem(f"enroll {course_id}: {status} {body[:200]!r}")
                continue
            with self.lock:
                self.succeeded += 1
                check = self.succeeded % plan.check_every == 0
            if check:
                self._check(client, db, course_id)

    def run(self) -> dict[str, Any]:
        clients = [Connection(self.plan.port) for _ in range(self.plan.connections)]
        dbs = [
            psycopg.connect(**self.plan.pg, autocommit=True) for _ in range(self.plan.connections)
        ]
        for client in clients:
            client.open()
        threads = [
            threading.Thread(target=self._loop, args=pair, daemon=True)
            for pair in zip(clients, dbs, strict=True)
        ]
        print("ready", flush=True)
        self.start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for client, db in zip(clients, dbs, strict=True):
            client.close()
            db.close()
        return {
            "enrolls": self.enrolls,
            "checks": self.checks,
            "scheduled": self.scheduled,
            "pairs": len(self.plan.pairs),
            "problems": self.problems,
        }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    raw = json.loads(Path(args[0]).read_text())
    plan = Plan(**{**raw, "pairs": [tuple(p) for p in raw["pairs"]]})
    Path(plan.out).write_text(json.dumps(Enroller(plan).run()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
