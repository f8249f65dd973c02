"""The caching layer's Prometheus metrics, labelled by namespace.

Under gunicorn the service sets ``PROMETHEUS_MULTIPROC_DIR`` so every worker writes its
samples to shared files and ``/metrics`` aggregates them. ``cache_hit_rate`` is not stored
anywhere: it is derived from the hit and miss counters at scrape time (``HitRateCollector``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
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
BREAKER_OPEN = Gauge(
    "cache_breaker_open",
    "1 while a worker's Redis circuit breaker is open.",
    multiprocess_mode="livemax",
)


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
