"""The registry of cache managers: it drives invalidation, warming, the commands and the
metric labels.

The managers themselves are declared by the project (``settings.CACHE_MANAGERS_MODULE``,
imported when the caching app is ready); this engine names no domain model.
"""

from __future__ import annotations

from caching.manager import CacheManager


class Registry:
    def __init__(self) -> None:
        self._managers: dict[str, CacheManager] = {}

    def register(self, manager: CacheManager) -> CacheManager:
        self._managers[manager.namespace] = manager
        return manager

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
        return {dep.model for manager in self.all() for dep in manager.dependencies}


registry = Registry()
