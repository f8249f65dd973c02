"""Redis access for the caching layer: Lua scripts, tight timeouts, the circuit breaker.

Every call goes through ``guarded``: it is skipped while the breaker is open, its failure
is logged, counted and turned into ``CacheUnavailable`` (callers fall back to the database),
and it first bumps the global epoch when an earlier invalidation may have been lost.
The client comes from django-redis with the socket timeouts and zero-retry policy of
``settings.CACHES``, so no call blocks a request for longer than tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django_redis import get_redis_connection
from redis import Connection, ConnectionPool, Redis
from redis.exceptions import NoScriptError, RedisError

from caching import keys
from caching.breaker import CircuitBreaker
from caching.metrics import BREAKER_OPEN, ERRORS

logger = logging.getLogger("chainlearn.cache")

T = TypeVar("T")

# Reads the epoch and both generations, then the entry under that stamp; on a miss or an
# expired entry it tries to take the fill lease. One round trip for every outcome.
# KEYS: epoch, namespace gen, scope gen, stats hash. ARGV: entry head, params, now ms,
# lease ms, lease token, count (1 to record the outcome in the stats hash).
LOOKUP = """
local epoch = redis.call('GET', KEYS[1]) or '0'
local g1 = redis.call('GET', KEYS[2]) or '0'
local g2 = redis.call('GET', KEYS[3]) or '0'
local stamp = 'e' .. epoch .. '.' .. g1 .. '.' .. g2
local key = ARGV[1] .. stamp .. ':' .. ARGV[2]
local value = redis.call('GET', key)
local state
if value then
  local nl = string.find(value, '\\n', 1, true)
  if tonumber(string.sub(value, 1, nl - 1)) > tonumber(ARGV[3]) then
    state = 'hit'
  elseif redis.call('SET', key .. ':lease', ARGV[5], 'NX', 'PX', ARGV[4]) then
    state = 'refresh'
  else
    state = 'stale'
  end
elseif redis.call('SET', key .. ':lease', ARGV[5], 'NX', 'PX', ARGV[4]) then
  state = 'fill'
else
  state = 'wait'
end
if ARGV[6] == '1' then
  local field = ({hit='hits', stale='hits', refresh='misses', fill='misses'})[state]
  if field then redis.call('HINCRBY', KEYS[4], field, 1) end
  if state == 'stale' or state == 'refresh' then redis.call('HINCRBY', KEYS[4], 'stale', 1) end
end
return {state, key, stamp, value or false}
"""

# Stores a filled entry only if the epoch and generations still match the stamp the reader
# saw before loading: a write that committed meanwhile has bumped one of them, so the
# reader's (possibly old) value is dropped instead of stored. Releases the reader's lease.
# KEYS: epoch, namespace gen, scope gen, entry, lease. ARGV: stamp, value, ttl ms, token.
STORE = """
local stamp = 'e' .. (redis.call('GET', KEYS[1]) or '0') .. '.' ..
  (redis.call('GET', KEYS[2]) or '0') .. '.' .. (redis.call('GET', KEYS[3]) or '0')
local stored = 0
if stamp == ARGV[1] then
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
  stored = 1
end
if redis.call('GET', KEYS[5]) == ARGV[4] then redis.call('DEL', KEYS[5]) end
return stored
"""

# A waiter's poll: the entry if the filler stored it, else the lease if the filler is gone.
# KEYS: entry, lease, stats hash. ARGV: lease ms, token.
POLL = """
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('HINCRBY', KEYS[3], 'hits', 1)
  redis.call('HINCRBY', KEYS[3], 'waits', 1)
  return {'hit', value}
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[1]) then
  redis.call('HINCRBY', KEYS[3], 'misses', 1)
  return {'fill', false}
end
return {'wait', false}
"""

# An authenticated hot read in one round trip: the bearer token's principal entry, then an
# entry under its current epoch and generations: one of the user the principal names
# (per-user reads: scope ARGV[9] empty), or of the fixed scope ARGV[9] (course list and
# detail, whose ``isEnrolled`` the caller adds). Both must be present; each is fresh
# ('hit') or expired within its grace, when this call tries its refresh lease
# ('refresh') or leaves it to the holder ('stale'), and counts them as LOOKUP does.
# Anything missing returns nil, unrecorded, and the caller takes the full path (LOOKUP for
# each, with fills and waits). A per-user entry's keys are built here from the principal's
# ``id``, so they are not declared in KEYS: fine on a standalone Redis, not on a cluster.
# KEYS: epoch, principal namespace gen, principal scope gen, principal stats, entry
# namespace gen, entry stats. ARGV: principal head, principal params, now ms, entry scope
# gen prefix, entry head prefix, entry params, lease ms, lease token, entry scope.
LOOKUP_AS = """
local now = tonumber(ARGV[3])
local function split(value)
  local nl = string.find(value, '\\n', 1, true)
  return tonumber(string.sub(value, 1, nl - 1)) > now, string.sub(value, nl + 1)
