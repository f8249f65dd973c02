"""The registry of cache managers and live counters: it drives invalidation, warming, the
commands and the metric labels.

The managers themselves are declared by the project (``settings.CACHE_MANAGERS_MODULE``,
imported when the caching app is ready); this engine names no domain model.
"""

from __future__ import annotations

from caching.counts import Counter
from caching.manager import CacheManager


class Registry:
    def __init__(self) -> None:
        self._managers: dict[str, CacheManager] = {}
        self._counters: dict[str, Counter] = {}

    def register(self, manager: CacheManager) -> CacheManager:
        self._managers[manager.namespace] = manager
        return manager

    def register_counter(self, counter: Counter) -> Counter:
        self._counters[counter.name] = counter
        return counter

    def counters(self) -> list[Counter]:
        return list(self._counters.values())

    def all(self) -> list[CacheManager]:
        return list(self._managers.values())

    def namespaces(self) -> list[str]:
        return list(self._managers)

    def get(self, namespace: str) -> CacheManager:
        try:
            return self._managers[namespace]
        except KeyError:
            known = ", ".join(sorted(self._managers))
            raise KeyError(f"unknown cache namespace {namespace!r} (known: {known})") from None

    def model_labels(self) -> set[str]:
        labels = {dep.model for manager in self.all() for dep in manager.dependencies}
        return labels | {counter.model for counter in self.counters()}


registry = Registry()
