"""Warming: fill the shared entries most requests read, through the managers.

Going through ``CacheManager.warm`` means warming takes the same lease as a request and
stores under the stamp it read first, so it never races a writer (properties 3, 5). Which
entries are warmed is each manager's ``warm_params``; the others fill on demand.
"""

from __future__ import annotations

import logging

from caching.connection import CacheUnavailable
from caching.registry import registry

logger = logging.getLogger("caching")


def warmable() -> tuple[str, ...]:
    """The namespaces whose managers declare what to warm."""
    return tuple(m.namespace for m in registry.all() if m.warm_params is not None)


def warm(namespaces: tuple[str, ...] | None = None) -> dict[str, int]:
    """Fill missing or expired entries of ``namespaces`` (default: every warmable one);
    returns entries stored per namespace. Raises ``CacheUnavailable`` if Redis cannot be
    reached."""
    stored: dict[str, int] = {}
    for namespace in warmable() if namespaces is None else namespaces:
        manager = registry.get(namespace)
        stored[namespace] = 0
        for params in manager.warm_params() if manager.warm_params else ():
            stored[namespace] += manager.warm(**params)
    return stored


def warm_quietly() -> dict[str, int]:
    """``warm`` for start-up and schedules: a Redis outage is logged, never raised."""
    try:
        return warm()
    except CacheUnavailable:
        logger.warning("cache warming skipped: Redis unavailable")
        return {}
