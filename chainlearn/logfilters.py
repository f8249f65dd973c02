"""Logging filters for the service's console (``LOGGING`` in settings)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class ClientErrorsAsInfo(logging.Filter):
    """Log a 4xx response as one INFO line instead of a WARNING.

    Django logs every 4xx on ``django.request`` as a WARNING, and a ``PermissionDenied``
    (the admin's add page of a read-only model) with its whole traceback. A client's
    mistake is not the operator's: it stays one line, below the console's default level.
    5xx records pass unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


class RepeatsSummarized(logging.Filter):
    """Pass a record at most once per ``interval`` seconds for each message (its logger,
    level and template, its arguments other than exceptions, and the type of the exception
    it carries); the next one that passes says how many were held back.

    A Redis failover makes every write retry its invalidation for seconds, and every try
    that fails logs the same warning: tens of lines per write, hiding the one that says
    what happened. The metrics still count every failure; the console gets one line a
    message per interval.
    """

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._seen: dict[tuple[object, ...], tuple[float, int]] = {}  # passed at, held
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        raised = type(record.exc_info[1]).__name__ if record.exc_info else ""
        shown = [repr(a) for a in args if not isinstance(a, BaseException)]
        key = (record.name, record.levelno, str(record.msg), raised, *shown)
        now = self.clock()
        with self._lock:
            passed_at, held = self._seen.get(key, (-self.interval, 0))
            if now - passed_at < self.interval:
                self._seen[key] = (passed_at, held + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # forget the messages that stopped repeating
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval}
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it held back)"
            record.args = ()
        return True
