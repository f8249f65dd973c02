"""Connections to Redis, and the guard every cache call runs under.

``guarded`` skips a call while the circuit breaker of its Redis node is open, turns a
failure into ``CacheUnavailable`` (logged and counted; callers fall back to the database),
and first bumps the epochs of the call's shards (``caching.keys``) when an earlier
invalidation of theirs may have been lost (with every other shard marked so on the same
node; a thread per process also bumps them as soon as Redis answers: ``_repair``).
``fan_out`` runs commands for many shards at once (a namespace-wide invalidation, the live
counts every shard keeps), pipelined per node, and reports the shards it could not reach.
The client comes from django-redis with the socket timeouts and zero-retry policy of
``settings.CACHES``, so no call blocks a request for longer than tens of milliseconds; on
a Redis Cluster it is a ``RedisCluster`` (``caching.topology``), which follows MOVED and
ASK redirections.

**One breaker per node.** On one Redis (standalone or Sentinel) that is one breaker,
``breaker``. On a cluster each master has its own, found through the client's slot map
from the call's shard: a dead master stops the reads of its shards only, and when its
breaker opens only its shards are marked for an epoch bump. Calls without a shard (rate
limits, the operator commands) use ``breaker``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeGuard, TypeVar

from django.conf import settings
from django_redis import get_redis_connection
from redis import Connection, ConnectionPool, Redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from caching import keys
from caching.breaker import CircuitBreaker
from caching.metrics import BREAKER_OPEN, ERRORS

logger = logging.getLogger("caching")

T = TypeVar("T")


class CacheUnavailable(Exception):
    """Redis could not be used for this call; the caller serves from the database."""


# Errors that mean Redis could not serve a call (a cluster without a master for a slot
# raises RedisClusterException, which is not a RedisError).
FAILURES = (RedisError, RedisClusterException, OSError)
# The cluster slot of each shard's tag.
_SLOTS = [key_slot(keys.tag(shard).encode()) for shard in keys.EVERY_SHARD]

# Shards whose epoch must be bumped before they are read again, each with a count of the
# times it was marked (a bump clears only the marks it saw).
_stale: dict[int, int] = {}
_stale_lock = threading.Lock()


def mark_stale(shards: Iterable[int]) -> None:
    """An invalidation of ``shards`` may have been lost: bump their epochs before their
    next read, and as soon as their node answers (``_repair``)."""
    with _stale_lock:
        for shard in shards:
            _stale[shard] = _stale.get(shard, 0) + 1
        marked = bool(_stale)
    if marked:
        _wake_repairer()


def bump_pending(shards: Iterable[int]) -> bool:
    """Whether an epoch bump is pending for any of ``shards`` (read without the lock, as
    every call's check in ``guarded`` is)."""
    return bool(_stale) and any(shard in _stale for shard in shards)


def stale_shards() -> set[int]:
    with _stale_lock:
        return set(_stale)


def _breaker(node: str) -> CircuitBreaker:
    def on_change(is_open: bool) -> None:
        if is_open:
            mark_stale(_shards_of(node))
        BREAKER_OPEN.set(1 if any(b.state != b.CLOSED for b in _breakers.values()) else 0)
        where = f" for {node}" if node else ""
        logger.warning("cache circuit breaker %s%s", "opened" if is_open else "closed", where)

    return CircuitBreaker(
        threshold=settings.CACHE_BREAKER_THRESHOLD,
        cooldown=settings.CACHE_BREAKER_COOLDOWN,
        on_change=on_change,
    )


# The breaker of the one Redis, and of calls without a shard on a cluster.
breaker = _breaker("")
_breakers: dict[str, CircuitBreaker] = {"": breaker}
_breakers_lock = threading.Lock()


def _node_of(shard: int) -> str:
    """The cluster node serving ``shard`` per the client's slot map ('' on one Redis)."""
    client = _client
    if not is_cluster(client):
        return ""
    try:
        return str(client.nodes_manager.get_node_from_slot(_SLOTS[shard]).name)
    except (RedisClusterException, RedisError):
        return ""


def _shards_of(node: str) -> list[int]:
    if not node:
        return list(keys.EVERY_SHARD)
    return [shard for shard in keys.EVERY_SHARD if _node_of(shard) == node]


def breakers_for(shards: Collection[int] | None) -> list[CircuitBreaker]:
    """The breakers of the nodes serving ``shards`` (``breaker`` for None)."""
    if shards is None or not is_cluster(_client):
        return [breaker]
    nodes = {_node_of(shard) for shard in shards}
    if not nodes <= _breakers.keys():  # a node not seen before (read without the lock)
        with _breakers_lock:
            for node in nodes - _breakers.keys():
                _breakers[node] = _breaker(node)
    return [_breakers[node] for node in sorted(nodes)]


def reset_breakers() -> None:
    """Close every breaker and forget the stale marks (tests): a bump under way lands
    first, and none starts afterwards."""
    for one in list(_breakers.values()):
        one.reset()
    with _bumping, _stale_lock:
        _stale.clear()


class _ThreadConnections(threading.local):
    def __init__(self) -> None:
        self.by_pool: dict[int, tuple[ConnectionPool, Connection]] = {}
        self.pid = 0


_mine = _ThreadConnections()
_opened: weakref.WeakSet[Connection] = weakref.WeakSet()
_client: Redis | None = None


def redis_client() -> Redis:
    global _client
    if _client is None:
        _client = get_redis_connection("default")
    return _client


def is_cluster(client: object) -> TypeGuard[RedisCluster]:
    return isinstance(client, RedisCluster)


def thread_connection(client: Redis, key: str) -> Connection:
    """This thread's own connection to the server of ``key`` (on a cluster, the master of
    its slot in the client's slot map), made with the options of that server's pool
    (timeouts, no retries): scripts run on it without a pool checkout per call."""
    if is_cluster(client):
        node = client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
        pool = client.get_redis_connection(node).connection_pool
    else:
        pool = client.connection_pool
    if _mine.pid != os.getpid():
        _mine.by_pool, _mine.pid = {}, os.getpid()
    held = _mine.by_pool.get(id(pool))
    if held is None or held[0] is not pool:
        held = _mine.by_pool[id(pool)] = (pool, pool.connection_class(**pool.connection_kwargs))
        _opened.add(held[1])
    return held[1]


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
    if is_cluster(_client):
        _client.disconnect_connection_pools()
    elif _client is not None:
        _client.connection_pool.disconnect()


def guarded(
    namespace: str | Sequence[str],
    operation: str,
    call: Callable[[Redis], T],
    *,
    shards: Collection[int] | None = None,
    respect_breaker: bool = True,
) -> T:
    """Run ``call`` against Redis under the breakers of ``shards``' nodes (see the module);
    raise ``CacheUnavailable`` on failure.

    ``namespace`` (or several) labels the error counter. Invalidations pass
    ``respect_breaker=False``: they are tried even while this process's breaker is open,
    because other processes may be reading from a Redis that is up, and a failed one is
    tried once more at once, on a new connection: after a failover the first call on an
    old connection fails, while other processes may already read from the new master.
    Reads are tried once (no retries on the request path). Before a call, the stale
    shards among ``shards`` get their epochs bumped (``mark_stale``).
    """
    gates = breakers_for(shards)
    if respect_breaker and not all(gate.allow() for gate in gates):
        raise CacheUnavailable("circuit open")
    retries = 0 if respect_breaker else 1
    while True:
        try:
            client = redis_client()
            if shards:
                _bump_stale(client, shards)
            result = call(client)
        except FAILURES as exc:
            for gate in gates:
                gate.record_failure()
            for label in [namespace] if isinstance(namespace, str) else namespace:
                ERRORS.labels(label, operation).inc()
            logger.warning("cache %s failed for %s: %s", operation, namespace, exc)
            if not retries:
                raise CacheUnavailable(str(exc)) from exc
            retries -= 1
            continue
        for gate in gates:
            gate.record_success()
        return result


def _bump_stale(client: Redis, shards: Collection[int]) -> None:
    """Bump the epochs of the marked shards served by the node(s) of ``shards``: one
    pipeline, to a node the call is about to reach anyway.

    A request and the repairer may both bump a shard marked once: a second bump costs its
    entries one more miss, never a stale read, and a request never waits for the other."""
    if not _stale:  # nothing marked (read without the lock: every call asks)
        return
    seen = _marked_on_nodes_of(shards)
    if not seen:
        return
    pipe = client.pipeline(transaction=False)
    for shard in sorted(seen):
        pipe.incr(keys.epoch_key(shard))
    pipe.execute()
    with _stale_lock:
        for shard, marks in seen.items():
            if _stale.get(shard) == marks:
                del _stale[shard]
    logger.warning("cache epoch bumped for shards %s after a lost invalidation", sorted(seen))


def _marked_on_nodes_of(shards: Collection[int]) -> dict[int, int]:
    """The marked shards (with their marks) that sit on the node(s) serving ``shards``."""
    with _stale_lock:
        marked = dict(_stale)
    nodes = {_node_of(shard) for shard in shards}
    return {shard: marks for shard, marks in marked.items() if _node_of(shard) in nodes}


def _by_node(shards: Iterable[int]) -> dict[str, list[int]]:
    by_node: dict[str, list[int]] = {}
    for shard in shards:
        by_node.setdefault(_node_of(shard), []).append(shard)
    return by_node


# Held by the repairer while it bumps, and by ``reset_breakers`` (tests) while it forgets
# the marks, so that no bump of a test's marks lands after the next test's flush.
_bumping = threading.Lock()
_repair_wanted = threading.Event()
_repairer_pid = 0
_repairer_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A fork copies the locks as they were (one may be held by a thread the child does not
    have): the child starts with its own."""
    global _bumping, _repair_wanted, _repairer_lock, _stale_lock
    _bumping, _repairer_lock, _stale_lock = threading.Lock(), threading.Lock(), threading.Lock()
    _repair_wanted = threading.Event()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _wake_repairer() -> None:
    """Start this process's repairer thread (anew after a fork), or wake it."""
    global _repairer_pid
    if settings.CACHE_EPOCH_REPAIR_MS <= 0:
        return
    _repair_wanted.set()
    if _repairer_pid == os.getpid():
        return
    with _repairer_lock:
        if _repairer_pid != os.getpid():
            _repairer_pid = os.getpid()
            threading.Thread(target=_repair, name="cache-epoch-repair", daemon=True).start()


def _repair() -> None:
    """Bump the marked shards' epochs as soon as their node answers, without waiting for a
    read of them. A lost invalidation is marked only in the process that lost it; other
    processes, which may reach Redis and hold no mark, read what it was to remove until
    the bump lands.

    Each node is tried every ``CACHE_EPOCH_REPAIR_MS`` under its breaker, as a request
    would be: a failure counts towards opening it, and while it is open the node is tried
    only as its probe, once per cooldown (a dead cluster master is not asked ten times a
    second, each failure making redis-py reload the slot map)."""
    while True:
        _repair_wanted.wait()
        _repair_wanted.clear()  # a mark made from here on wakes the next wait
        while (interval := settings.CACHE_EPOCH_REPAIR_MS / 1000) > 0 and (
            pending := stale_shards()
        ):
            for shards in _by_node(pending).values():
                _repair_node(shards)
            if stale_shards():
                time.sleep(interval)


def _repair_node(shards: list[int]) -> None:
    """One try at a node's marked shards, made as a request's call is: ``guarded`` bumps
    them first, under the node's breaker, and reads one of their epochs to know the node
    answered."""
    try:
        with _bumping:
            guarded("*", "repair", lambda c: c.get(keys.epoch_key(shards[0])), shards=shards)
    except CacheUnavailable:
        pass  # the breaker is open, or the node did not answer: tried again later
    except Exception:
        logger.exception("cache epoch repair failed")


Commands = Mapping[int, Sequence[Sequence[Any]]]


def fan_out(
    namespace: str | Sequence[str], operation: str, commands: Commands, *, patience: float = 0.0
) -> tuple[dict[int, list[Any]], set[int]]:
    """Run each shard's ``commands`` in one pipeline per node (see ``_fan_out_once``); the
    shards that failed are tried again, backing off, for up to ``patience`` seconds. An
    invalidation waits so while a master fails over: until its replica is promoted, a
    bump cannot land anywhere, and one that gave up at once would leave the entries it
    invalidates to be served by the promoted replica's readers."""
    if not commands:  # nothing to send (a count refresh that reached no shard's epoch)
        return {}, set()  # is not a success to tell the breakers about
    replies, failed = _fan_out_once(namespace, operation, commands)
    deadline = time.monotonic() + patience
    delay = 0.01
    while failed and time.monotonic() + delay < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
        more, failed = _fan_out_once(namespace, operation, {s: commands[s] for s in failed})
        replies |= more
    return replies, failed


def _fan_out_once(
    namespace: str | Sequence[str], operation: str, commands: Commands
) -> tuple[dict[int, list[Any]], set[int]]:
    """Run each shard's ``commands`` in one pipeline (one round trip per node on a
    cluster), ignoring the breakers; returns the replies per shard that answered, and the
    shards that did not. Only when the whole pipeline fails (a node is down) are the
    shards tried again node by node, to tell the ones reached from the others."""

    def run(client: Redis, part: Commands) -> dict[int, list[Any]]:
        pipe = client.pipeline(transaction=False)
        for shard_commands in part.values():
            for command in shard_commands:
                pipe.execute_command(*command)
        replies = iter(pipe.execute())
        return {shard: [next(replies) for _ in cmds] for shard, cmds in part.items()}

    try:
        replies = guarded(
            namespace, operation, lambda c: run(c, commands), shards=(), respect_breaker=False
        )
        return replies, set()
    except CacheUnavailable:
        pass
    by_node = _by_node(commands)
    if len(by_node) == 1:
        return {}, set(commands)
    done: dict[int, list[Any]] = {}
    failed: set[int] = set()
    for shards in by_node.values():
        part = {shard: commands[shard] for shard in shards}
        try:
            done |= guarded(
                namespace,
                operation,
                lambda c, part=part: run(c, part),  # type: ignore[misc]
                shards=shards,
                respect_breaker=False,
            )
        except CacheUnavailable:
            failed |= set(shards)
    return done, failed


def redis_ping() -> bool:
    """Readiness probe: a bounded PING that bypasses (and does not trip) the breaker."""
    try:
        client = redis_client()
        if is_cluster(client):
            answers = client.ping(target_nodes=RedisCluster.PRIMARIES)
            return all(answers.values()) if isinstance(answers, dict) else bool(answers)
        return bool(client.ping())
    except FAILURES:
        return False
