"""Which Redis the cache runs on, and what a connection to it checks first.

``CACHE_REDIS_MODE`` (``chainlearn/settings.py``) is ``standalone`` (one server at
``REDIS_URL``) or ``sentinel`` (the master that the Sentinels at ``CACHE_REDIS_SENTINELS``
name ``CACHE_REDIS_SERVICE``). In both, everything the cache does (entries, leases,
generations, the epoch, live counts, rate limits, warming, the commands, the in-process
tier's invalidation streams) goes to that one master; no read is ever sent to a replica.

**A promoted replica serves nothing its old master had invalidated.** Replication is
asynchronous: a master killed just after it acknowledged a generation bump may leave the
replica that Sentinel promotes without that bump, and the replica still holds the entries
the bump had invalidated. So in Sentinel mode every new connection to a master, before its
first command, runs ``scripts.CLAIM``: the master's run id is compared with the one
stored under ``keys.master_key()``. The first connection to a master stores it; a
promoted replica holds its old master's, replicated, or none. If they differ, the script
bumps the epoch and stores the new id, atomically, so every entry written before the
change of master is a miss. A failover thus costs one epoch (the whole cache: under
Sentinel there is one master), bumped by whichever connection reaches the new master
first, and every process reaches it only through a new connection (Sentinel kills the
clients of an old master it reconfigures). A restarted master gets a new run id too, so
writes a restart lost are covered the same way.

What this does not cover: a network partition in which the old master stays reachable
by app servers but not by the Sentinels, so that two masters take writes at once. Redis
itself loses writes then; ``min-replicas-to-write`` on the master bounds that window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from django_redis.pool import SentinelConnectionFactory
from redis import ConnectionPool
from redis.sentinel import SentinelManagedConnection

logger = logging.getLogger("caching")

STANDALONE = "standalone"
SENTINEL = "sentinel"
MODES = (STANDALONE, SENTINEL)

# The django-redis options only Sentinel mode sets (``caches``).
SENTINEL_OPTIONS = ("CONNECTION_FACTORY", "SENTINELS", "SENTINEL_KWARGS", "PASSWORD")


def claim(run: Callable[..., Any]) -> bool:
    """Run ``scripts.CLAIM`` through ``run`` (a command runner on one connection), one round
    trip; True if it bumped the epoch."""
    # Both read the settings that chainlearn.settings, which imports this module, builds.
    from caching import keys
    from caching.scripts import CLAIM

    bumped = run("EVAL", CLAIM, 2, keys.master_key(), keys.epoch_key())
    if bumped:
        logger.warning("cache epoch bumped: connected to a new master (run id %s)", bumped)
    return bool(bumped)


class ClaimingConnection(SentinelManagedConnection):
    """A connection to the master Sentinel names that claims it before its first command."""

    def on_connect_check_health(self, check_health: bool = True) -> None:
        super().on_connect_check_health(check_health)
        claim(self._run)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        # redis-py connects an unconnected connection here without asking Sentinel (to the
        # service name as a host); the pool connects first, a thread's own connection not.
        if not self._sock:
            self.connect()
        super().send_packed_command(command, check_health)

    def _run(self, *command: Any) -> Any:
        self.send_command(*command)
        return self.read_response()


class SentinelFactory(SentinelConnectionFactory):
    """django-redis's Sentinel factory, with connections that claim the master."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(dict(options))  # a copy: the settings' options stay as they are
        shared = dict(options.get("CONNECTION_POOL_KWARGS") or {})
        self.pool_cls_kwargs = {**shared, "connection_class": ClaimingConnection}
        self._sentinels = ",".join(f"{host}:{port}" for host, port in options["SENTINELS"])

    def get_or_create_connection_pool(self, params: dict[str, Any]) -> Any:
        # django-redis keeps pools process-wide by URL, which names only the service: the
        # same name behind other Sentinels is another master.
        key = f"{params['url']}@{self._sentinels}"
        if key not in self._pools:
            self._pools[key] = self.get_connection_pool(params)
        return self._pools[key]


def address(pool: ConnectionPool) -> Callable[[], Mapping[str, Any]]:
    """How to reach the current master of ``pool`` with its connection options (for
    connections made outside it: the invalidation streams). Sentinel is asked anew on
    every call."""
    options = dict(pool.connection_kwargs)
    proxy = options.pop("connection_pool", None)
    if proxy is None:
        return lambda: options

    def current() -> Mapping[str, Any]:
        host, port = proxy.get_master_address()
        return {**options, "host": host, "port": port}

    return current


def caches(mode: str, options: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``CACHES['default']`` for ``mode``: ``options`` are the django-redis options every
    mode shares (timeouts, retries, serializer); ``env`` holds the mode's own settings."""
    if mode == STANDALONE:
        return {"LOCATION": env["REDIS_URL"], "OPTIONS": options}
    if mode != SENTINEL:
        raise ValueError(f"CACHE_REDIS_MODE must be one of {', '.join(MODES)}, not {mode!r}")
    listed, service = env.get("CACHE_REDIS_SENTINELS", ""), env.get("CACHE_REDIS_SERVICE", "")
    if not listed.strip() or not service:
        raise ValueError("sentinel mode needs CACHE_REDIS_SENTINELS and CACHE_REDIS_SERVICE")
    sentinels = [_host_port(item) for item in listed.split(",")]
    timeouts = {
        "socket_timeout": options["SOCKET_TIMEOUT"],
        "socket_connect_timeout": options["SOCKET_CONNECT_TIMEOUT"],
    }
    sentinel_password = env.get("CACHE_REDIS_SENTINEL_PASSWORD")
    return {
        "LOCATION": f"redis://{service}/{env.get('CACHE_REDIS_DB') or 0}",
        "OPTIONS": {
            **options,
            "CONNECTION_FACTORY": "caching.topology.SentinelFactory",
            "SENTINELS": sentinels,
            "SENTINEL_KWARGS": {**timeouts, "password": sentinel_password or None},
            "PASSWORD": env.get("CACHE_REDIS_PASSWORD") or None,
        },
    }


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"CACHE_REDIS_SENTINELS: {item!r} is not host:port")
    return host, int(port)