end
local function state(key, fresh, stats)
  if fresh then
    redis.call('HINCRBY', stats, 'hits', 1)
    return 'hit'
  end
  redis.call('HINCRBY', stats, 'stale', 1)
  if redis.call('SET', key .. ':lease', ARGV[8], 'NX', 'PX', ARGV[7]) then
    redis.call('HINCRBY', stats, 'misses', 1)
    return 'refresh'
  end
  redis.call('HINCRBY', stats, 'hits', 1)
  return 'stale'
end
local epoch = redis.call('GET', KEYS[1]) or '0'
local pstamp = 'e' .. epoch .. '.' .. (redis.call('GET', KEYS[2]) or '0') .. '.' ..
  (redis.call('GET', KEYS[3]) or '0')
local pkey = ARGV[1] .. pstamp .. ':' .. ARGV[2]
local principal = redis.call('GET', pkey)
if not principal then return false end
local pfresh, pjson = split(principal)
local user = cjson.decode(pjson)['id']
local scope = ARGV[9]
if scope == '' then scope = user end
local stamp = 'e' .. epoch .. '.' .. (redis.call('GET', KEYS[5]) or '0') .. '.' ..
  (redis.call('GET', ARGV[4] .. scope) or '0')
local key = ARGV[5] .. scope .. ':' .. stamp .. ':' .. ARGV[6]
local entry = redis.call('GET', key)
if not entry then return false end
local pstate = state(pkey, pfresh, KEYS[4])
return {state(key, (split(entry)), KEYS[6]), key, stamp, entry, user, pstate, pkey, pstamp}
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# INCR a fixed-window counter, starting its window on the first hit. One round trip.
# KEYS: counter. ARGV: window ms. Returns {count, ms left in the window}.
COUNT_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
"""


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


class Script:
    """A Lua script, run with ``EVALSHA`` (``EVAL`` once when Redis does not know it yet).

    Scripts are the hot path of every cached read, so they skip redis-py's per-command
    layers (connection-pool checkout with argument-deprecation checks, the retry wrapper,
    the observability recorder: 10-25 % of a cache hit's CPU in the benchmark's
    profiles) and run on a connection of the calling thread, made with the same
    options as django-redis's pool (timeouts, no retries). Any error closes that
    connection; the next call opens a new one.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        connection = _thread_connection(client)
        try:
            connection.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
            return connection.read_response()
        except NoScriptError:
            connection.send_command("EVAL", self.source, len(keys), *keys, *args)
            return connection.read_response()
        except BaseException:
            connection.disconnect()
            raise


class _ThreadConnection(threading.local):
    connection: Connection | None = None
    pool: ConnectionPool | None = None
    pid = 0


_mine = _ThreadConnection()
_opened: weakref.WeakSet[Connection] = weakref.WeakSet()
_client: Redis | None = None


def _thread_connection(client: Redis) -> Connection:
    pool = client.connection_pool
    if _mine.connection is None or _mine.pool is not pool or _mine.pid != os.getpid():
        _mine.connection = pool.connection_class(**pool.connection_kwargs)
        _mine.pool, _mine.pid = pool, os.getpid()
        _opened.add(_mine.connection)
    return _mine.connection


LOOKUP_SCRIPT = Script(LOOKUP)
LOOKUP_AS_SCRIPT = Script(LOOKUP_AS)
STORE_SCRIPT = Script(STORE)
POLL_SCRIPT = Script(POLL)
RELEASE_SCRIPT = Script(RELEASE)
COUNT_HIT_SCRIPT = Script(COUNT_HIT)


def redis_client() -> Redis:
    global _client
    if _client is None:
        _client = get_redis_connection("default")
    return _client


