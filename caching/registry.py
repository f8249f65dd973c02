"""Cache managers and the registry that drives invalidation, warming, commands and metrics.

A manager owns one hot read: its namespace, TTL, payload version, how a key is built from
validated parameters, the loader (a selector) and the models it depends on. ``get`` is the
read path (see ``CacheManager.get`` for the protocol); ``targets_for`` answers which
generations a changed row bumps.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import models

from caching import backend, keys, refresh
from caching.backend import CacheUnavailable, Lookup, Slot
from caching.metrics import FILL_SECONDS, FILL_WAITS, HITS, MISSES, STALE_SERVED

logger = logging.getLogger("chainlearn.cache")

# Marks a value still in its JSON form (a cache hit): decode only if the caller needs it.
UNDECODED = object()

ScopeFn = Callable[[Sequence[models.Model]], set[str]]


@dataclass(frozen=True)
class Dependency:
    """``model`` rows changing make the scopes ``scopes(rows)`` stale (``keys.ALL``: all)."""

    model: str
    scopes: ScopeFn


def every_entry(rows: Sequence[models.Model]) -> set[str]:
    return {keys.ALL}


def by_field(name: str) -> ScopeFn:
    """Scopes named by a field of each changed row (e.g. ``user_id``)."""

    def scopes(rows: Sequence[models.Model]) -> set[str]:
        return {str(getattr(row, name)) for row in rows if getattr(row, name) is not None}

    return scopes


@dataclass
class CacheManager:
    namespace: str
    loader_path: str
    scope_param: str | None
    key_params: tuple[str, ...]
    dependencies: tuple[Dependency, ...]
    version: int = 1
    # Test hook: called between the load and the store (forces the stale-set interleaving).
    after_load: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @property
    def ttl(self) -> int:
        return int(settings.CACHE_TTLS[self.namespace])

    def load(self, **params: Any) -> Any:
        module, name = self.loader_path.rsplit(".", 1)
        loader = getattr(importlib.import_module(module), name)
        return loader(**params)

    def slot(self, params: dict[str, Any]) -> Slot:
        scope = keys.ALL if self.scope_param is None else str(params[self.scope_param])
        return Slot(
            namespace=self.namespace,
            epoch_key=keys.epoch_key(),
            namespace_gen_key=keys.generation_key(self.namespace),
            scope_gen_key=keys.generation_key(self.namespace, scope),
            head=keys.entry_head(self.namespace, self.version, scope),
            fragment=keys.params({name: params[name] for name in self.key_params}),
        )

    def get(self, **params: Any) -> Any:
        """The value of this read for ``params``, from Redis when possible (see ``read``)."""
        value, payload = self.read(params)
        if value is UNDECODED:
            assert payload is not None
            return json.loads(payload)
        return value

    def get_json(self, **params: Any) -> bytes:
        """The value of this read as JSON bytes: a hit is passed through without decoding."""
        value, payload = self.read(params)
        return payload if payload is not None else dumps(value)

    def json_as(
        self, principal: CacheManager, principal_params: dict[str, Any], **params: Any
    ) -> tuple[bytes, str] | None:
        """(this read as JSON, the caller's user id) for a bearer token's ``principal``
        entry, in one round trip. The entry is the principal's user's when this manager is
        per-user and ``params`` leave its scope parameter out, else the one ``params``
        name. Only when both entries are present (each fresh, or expired and served stale
        while it is refreshed); else None, with nothing counted, and the caller takes the
        full path: authentication, then ``get_json``."""
        if not settings.CACHE_ENABLED:
            return None
        by_user = self.scope_param is not None and self.scope_param not in params
        if self.scope_param is None:
            scope = keys.ALL
        else:
            scope = "" if by_user else str(params[self.scope_param])
        entries = backend.ScopedSlots(
            namespace=self.namespace,
            namespace_gen_key=keys.generation_key(self.namespace),
            scope_gen_prefix=keys.generation_key(self.namespace, ""),
            head_prefix=keys.entry_head_prefix(self.namespace, self.version),
            fragment=keys.params({name: params[name] for name in self.key_params}),
            scope=scope,  # empty: the principal's user, known inside the script
        )
        try:
            result = backend.lookup_as(
                principal.slot(principal_params), entries, lease_ms=settings.CACHE_LEASE_MS
            )
        except CacheUnavailable:
            return None
        if result is None:
            return None
        principal_found, found, user_id = result
        principal.count_served(principal_found, principal_params)
        if by_user:
            params = {**params, str(self.scope_param): user_id}
        self.count_served(found, params)
        assert found.raw is not None
        return payload_of(found.raw), user_id

    def count_served(self, found: Lookup, params: dict[str, Any]) -> None:
        """Count a present entry being served; the request that won an expired entry's
        refresh lease queues its reload to run in the background (``caching.refresh``)."""
        if found.state == "hit":
            HITS.labels(self.namespace).inc()
            return
        STALE_SERVED.labels(self.namespace).inc()
        if found.state != "refresh":
            HITS.labels(self.namespace).inc()
            return
        MISSES.labels(self.namespace).inc()
        slot = self.slot(params)
        if not refresh.submit(lambda: self._fill(slot, found, params)):
            self._fill(slot, found, params)  # queue full: reload inline

    def read(self, params: dict[str, Any]) -> tuple[Any, bytes | None]:
        """``(UNDECODED, JSON bytes)`` when read from Redis; ``(value, JSON bytes or None)``
        when computed here (the JSON is the stored payload, when one was encoded).

        One Lua round trip reads the entry under the current epoch and generations. Fresh:
        served. Expired but within the grace period: served, and the request that won the
        refresh lease queues the reload to run after it (``caching.refresh``). Missing: the
        lease winner loads and stores; the others poll briefly for its value, take over if
        its lease lapses, and after ``CACHE_FILL_WAIT_MS`` load from the database themselves.
        Any Redis failure is a miss served from the database.
        """
        if not settings.CACHE_ENABLED:
            return self.load(**params), None
        slot = self.slot(params)
        try:
            found = backend.lookup(slot, lease_ms=settings.CACHE_LEASE_MS)
        except CacheUnavailable:
            MISSES.labels(self.namespace).inc()
            return self.load(**params), None
        if found.raw is not None:  # hit, stale, or refresh (served stale, reloaded later)
            self.count_served(found, params)
            return UNDECODED, payload_of(found.raw)
        if found.state == "wait":
            return self._wait_for_fill(slot, found, params)
        MISSES.labels(self.namespace).inc()
        return self._fill(slot, found, params)

    def warm(self, **params: Any) -> bool:
        """Fill this entry if it is missing or expired; True if this call stored it."""
        slot = self.slot(params)
        found = backend.lookup(slot, lease_ms=settings.CACHE_LEASE_MS, count=False)
        if found.state not in ("fill", "refresh"):
            return False
        self._fill(slot, found, params)
        return True

    def _fill(self, slot: Slot, found: Lookup, params: dict[str, Any]) -> tuple[Any, bytes | None]:
        """Load, store under the stamp read before loading; returns (value, its JSON)."""
        started = time.perf_counter()
        try:
            value = self.load(**params)
        except BaseException:
            self._release(slot, found)
            raise
        FILL_SECONDS.labels(self.namespace).observe(time.perf_counter() - started)
        if self.after_load is not None:
            self.after_load()
        if value is None:
            # Nothing to cache (e.g. an unknown course): let waiters load for themselves.
            self._release(slot, found)
            return None, None
        ttl_ms = self.ttl * 1000
        payload = dumps(value)
        stored = frame(payload, fresh_until_ms=backend.now_ms() + fresh_ms(ttl_ms))
        with contextlib.suppress(CacheUnavailable):
            backend.store(slot, found, stored, ttl_ms + settings.CACHE_STALE_GRACE * 1000)
        return value, payload

    def _wait_for_fill(
        self, slot: Slot, found: Lookup, params: dict[str, Any]
    ) -> tuple[Any, bytes | None]:
        deadline = time.monotonic() + settings.CACHE_FILL_WAIT_MS / 1000
        delay = 0.002
        try:
            while time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
                state, raw = backend.poll(slot, found, lease_ms=settings.CACHE_LEASE_MS)
                if state == "hit" and raw is not None:
                    HITS.labels(self.namespace).inc()
                    FILL_WAITS.labels(self.namespace).inc()
                    return UNDECODED, payload_of(raw)
                if state == "fill":
                    MISSES.labels(self.namespace).inc()
                    return self._fill(slot, found, params)
            backend.record_miss(self.namespace)
        except CacheUnavailable:
            pass
        MISSES.labels(self.namespace).inc()
        return self.load(**params), None

    def _release(self, slot: Slot, found: Lookup) -> None:
        with contextlib.suppress(CacheUnavailable):
            backend.release(slot, found)

    def targets_for(self, model: type[models.Model], rows: Sequence[models.Model]) -> set[str]:
        label = model._meta.label
        scopes: set[str] = set()
        for dependency in self.dependencies:
            if dependency.model == label:
                scopes |= dependency.scopes(rows)
        return scopes


def fresh_ms(ttl_ms: int) -> int:
    """How long a new entry is served as fresh: a random (1 - ``CACHE_TTL_JITTER``) to 1 of
    its TTL (never longer), so entries filled together (a warm, a flush, a burst of new
    users) come due for reload spread out instead of in one wave."""
    return ttl_ms - random.randrange(int(ttl_ms * settings.CACHE_TTL_JITTER) + 1)


def dumps(value: Any) -> bytes:
    """Compact JSON, the form every cached payload is stored and served in."""
    return json.dumps(value, separators=(",", ":")).encode()


def frame(payload: bytes, *, fresh_until_ms: int) -> bytes:
    """A stored entry, ``<fresh-until ms>\\n<JSON>``: the Lua lookup reads the expiry
    without parsing JSON."""
    return f"{fresh_until_ms}\n".encode() + payload


def encode(value: Any, *, fresh_until_ms: int) -> bytes:
    return frame(dumps(value), fresh_until_ms=fresh_until_ms)


def payload_of(raw: bytes) -> bytes:
    """The JSON part of a stored entry."""
    return raw[raw.index(b"\n") + 1 :]


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
