"""The caching layer's Prometheus metrics, labelled by namespace.

Under gunicorn the service sets ``PROMETHEUS_MULTIPROC_DIR`` so every worker writes its
samples to shared files and ``/metrics`` aggregates them. ``cache_hit_rate`` is not stored
anywhere: it is derived from the hit and miss counters at scrape time (``HitRateCollector``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

HITS = Counter("cache_hits_total", "Hot reads served from Redis.", ["namespace"])
MISSES = Counter("cache_misses_total", "Hot reads computed from the database.", ["namespace"])
ERRORS = Counter(
    "cache_errors_total",
    "Redis calls that failed (served from the database).",
    ["namespace", "operation"],
)
INVALIDATIONS = Counter(
    "cache_invalidations_total", "Generation bumps, by what caused them.", ["namespace", "cause"]
)
FILL_SECONDS = Histogram(
    "cache_fill_seconds",
    "Time spent running a loader to fill an entry.",
    ["namespace"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
STALE_SERVED = Counter(
    "cache_stale_served_total",
    "Expired entries served during their grace period.",
    ["namespace"],
)
FILL_WAITS = Counter(
    "cache_fill_waits_total", "Requests that waited for another request's fill.", ["namespace"]
)
COUNT_UPDATES = Counter(
    "cache_count_updates_total",
    "Live counts read from the database and written to Redis after a change committed.",
    ["counter"],
)
COUNT_LOADS = Counter(
    "cache_count_loads_total",
    "Live counts a read found missing in Redis and read from the database.",
    ["counter"],
)
L1_READS = Counter(
    "cache_l1_reads_total",
    "Reads looked up in the in-process tier: hit, miss, or unsynced (held, but the "
    "invalidation stream was down or did not answer in time).",
    ["namespace", "outcome"],
)
L1_EVICTIONS = Counter(
    "cache_l1_evictions_total",
    "Entries the in-process tier evicted to stay in its bound.",
    ["namespace"],
)
STREAM_RECONNECTS = Counter(
    "cache_invalidation_stream_reconnects_total",
    "Times a process's invalidation stream reconnected (its in-process tier emptied).",
)
STREAM_SYNC_SECONDS = Histogram(
    "cache_invalidation_stream_sync_seconds",
    "How long a read waited for the invalidation stream to drain past it (its lag).",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
BREAKER_OPEN = Gauge(
    "cache_breaker_open",
    "1 while any of a worker's Redis circuit breakers (one per Redis node) is open.",
    multiprocess_mode="livemax",
)


# The one rule for what a read counts as, by how it was served: every request counts its
# read of a namespace once, here, and ``cache_stats`` reads these same counters.
OUTCOMES: dict[str, tuple[Counter, ...]] = {
    "hit": (HITS,),  # fresh entry
    "stale": (HITS, STALE_SERVED),  # expired entry served while another request reloads it
    "refresh": (MISSES, STALE_SERVED),  # expired entry served; this request reloads it
    "fill": (MISSES,),  # loaded from the database and stored
    "waited": (HITS, FILL_WAITS),  # served the value another request filled meanwhile
    "gave_up": (MISSES,),  # waited twice the lease in vain, then loaded from the database
    "unavailable": (MISSES,),  # Redis unreachable or the breaker open: from the database
}
_children: dict[tuple[str, str], tuple[Counter, ...]] = {}


def record(namespace: str, outcome: str) -> None:
    """Count one read of ``namespace`` served as ``outcome`` (a key of ``OUTCOMES``)."""
    counters = _children.get((namespace, outcome))
    if counters is None:
        counters = tuple(counter.labels(namespace) for counter in OUTCOMES[outcome])
        _children[(namespace, outcome)] = counters
    for counter in counters:
        counter.inc()


def local_registry() -> CollectorRegistry:
    """This host's counters: every gunicorn worker's (multiprocess mode), or this
    process's own."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collected = CollectorRegistry()
        MultiProcessCollector(collected)
        return collected
    return REGISTRY


class HitRateCollector(Collector):
    """Computes ``cache_hit_rate{namespace}`` from the counters of ``source`` at scrape time."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        totals: dict[str, dict[str, float]] = defaultdict(lambda: {"hits": 0.0, "misses": 0.0})
        for family in self.source.collect():
            kind = {"cache_hits": "hits", "cache_misses": "misses"}.get(family.name)
            if kind is None:
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    totals[sample.labels["namespace"]][kind] += sample.value
        rate = GaugeMetricFamily(
            "cache_hit_rate",
            "Hits / (hits + misses) since the service started.",
            labels=["namespace"],
        )
        for namespace, counts in sorted(totals.items()):
            seen = counts["hits"] + counts["misses"]
            rate.add_metric([namespace], counts["hits"] / seen if seen else 0.0)
        yield rate
