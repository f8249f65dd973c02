"""Stale-while-revalidate reloads, run after the response instead of in it.

The request that wins an expired entry's refresh lease answers with the stale value at once
like every other reader, and hands the reload to a small per-process thread pool
(``CACHE_REFRESH_THREADS``). No request waits on the database for an entry it could serve:
before this, every expiry of a hot entry put one database load into some request's
latency, which set the p99 of short-TTL reads such as progress.

The reload is the ordinary fill (load, then store under the stamp read before loading), so
a write that commits meanwhile still wins. When more than ``CACHE_REFRESH_QUEUE`` reloads
are waiting, the request reloads inline as before, so a burst of expiries cannot grow an
unbounded backlog of stale work.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger("caching")

Reload = Callable[[], object]


class _Reloader:
    """A fixed set of daemon threads draining a bounded queue of reloads."""

    def __init__(self, threads: int, capacity: int) -> None:
        self.pid = os.getpid()
        self.tasks: queue.Queue[Reload | None] = queue.Queue(maxsize=capacity)
        self.threads = [
            threading.Thread(target=self._work, name=f"cache-refresh-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self.threads:
            thread.start()

    def _work(self) -> None:
        while True:
            task = self.tasks.get()
            try:
                if task is None:
                    connections.close_all()
                    return
                # Like a request: drop a connection that broke or aged out, before and after.
                close_old_connections()
                try:
                    task()
                except Exception:
                    logger.exception("background cache refresh failed")
                finally:
                    close_old_connections()
            finally:
                self.tasks.task_done()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.tasks.all_tasks_done:
            while self.tasks.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.tasks.all_tasks_done.wait(left)
        return True

    def stop(self, timeout: float) -> None:
        for _thread in self.threads:
            self.tasks.put(None, timeout=timeout)
        for thread in self.threads:
            thread.join(timeout)


_lock = threading.Lock()
_reloader: _Reloader | None = None


def submit(reload: Reload) -> bool:
    """Queue ``reload``; False (nothing queued) when the queue is full or disabled."""
    global _reloader
    if settings.CACHE_REFRESH_QUEUE <= 0 or settings.CACHE_REFRESH_THREADS <= 0:
        return False
    with _lock:
        if _reloader is None or _reloader.pid != os.getpid():  # first use, or a forked child
            _reloader = _Reloader(settings.CACHE_REFRESH_THREADS, settings.CACHE_REFRESH_QUEUE)
        reloader = _reloader
    try:
        reloader.tasks.put_nowait(reload)
    except queue.Full:
        return False
    return True


def drain(timeout: float = 10.0) -> bool:
    """Wait for the reloads queued so far; True if they all finished (tests, shutdown)."""
    reloader = _reloader
    return reloader is None or reloader.pid != os.getpid() or reloader.wait(timeout)


def stop(timeout: float = 10.0) -> None:
    """Finish queued reloads, then end the threads, closing their database connections."""
    global _reloader
    with _lock:
        reloader, _reloader = _reloader, None
    if reloader is not None and reloader.pid == os.getpid():
        reloader.stop(timeout)
