"""Connections to Redis, and the guard every cache call runs under.

``guarded`` skips a call while the circuit breaker is open, turns a failure into
``CacheUnavailable`` (logged and counted; callers fall back to the database), and first
bumps the global epoch when an earlier invalidation may have been lost. The client comes
from django-redis with the socket timeouts and zero-retry policy of ``settings.CACHES``, so
no call blocks a request for longer than tens of milliseconds.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TypeVar

from django.conf import settings
from django_redis import get_redis_connection
from redis import Connection, ConnectionPool, Redis
from redis.exceptions import RedisError

from caching import keys
from caching.breaker import CircuitBreaker
from caching.metrics import BREAKER_OPEN, ERRORS

logger = logging.getLogger("caching")

T = TypeVar("T")


class CacheUnavailable(Exception):
    """Redis could not be used for this call; the caller serves from the database."""


def _on_breaker_change(is_open: bool) -> None:
    BREAKER_OPEN.set(1 if is_open else 0)
    logger.warning("cache circuit breaker %s", "opened" if is_open else "closed")


breaker = CircuitBreaker(
    threshold=settings.CACHE_BREAKER_THRESHOLD,
    cooldown=settings.CACHE_BREAKER_COOLDOWN,
    on_change=_on_breaker_change,
)


class _ThreadConnection(threading.local):
    connection: Connection | None = None
    pool: ConnectionPool | None = None
    pid = 0


_mine = _ThreadConnection()
_opened: weakref.WeakSet[Connection] = weakref.WeakSet()
_client: Redis | None = None


def redis_client() -> Redis:
    global _client
    if _client is None:
        _client = get_redis_connection("default")
    return _client


def thread_connection(client: Redis) -> Connection:
    """This thread's own connection, made with the options of ``client``'s pool (timeouts,
    no retries): scripts run on it without a pool checkout per call."""
    pool = client.connection_pool
    if _mine.connection is None or _mine.pool is not pool or _mine.pid != os.getpid():
        _mine.connection = pool.connection_class(**pool.connection_kwargs)
        _mine.pool, _mine.pid = pool, os.getpid()
        _opened.add(_mine.connection)
    return _mine.connection


def reset_client() -> None:
    """Forget the client (and every thread's connection): the next call builds them from
    the current ``CACHES`` settings."""
    global _client
    disconnect()
    _client = None


def disconnect() -> None:
    """Drop this process's Redis connections (before a fork, so no child shares a socket),
    its invalidation stream among them."""
    from caching import local  # local -> connection

    local.stop()
    for connection in list(_opened):
        connection.disconnect()
    if _client is not None:
        _client.connection_pool.disconnect()


def guarded(
    namespace: str | Sequence[str],
    operation: str,
    call: Callable[[Redis], T],
    *,
    respect_breaker: bool = True,
) -> T:
    """Run ``call`` against Redis under the breaker; raise ``CacheUnavailable`` on failure.

    ``namespace`` (or several) labels the error counter. Invalidations pass
    ``respect_breaker=False``: they are tried even while this process's breaker is open,
    because other processes may be reading from a Redis that is up, and a failed one is
    tried once more at once, on a new connection: after a failover the first call on an
    old connection fails, while other processes may already read from the new master.
    Reads are tried once (no retries on the request path).
    """
    if respect_breaker and not breaker.allow():
        raise CacheUnavailable("circuit open")
    retries = 0 if respect_breaker else 1
    while True:
        try:
            client = redis_client()
            if breaker.needs_epoch_bump:
                client.incr(keys.epoch_key())
                breaker.needs_epoch_bump = False
                logger.warning("cache epoch bumped after an unreachable period")
            result = call(client)
        except (RedisError, OSError) as exc:
            breaker.record_failure()
            for label in [namespace] if isinstance(namespace, str) else namespace:
                ERRORS.labels(label, operation).inc()
            logger.warning("cache %s failed for %s: %s", operation, namespace, exc)
            if not retries:
                raise CacheUnavailable(str(exc)) from exc
            retries -= 1
            continue
        breaker.record_success()
        return result


def redis_ping() -> bool:
    """Readiness probe: a bounded PING that bypasses (and does not trip) the breaker."""
    try:
        return bool(redis_client().ping())
    except (RedisError, OSError):
        return False
