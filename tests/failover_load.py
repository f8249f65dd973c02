"""Reads and writes against a gunicorn server while Redis fails over or moves slots
(tests/test_cache_sentinel.py, tests/test_cache_cluster.py): readers of course detail on
the server, one writer renaming the courses from this process, as another host would.

A read is stale if it shows a title older than the last rename that had returned before
the read was sent; any answer but a 200 is an error. The hit rate is sampled per 200
reads, so the time until it is back is measured in reads, not in sleeps.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connection as db_connection

from courses.models import Course
from tests.live_server import Gunicorn


def detail_counters(server: Gunicorn) -> tuple[float, float]:
    """The server's course-detail hits and misses so far (all workers)."""
    text = server.metrics()
    found = []
    for name in ("cache_hits_total", "cache_misses_total"):
        pattern = rf'^{name}\{{namespace="courses:detail"\}} (\S+)$'
        found.append(sum(float(v) for v in re.findall(pattern, text, re.M)))
    return found[0], found[1]


@dataclass
class Load:
    """Readers of course detail on a server, and one writer renaming the courses from this
    process (as another host would); a read is stale if it shows a title older than the
    last rename that had returned before the read was sent."""

    server: Gunicorn
    courses: list[Course]
    done: threading.Event = field(default_factory=threading.Event)
    renamed: dict[int, int] = field(default_factory=dict)  # course index -> last returned
    reads: int = 0
    errors: list[tuple[int, bytes]] = field(default_factory=list)
    stale: list[tuple[int, int, int]] = field(default_factory=list)
    writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    answered: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.answered = threading.Condition(self.lock)

    def after_reads(self, count: int) -> None:
        """Return once ``count`` more reads have been answered."""
        with self.answered:
            target = self.reads + count
            if not self.answered.wait_for(lambda: self.reads >= target, timeout=60):
                raise TimeoutError(f"{count} reads not answered in 60 s")

    def read(self, worker: int) -> None:
        turn = worker
        while not self.done.is_set():
            index = turn % len(self.courses)
            turn += 1
            with self.lock:
                floor = self.renamed.get(index, 0)
            status, body = self.server.get(f"/api/v1/courses/{self.courses[index].id}")
            with self.answered:
                self.reads += 1
                self.answered.notify_all()
                if status != 200:
                    self.errors.append((status, body[:200]))
                    continue
                shown = int(json.loads(body)["data"]["title"].rpartition(" ")[2])
                if shown < floor:
                    self.stale.append((floor, shown, index))

    def write(self) -> None:
        """Rename one course every 50 ms, in turn."""
        try:
            version = 0
            while not self.done.is_set():
                version += 1
                index = version % len(self.courses)
                Course.objects.filter(pk=self.courses[index].pk).update(title=f"Course {version}")
                with self.lock:
                    self.renamed[index] = version
                    self.writes += 1
                self.done.wait(0.05)
        finally:
            db_connection.close()


@dataclass
class Outcome:
    reads: int
    writes: int
    errors: list[tuple[int, bytes]]
    stale: list[tuple[int, int, int]]
    hit_rate_before: float
    event_took: float
    recovered_after: float | None

    def summary(self) -> str:
        return (
            f"reads {self.reads}, writes {self.writes}, non-200 {len(self.errors)}, "
            f"stale {len(self.stale)}, hit rate before {self.hit_rate_before:.1%}, "
            f"event took {self.event_took:.1f} s, hit rate >= 90 % (per 200 reads) again "
            f"after {self.recovered_after or 0:.1f} s"
        )


def under_load(
    server: Gunicorn, courses: list[Course], event: Callable[[], float], readers: int = 4
) -> Outcome:
    """Run readers and the writer on ``server``, warm it, measure the hit rate, run
    ``event`` (a failover, a reshard: it returns how long it took) and wait for the hit
    rate to be back at 90 % (at most 40 s), then 500 reads more."""
    load = Load(server, courses)
    threads = [threading.Thread(target=load.read, args=(n,)) for n in range(readers)]
    threads.append(threading.Thread(target=load.write))
    try:
        for thread in threads:
            thread.start()
        load.after_reads(300)  # warm: the entries are cached
        before = detail_counters(server)
        load.after_reads(500)
        after = detail_counters(server)
        hits, misses = after[0] - before[0], after[1] - before[1]
        hit_rate_before = hits / (hits + misses)
        assert hit_rate_before >= 0.9
        started = time.monotonic()
        took = event()
        recovered_after = None
        last = detail_counters(server)
        while time.monotonic() - started < 40:
            load.after_reads(200)  # one window
            now = detail_counters(server)
            hits, misses = now[0] - last[0], now[1] - last[1]
            last = now
            if hits + misses > 0 and hits / (hits + misses) >= 0.9:
                recovered_after = time.monotonic() - started
                break
        load.after_reads(500)  # reads after the recovery are checked too
    finally:
        load.done.set()
        for thread in threads:
            thread.join(timeout=30)
    return Outcome(
        load.reads, load.writes, load.errors, load.stale, hit_rate_before, took, recovered_after
    )
