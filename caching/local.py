"""The in-process tier (L1): entries this process read from Redis, kept while Redis says
nothing they depend on has changed.

An entry is held with the keys its validity rests on (the epoch, its namespace's and its
scope's generations, its live counts hash: ``Slot.validity_keys``) and dropped as soon as
an invalidation stream (``caching.tracking``) reports a change to any of them. The tier
is a bounded LRU.

**When a held entry may be served** (``serve``): only when every entry the read needs is
held and still fresh (the same expiry as in Redis; an expired one goes to Redis, which
applies the stale-grace rules), the breaker is closed, no epoch bump is pending for their
shards, and this thread's stream has answered a ping sent after the request arrived
(``Streams.sync``). Redis runs commands one at a time and queues a changed key's
invalidation on every tracking connection in the same turn of its event loop, before it
reads a command that arrives later; so the ping's reply comes after the invalidation of
every change Redis applied before the ping, and so after that of every write whose request
had returned before this request arrived (its generation bump or count was applied before
it returned). Those invalidations were applied before the reply was read: the held value
is the one Redis would serve now.

A write whose invalidation could not reach Redis returns without it having been applied:
it may never change anything in Redis (a count refresh that could not read the epochs
writes nothing), so no stream reports it. Its shards are marked instead
(``connection.mark_stale``; an opening breaker marks every shard of its node), and while
a mark is pending the read goes to Redis, which bumps the shard's epoch first; the bump is
reported on every stream and drops what the tier held there.

**When an entry may be kept** (``keep``): only a fresh hit under the current stamp, with
all its counts, and only if since the lookup began (``mark``) no stream has (re)connected
and none has reported a change to one of the entry's keys. A change Redis applied after
the lookup is reported either before the keep (refused) or after it, on every stream, so
each thread drops the entry before it could serve it. Opening a stream or a flush
empties the tier.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from redis import ConnectionPool

from caching import connection, keys, topology
from caching.metrics import L1_EVICTIONS, L1_READS
from caching.tracking import Streams

if TYPE_CHECKING:
    from caching.entries import Frame, Slot


@dataclass(frozen=True)
class Held:
    """One held entry: what its Redis lookup returned, the namespace it counts under, and
    the keys whose change drops it."""

    namespace: str
    frame: Frame
    counts: list[bytes | None] | None
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class Mark:
    """Where the stream stood when a lookup began: its connection and its position."""

    connection: int
    position: int


class LocalTier:
    """A bounded LRU of held entries, indexed by the keys they depend on.

    ``recent`` invalidations (key -> position) are remembered for the last ``window``
    reported keys, so a keep can check that none of its keys changed since its mark; a
    mark older than the window cannot be checked and its keep is refused.
    """

    def __init__(self, capacity: int, window: int = 4096) -> None:
        self.capacity = capacity
        self.connection = 0  # bumped by ``reset``: marks taken before it are void
        self.position = 0  # invalidation messages applied
        self._entries: OrderedDict[str, Held] = OrderedDict()
        self._dependents: dict[str, set[str]] = {}
        self._recent: dict[str, int] = {}
        self._window: deque[tuple[int, str]] = deque()
        self._window_size = window
        self._forgotten = 0  # the newest position no longer in the window
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def mark(self) -> Mark:
        return Mark(self.connection, self.position)

    def get(self, key: str) -> Held | None:
        with self._lock:
            held = self._entries.get(key)
            if held is not None:
                self._entries.move_to_end(key)
            return held

    def put(self, key: str, held: Held, since: Mark) -> bool:
        """Hold ``held`` under ``key`` unless the stream reconnected or reported a change to
        one of its keys after ``since``; evict the least recently used beyond capacity."""
        with self._lock:
            if since.connection != self.connection or self._changed_since(held, since):
                return False
            self._remove(key)
            self._entries[key] = held
            for dependency in held.depends_on:
                self._dependents.setdefault(dependency, set()).add(key)
            while len(self._entries) > self.capacity:
                evicted = next(iter(self._entries))
                L1_EVICTIONS.labels(self._entries[evicted].namespace).inc()
                self._remove(evicted)
            return True

    def invalidate(self, changed: Iterable[str]) -> None:
        """Apply one invalidation message: drop every entry depending on a changed key."""
        with self._lock:
            self.position += 1
            for key in changed:
                for dependent in self._dependents.get(key, ()):
                    self._entries.pop(dependent, None)
                self._dependents.pop(key, None)
                self._remember(key)

    def reset(self) -> None:
        """Forget everything (the stream (re)connected, or reported a flush)."""
        with self._lock:
            self.connection += 1
            self._entries.clear()
            self._dependents.clear()
            self._recent.clear()
            self._window.clear()

    def _changed_since(self, held: Held, since: Mark) -> bool:
        if since.position < self._forgotten:
            return True  # changes after the mark fell out of the window: cannot tell
        return any(self._recent.get(key, 0) > since.position for key in held.depends_on)

    def _remember(self, key: str) -> None:
        self._recent[key] = self.position
        self._window.append((self.position, key))
        if len(self._window) > self._window_size:
            position, old = self._window.popleft()
            self._forgotten = position
            if self._recent.get(old) == position:
                del self._recent[old]

    def _remove(self, key: str) -> None:
        held = self._entries.pop(key, None)
        if held is None:
            return
        for dependency in held.depends_on:
            dependents = self._dependents.get(dependency)
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._dependents[dependency]


def all_held(tier: LocalTier, entry_keys: Sequence[str]) -> list[Held] | None:
    """The held entries for ``entry_keys``, or None unless every one is held."""
    found = []
    for key in entry_keys:
        held = tier.get(key)
        if held is None:
            return None
        found.append(held)
    return found


@dataclass
class _Process:
    pid: int
    pool: object  # the Redis client's pool it was started for
    tier: LocalTier
    streams: Streams


_process: _Process | None = None
_starting = threading.Lock()


def _current() -> _Process | None:
    """This process's tier and stream, started on first use, and anew after a fork or a
    change of the Redis settings (``connection.reset_client``)."""
    global _process
    if not settings.CACHE_L1:
        return None
    process, pool = _process, connection.redis_client().connection_pool
    if process is not None and process.pid == os.getpid() and process.pool is pool:
        return process
    with _starting:
        if _process is None or _process.pid != os.getpid() or _process.pool is not pool:
            if _process is not None and _process.pid == os.getpid():
                _process.streams.stop()
            _process = _start(pool)
        return _process


def _start(pool: ConnectionPool) -> _Process:
    from caching.registry import registry  # registry -> manager -> entries -> this module

    prefixes = [keys.epoch_prefix(), keys.counter_prefix()]
    prefixes += [keys.generation_prefix(m.namespace) for m in registry.all() if m.local]
    tier = LocalTier(settings.CACHE_L1_ENTRIES)
    streams = Streams(
        topology.address(pool), prefixes, tier, timeout=settings.CACHE_L1_SYNC_MS / 1000
    )
    return _Process(os.getpid(), pool, tier, streams)


def stop() -> None:
    """Stop this process's stream and drop its tier (before a fork); the next read starts
    them anew."""
    global _process
    with _starting:
        process, _process = _process, None
    if process is not None and process.pid == os.getpid():
        process.streams.stop()


def mark() -> Mark | None:
    """Where the tier stands before a lookup (None with the tier off)."""
    process = _current()
    return None if process is None else process.tier.mark()


def serve(slots: Sequence[Slot]) -> list[Held] | None:
    """The held entries of ``slots`` if they may be served now (see the module), else None
    (the read goes to Redis). Counts each entry's L1 outcome."""
    process = _current()
    if (
        process is None
        or connection.breaker.state != connection.breaker.CLOSED
        or connection.bump_pending(slot.shard for slot in slots)
    ):
        return None
    namespaces = [slot.namespace for slot in slots]
    entry_keys = [slot.key for slot in slots]
    held = _fresh(process.tier, entry_keys)
    if held is None:
        _count(namespaces, "miss")
        return None
    if not process.streams.sync():
        _count(namespaces, "unsynced")
        return None
    held = _fresh(process.tier, entry_keys)  # the sync may have dropped them
    _count(namespaces, "miss" if held is None else "hit")
    return held


def keep(key: str, held: Held, since: Mark) -> None:
    process = _current()
    if process is not None:
        process.tier.put(key, held, since)


def _fresh(tier: LocalTier, entry_keys: Sequence[str]) -> list[Held] | None:
    held = all_held(tier, entry_keys)
    if held is None:
        return None
    now = int(time.time() * 1000)
    return held if all(h.frame.fresh_until_ms > now for h in held) else None


_counters: dict[tuple[str, str], Any] = {}


def _count(namespaces: Sequence[str], outcome: str) -> None:
    for namespace in namespaces:
        counter = _counters.get((namespace, outcome))
        if counter is None:
            counter = _counters[(namespace, outcome)] = L1_READS.labels(namespace, outcome)
        counter.inc()
