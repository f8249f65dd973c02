"""A per-process circuit breaker around Redis.

Closed: calls go through. After ``threshold`` consecutive failures it opens: calls are
skipped without touching the network. After ``cooldown`` seconds one call is let through
as a probe (half-open); success closes the breaker, failure opens it again.

``caching.connection`` keeps one per Redis node: on a Redis Cluster a dead master opens
the breaker of its own node only. When one opens, ``on_change`` lets the connection module
mark the node's shards for an epoch bump before they are read again (Redis was unreachable
long enough that an invalidation may have been lost meanwhile).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __init__(
        self,
        threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.on_change = on_change
        self.state = self.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Whether a Redis call may be made now (claims the probe when half-open)."""
        with self._lock:
            if self.state == self.CLOSED:
                return True
            if self.state == self.OPEN and self.clock() - self.opened_at >= self.cooldown:
                self.state = self.HALF_OPEN
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            was_open = self.state != self.CLOSED
            self.state = self.CLOSED
            self.failures = 0
        if was_open and self.on_change:
            self.on_change(False)

    def record_failure(self) -> None:
        with self._lock:
            self.failures += 1
            opened = self.state == self.HALF_OPEN or (
                self.state == self.CLOSED and self.failures >= self.threshold
            )
            if opened:
                newly_open = self.state == self.CLOSED
                self.state = self.OPEN
                self.opened_at = self.clock()
        if opened and newly_open and self.on_change:
            self.on_change(True)

    def reset(self) -> None:
        with self._lock:
            was_open = self.state != self.CLOSED
            self.state = self.CLOSED
            self.failures = 0
        if was_open and self.on_change:
            self.on_change(False)
