"""Cache statistics for ``cache_stats``: counters kept in Redis by the Lua scripts, plus a
walk over a namespace's live keys.

The walk uses ``SCAN`` and so is for this operator command only, never a request path.
"""

from __future__ import annotations

from dataclasses import dataclass

from caching import backend, keys


@dataclass(frozen=True)
class NamespaceStats:
    namespace: str
    hits: int
    misses: int
    stale: int
    waits: int
    keys: int
    bytes: int

    @property
    def hit_rate(self) -> float:
        seen = self.hits + self.misses
        return self.hits / seen if seen else 0.0


def namespace_stats(namespace: str) -> NamespaceStats:
    """Counters and live-key footprint of ``namespace`` (raises ``CacheUnavailable``)."""

    def read(client):  # type: ignore[no-untyped-def]
        counts = {k.decode(): int(v) for k, v in client.hgetall(keys.stats_key(namespace)).items()}
        live, size, cursor = 0, 0, 0
        while True:
            cursor, batch = client.scan(cursor, match=keys.entry_pattern(namespace), count=1000)
            entries = [key for key in batch if not key.endswith(b":lease")]
            pipe = client.pipeline(transaction=False)
            for key in entries:
                pipe.memory_usage(key)
            live += len(entries)
            size += sum(usage or 0 for usage in pipe.execute())
            if cursor == 0:
                return counts, live, size

    counts, live, size = backend.guarded(namespace, "stats", read)
    return NamespaceStats(
        namespace=namespace,
        hits=counts.get("hits", 0),
        misses=counts.get("misses", 0),
        stale=counts.get("stale", 0),
        waits=counts.get("waits", 0),
        keys=live,
        bytes=size,
    )
