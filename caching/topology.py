"""Which Redis the cache runs on, and what a connection to it checks first.

``CACHE_REDIS_MODE`` (``chainlearn/settings.py``) is ``standalone`` (one server at
``REDIS_URL``), ``sentinel`` (the master that the Sentinels at ``CACHE_REDIS_SENTINELS``
name ``CACHE_REDIS_SERVICE``) or ``cluster`` (a Redis Cluster, found from the seed nodes
``CACHE_REDIS_NODES``). Everything the cache does (entries, leases, generations, epochs,
live counts, rate limits, warming, the commands) goes to masters; no read is ever sent to
a replica. On a cluster each call goes to the master of its keys' slot: the keys of one
call share a shard's hash tag (``caching.keys``), and the client (redis-py's
``RedisCluster``) follows MOVED and ASK while slots move. The in-process tier
(``caching.local``) needs one server's invalidation stream and is off on a cluster.

**A promoted replica serves nothing its old master had invalidated.** Replication is
asynchronous: a master killed just after it acknowledged a generation bump may leave the
replica promoted in its place without that bump, still holding the entries the bump had
invalidated. So every connection to a master, before its first command, runs
``scripts.CLAIM`` once per shard: the server's run id is compared with the one stored
under the shard's ``keys.master_key``. The first connection to a master stores it; a
promoted replica holds its old master's, replicated, or none. If they differ, the script
bumps the shard's epoch and stores the new id, atomically, so every entry of the shard
written before the change of master is a miss. A shard the server does not serve (a
cluster slot of another master) answers MOVED and is claimed by the connections to its
own master. So a failover costs the epochs of the failed master's shards only: under
Sentinel that is every shard, on a cluster one master's share, and the other masters'
entries stay. It is bumped by whichever connection reaches the new master first; a
restarted master gets a new run id too, so writes a restart lost are covered the same way.

A connection opened while its server was a replica (the cluster client asks any node,
replicas among them, for the slot map) claims nothing then; it claims before its first
command once the server answers as a master. A slot moved by resharding carries its old
master's id along: the next new connection to the new owner bumps that shard's epoch,
which costs its entries and nothing else (``MIGRATE`` loses no write).

What this does not cover: a network partition in which the old master stays reachable
by app servers but not by the Sentinels (or the other cluster masters), so that two
masters take writes at once. Redis itself loses writes then; ``min-replicas-to-write``
on the master bounds that window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from django_redis.pool import ConnectionFactory, SentinelConnectionFactory
from redis import Connection, ConnectionPool
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import AskError
from redis.sentinel import SentinelManagedConnection

logger = logging.getLogger("caching")

STANDALONE = "standalone"
SENTINEL = "sentinel"
CLUSTER = "cluster"
MODES = (STANDALONE, SENTINEL, CLUSTER)

# The django-redis options only the Sentinel or cluster mode sets (``caches``).
MODE_OPTIONS = ("CONNECTION_FACTORY", "SENTINELS", "SENTINEL_KWARGS", "PASSWORD", "NODES")


def claim(connection: Connection) -> bool:
    """Claim every shard this connection's server serves (``scripts.CLAIM``, pipelined: one
    round trip). False, with nothing claimed, if the server is a replica."""
    # Both read the settings that chainlearn.settings, which imports this module, builds.
    from caching import keys
    from caching.scripts import CLAIM

    commands: list[tuple[Any, ...]] = [("ROLE",)]
    commands += [
        ("EVAL", CLAIM, 2, keys.master_key(shard), keys.epoch_key(shard))
        for shard in keys.EVERY_SHARD
    ]
    connection.send_packed_command(connection.pack_commands(commands), check_health=False)
    role = connection.read_response()
    bumped = []
    for shard in keys.EVERY_SHARD:
        try:
            if connection.read_response():
                bumped.append(shard)
        except AskError:  # MOVED or ASK: another master's shard (or a replica's answer)
            continue
    if bumped:
        logger.warning("cache epoch bumped: connected to a new master (shards %s)", bumped)
    return bool(role) and role[0] == b"master"


class Claims(Connection):
    """A connection that claims its server's shards before its first command, or before
    the first command after its server, a replica when it connected, became a master."""

    claimed = False
    _claiming = False

    def on_connect_check_health(self, check_health: bool = True) -> None:
        super().on_connect_check_health(check_health)
        self._claim()

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:  # not connected yet: connect first, as a pool would, so it claims
            self.connect()
        elif not self.claimed and not self._claiming:
            self._claim()
        super().send_packed_command(command, check_health)

    def _claim(self) -> None:
        self._claiming = True
        try:
            self.claimed = claim(self)
        finally:
            self._claiming = False


class ClaimingConnection(Claims, SentinelManagedConnection):
    """A connection to the master Sentinel names that claims it before its first command."""


class ClusterFactory(ConnectionFactory):  # type: ignore[type-arg]
    """django-redis's connection factory for a Redis Cluster: one ``RedisCluster`` per
    process and seed list, whose connections claim their master's shards."""

    _clusters: dict[str, RedisCluster] = {}

    def connect(self, url: str) -> RedisCluster:
        nodes = self.options["NODES"]
        key = ",".join(f"{host}:{port}" for host, port in nodes)
        if key not in self._clusters:
            pool_kwargs = dict(self.options.get("CONNECTION_POOL_KWARGS") or {})
            host, port = nodes[0]
            self._clusters[key] = RedisCluster(
                # Given a URL, the client makes its node pools from these options, the
                # connection class among them.
                url=f"redis://{host}:{port}/0",
                startup_nodes=[ClusterNode(host, port) for host, port in nodes[1:]],
                socket_timeout=self.options["SOCKET_TIMEOUT"],
                socket_connect_timeout=self.options["SOCKET_CONNECT_TIMEOUT"],
                password=self.options.get("PASSWORD"),
                max_connections=pool_kwargs.get("max_connections"),
                connection_class=Claims,
                retry=pool_kwargs.get("retry"),
            )
        return self._clusters[key]

    def disconnect(self, connection: Any) -> None:
        connection.disconnect_connection_pools()


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


