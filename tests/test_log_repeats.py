"""A message that repeats is one console line per interval, and the next line that passes
says how many were held back: a failover's retried invalidations do not flood the log."""

from __future__ import annotations

import logging
import sys

import pytest

from caching.metrics import ERRORS
from chainlearn.logfilters import RepeatsSummarized
from tests.factories import CourseFactory
from tests.redis_server import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("caching", level, __file__, 1, msg, args, None)


def test_a_repeat_within_the_interval_is_held_and_counted_on_the_next_line():
    clock = Clock()
    repeats = RepeatsSummarized(interval=10, clock=clock)
    failed = "cache %s failed for %s: %s"

    assert repeats.filter(record(failed, "read", "courses:list", OSError("refused")))
    clock.now += 9.9
    for _ in range(3):  # the exception's text differs from try to try: still a repeat
        assert not repeats.filter(record(failed, "read", "courses:list", OSError("timed out")))
    assert repeats.filter(record(failed, "read", "users:progress", OSError("refused")))
    assert repeats.filter(record(failed, "read", "courses:list", OSError("x"), level=logging.ERROR))

    clock.now += 0.1
    later = record(failed, "read", "courses:list", OSError("refused"))
    assert repeats.filter(later)
    assert later.getMessage() == (
        "cache read failed for courses:list: refused (3 more like it held back)"
    )
    clock.now += 10
    again = record(failed, "read", "courses:list", OSError("refused"))
    assert repeats.filter(again)
    assert again.getMessage() == "cache read failed for courses:list: refused"


def test_the_exception_type_a_record_carries_keeps_it_apart():
    repeats = RepeatsSummarized(interval=10, clock=Clock())

    def failure(exc: Exception) -> logging.LogRecord:
        try:
            raise exc
        except Exception:
            return logging.LogRecord(
                "caching", logging.ERROR, __file__, 1, "refresh failed", (), sys.exc_info()
            )

    assert repeats.filter(failure(ValueError("a")))
    assert not repeats.filter(failure(ValueError("b")))
    assert repeats.filter(failure(KeyError("c")))


@pytest.mark.django_db(transaction=True)
def test_an_invalidation_retried_through_an_outage_logs_one_line(
    use_redis, settings, caplog, monkeypatch
):
    """Against a closed port, with 300 ms of patience, a course save's invalidation fails
    many times; the console gets one line, the error counter all of them."""
    course = CourseFactory()
    use_redis(f"redis://127.0.0.1:{free_port()}/0")
    settings.CACHE_INVALIDATION_PATIENCE_MS = 300
    (repeats,) = [
        f for f in logging.getLogger("caching").filters if isinstance(f, RepeatsSummarized)
    ]
    clock = Clock()  # later than anything the shared filter saw in earlier tests
    monkeypatch.setattr(repeats, "clock", clock)
    failures = ERRORS.labels("courses:detail", "invalidate")

    def failed_lines() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "caching" and "cache invalidate failed" in r.getMessage()
        ]

    with caplog.at_level(logging.WARNING, logger="caching"):
        before = failures._value.get()
        course.title = "Renamed"
        course.save(update_fields=["title"])
        tries = int(failures._value.get() - before)
        assert tries >= 5
        assert len(failed_lines()) == 1

        clock.now += repeats.interval
        course.title = "Renamed again"
        course.save(update_fields=["title"])
    lines = failed_lines()
    assert len(lines) == 2
    assert lines[1].endswith(f"({tries - 1} more like it held back)")