def reset_client() -> None:
    """Forget the client (and every thread's script connection): the next call builds them
    from the current ``CACHES`` settings."""
    global _client
    disconnect()
    _client = None


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
    because other processes may be reading from a Redis that is up.
    """
    if respect_breaker and not breaker.allow():
        raise CacheUnavailable("circuit open")
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
        raise CacheUnavailable(str(exc)) from exc
    breaker.record_success()
    return result


def new_lease_token() -> str:
    """Tells a lease's holder from others; unique, not secret, so drawn without the system
    call of ``secrets`` (every read passes one, and a GIL release per call costs under load;
    ``random`` reseeds itself in each forked worker)."""
    return f"{random.getrandbits(64):016x}"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Slot:
    """Where one entry lives: its generation keys and, after a lookup, its stamp and key."""

    namespace: str
    epoch_key: str
    namespace_gen_key: str
    scope_gen_key: str
    head: str
    fragment: str

    @property
    def stats_key(self) -> str:
        return keys.stats_key(self.namespace)


@dataclass(frozen=True)
class Lookup:
    state: str  # hit | stale | refresh | fill | wait
    key: str
    stamp: str
    raw: bytes | None
    token: str


def lookup(slot: Slot, *, lease_ms: int, count: bool = True) -> Lookup:
    token = new_lease_token()
    state, key, entry_stamp, raw = guarded(
        slot.namespace,
        "lookup",
        lambda c: LOOKUP_SCRIPT(
            c,
            [slot.epoch_key, slot.namespace_gen_key, slot.scope_gen_key, slot.stats_key],
            [slot.head, slot.fragment, now_ms(), lease_ms, token, 1 if count else 0],
        ),
    )
    return Lookup(
        state=_text(state), key=_text(key), stamp=_text(entry_stamp), raw=raw or None, token=token
    )


@dataclass(frozen=True)
class ScopedSlots:
    """Where a namespace's entries live, by scope; ``scope`` empty: the principal's user."""

    namespace: str
    namespace_gen_key: str
    scope_gen_prefix: str
    head_prefix: str
    fragment: str
    scope: str


def lookup_as(
    principal: Slot, entry: ScopedSlots, *, lease_ms: int
) -> tuple[Lookup, Lookup, str] | None:
    """(the principal's lookup, the entry's lookup, the user id) when both are present (see
    ``LOOKUP_AS``); else None."""
    token = new_lease_token()
    found = guarded(
        (principal.namespace, entry.namespace),
        "lookup",
        lambda c: LOOKUP_AS_SCRIPT(
            c,
            [
                principal.epoch_key,
                principal.namespace_gen_key,
                principal.scope_gen_key,
                principal.stats_key,
                entry.namespace_gen_key,
                keys.stats_key(entry.namespace),
            ],
            [
                principal.head,
                principal.fragment,
                now_ms(),
                entry.scope_gen_prefix,
                entry.head_prefix,
                entry.fragment,
                lease_ms,
                token,
                entry.scope,
            ],
        ),
    )
    if not found:
        return None
    state, key, entry_stamp, raw, user, principal_state, principal_key, principal_stamp = found
    return (
        Lookup(
            state=_text(principal_state),
            key=_text(principal_key),
            stamp=_text(principal_stamp),
            raw=b"",  # not needed by the caller: the entry is served, not the principal
            token=token,
        ),
        Lookup(state=_text(state), key=_text(key), stamp=_text(entry_stamp), raw=raw, token=token),
        _text(user),
    )


def store(slot: Slot, found: Lookup, value: bytes, ttl_ms: int) -> bool:
    stored = guarded(
        slot.namespace,
        "store",
        lambda c: STORE_SCRIPT(
            c,
            [
                slot.epoch_key,
                slot.namespace_gen_key,
                slot.scope_gen_key,
                found.key,
                keys.lease_key(found.key),
            ],
            [found.stamp, value, ttl_ms, found.token],
        ),
    )
    return bool(stored)


def poll(slot: Slot, found: Lookup, *, lease_ms: int) -> tuple[str, bytes | None]:
    state, raw = guarded(
        slot.namespace,
        "poll",
        lambda c: POLL_SCRIPT(
            c, [found.key, keys.lease_key(found.key), slot.stats_key], [lease_ms, found.token]
        ),
    )
    return _text(state), raw or None


def release(slot: Slot, found: Lookup) -> None:
    guarded(
        slot.namespace,
        "release",
        lambda c: RELEASE_SCRIPT(c, [keys.lease_key(found.key)], [found.token]),
    )


def record_miss(namespace: str) -> None:
    """Count a waiter that gave up and loaded from the database itself."""
    guarded(namespace, "stats", lambda c: c.hincrby(keys.stats_key(namespace), "misses", 1))


def bump_generations(namespaces: Sequence[str], gen_keys: Iterable[str]) -> None:
    """``INCR`` each generation key in one round trip (the O(1) invalidation)."""

    def run(client: Redis) -> None:
        pipe = client.pipeline(transaction=False)
        for key in gen_keys:
            pipe.incr(key)
        pipe.execute()

    guarded(namespaces, "invalidate", run, respect_breaker=False)


def redis_ping() -> bool:
    """Readiness probe: a bounded PING that bypasses (and does not trip) the breaker."""
    try:
        return bool(redis_client().ping())
    except (RedisError, OSError):
        return False


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def disconnect() -> None:
    """Drop this process's Redis connections (before a fork, so no child shares a socket)."""
    for connection in list(_opened):
        connection.disconnect()
    if _client is not None:
        _client.connection_pool.disconnect()


def count_hit(key: str, window_ms: int) -> tuple[int, int]:
    """Count one request in ``key``'s window; returns (requests so far, ms until reset)."""
    count, left = guarded(
        "ratelimit",
        "count",
        lambda c: COUNT_HIT_SCRIPT(c, [key], [window_ms]),
    )
    return int(count), int(left)


def bump_epoch() -> None:
    """Orphan every entry of every namespace at once (one ``INCR``)."""
    guarded("*", "invalidate", lambda c: c.incr(keys.epoch_key()), respect_breaker=False)