def invalidation_patience_ms(mode: str) -> int:
    """How long, by default, a write's invalidation keeps trying while Redis fails over:
    one standalone server has no replica to wait for; a promotion takes a few seconds."""
    return 0 if mode == STANDALONE else 3000


def caches(mode: str, options: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``CACHES['default']`` for ``mode``: ``options`` are the django-redis options every
    mode shares (timeouts, retries, serializer); ``env`` holds the mode's own settings."""
    if mode == STANDALONE:
        return {"LOCATION": env["REDIS_URL"], "OPTIONS": options}
    if mode == CLUSTER:
        nodes = _addresses(env, "CACHE_REDIS_NODES")
        host, port = nodes[0]
        return {
            "LOCATION": f"redis://{host}:{port}/0",
            "OPTIONS": {
                **options,
                "CONNECTION_FACTORY": "caching.topology.ClusterFactory",
                "NODES": nodes,
                "PASSWORD": env.get("CACHE_REDIS_PASSWORD") or None,
            },
        }
    if mode != SENTINEL:
        raise ValueError(f"CACHE_REDIS_MODE must be one of {', '.join(MODES)}, not {mode!r}")
    if not env.get("CACHE_REDIS_SERVICE"):
        raise ValueError("sentinel mode needs CACHE_REDIS_SENTINELS and CACHE_REDIS_SERVICE")
    service = env["CACHE_REDIS_SERVICE"]
    sentinels = _addresses(env, "CACHE_REDIS_SENTINELS")
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


def _addresses(env: Mapping[str, str], name: str) -> list[tuple[str, int]]:
    """The ``host:port,...`` list in ``env[name]``."""
    listed = env.get(name, "")
    if not listed.strip():
        raise ValueError(f"{name} is needed: host:port,host:port,...")
    found = []
    for item in listed.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{name}: {item!r} is not host:port")
        found.append((host, int(port)))
    return found
