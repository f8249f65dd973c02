"""Cache statistics for ``cache_stats``.

Counts come from the same Prometheus counters ``/metrics`` exposes (``caching.metrics``),
so the two always agree: on a host running gunicorn, the workers' multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``); across hosts, the sum of each host's ``/metrics`` text
(``cache_stats --metrics-url``). Live keys come from a ``SCAN`` over the namespace's
entries, split into current ones (filled under the stamp a read would accept now) and
outdated ones (an older stamp or payload version: never served, overwritten by the next
fill or dropped at their TTL). ``SCAN`` is for this operator command only, never a request
path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from redis import Redis

from caching import entries, keys
from caching.connection import guarded
from caching.entries import Frame
from caching.registry import registry

COUNTERS = {
    "cache_hits": "hits",
    "cache_misses": "misses",
    "cache_stale_served": "stale",
    "cache_fill_waits": "waits",
}
Counts = dict[str, dict[str, float]]


@dataclass(frozen=True)
class NamespaceStats:
    namespace: str
    hits: int
    misses: int
    stale: int
    waits: int
    keys: int
    outdated: int
    bytes: int

    @property
    def hit_rate(self) -> float:
        seen = self.hits + self.misses
        return self.hits / seen if seen else 0.0


def counts_from_registry(source: CollectorRegistry) -> Counts:
    return _counts((family.name, family.samples) for family in source.collect())


def counts_from_text(texts: Iterable[str]) -> Counts:
    """The counters summed over several hosts' ``/metrics`` texts."""
    return _counts(
        (family.name, family.samples)
        for text in texts
        for family in text_string_to_metric_families(text)
    )


def _counts(families: Iterable[tuple[str, list]]) -> Counts:  # type: ignore[type-arg]
    counts: Counts = defaultdict(lambda: dict.fromkeys(COUNTERS.values(), 0.0))
    for name, samples in families:
        field = COUNTERS.get(name)
        if field is None:
            continue
        for sample in samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["namespace"]][field] += sample.value
    return counts


def namespace_stats(namespace: str, counts: Counts) -> NamespaceStats:
    """Counters and live-key footprint of ``namespace`` (raises ``CacheUnavailable``)."""
    manager = registry.get(namespace)

    def walk(client: Redis) -> tuple[int, int, int]:
        current, outdated, size = 0, 0, 0
        for batch in _scan_batches(client, keys.entry_pattern(namespace)):
            parsed = [(key, keys.entry_scope(namespace, key.decode())) for key in batch]
            entry_keys = [(key, found) for key, found in parsed if found is not None]
            scopes = sorted({(shard, scope) for _, (_, shard, scope) in entry_keys})
            shards = sorted({shard for shard, _ in scopes})
            pipe = client.pipeline(transaction=False)
            # The counters once per batch: the epoch and namespace generation per shard, the
            # scope generation per scope; then each entry's head and size.
            for shard in shards:
                pipe.get(keys.epoch_key(shard))
                pipe.get(keys.generation_key(namespace, shard))
            for shard, scope in scopes:
                pipe.get(keys.generation_key(namespace, shard, scope))
            for key, _ in entry_keys:
                pipe.getrange(key, 0, 99)
                pipe.memory_usage(key)
            replies = pipe.execute()
            per_shard = {shard: replies[n * 2 : n * 2 + 2] for n, shard in enumerate(shards)}
            replies = replies[len(shards) * 2 :]
            stamps = {
                (shard, scope): entries.stamp([*per_shard[shard], replies[n]])
                for n, (shard, scope) in enumerate(scopes)
            }
            replies = replies[len(scopes) :]
            for n, (_, (version, shard, scope)) in enumerate(entry_keys):
                head, usage = replies[n * 2 : n * 2 + 2]
                if not head or usage is None:  # expired between SCAN and now
                    continue
                current_stamp = stamps[(shard, scope)]
                if version == manager.version and Frame.stamp_in(head) == current_stamp:
                    current += 1
                else:
                    outdated += 1
                size += usage
        return current, outdated, size

    current, outdated, size = guarded(namespace, "stats", walk)
    seen = counts.get(namespace, {})
    return NamespaceStats(
        namespace=namespace,
        hits=int(seen.get("hits", 0)),
        misses=int(seen.get("misses", 0)),
        stale=int(seen.get("stale", 0)),
        waits=int(seen.get("waits", 0)),
        keys=current,
        outdated=outdated,
        bytes=size,
    )


def _scan_batches(client: Redis, pattern: str) -> Iterable[list[bytes]]:
    """The keys matching ``pattern``, 1,000 at a time (on a cluster, from every master)."""
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key if isinstance(key, bytes) else key.encode())
        if len(batch) == 1000:
            yield batch
            batch = []
    yield batch
