"""``CacheManager``: one hot read, declared once, and the protocol that serves it.

A manager owns one namespace: its TTL, payload version, how a key is built from validated
parameters, the loader that computes the value from the database, and the models it
depends on (with a function from changed rows to the scopes they make stale).

``read`` is the read path. One Lua round trip reads the entry under the current stamp.
Fresh: served. Expired but within the grace period: served, and the request that won the
refresh lease queues the reload to run after it (``caching.refresh``). Missing: the lease
winner loads and stores; the others wait for its value, polling, and take over only if
its lease lapses (its holder died or hung). A waiter is served the fill it waited for even
if a write committed meanwhile made it outdated for later readers (see ``_wait_for_fill``),
so a namespace under continuous invalidation runs its loader at most once per
invalidation per key, and waiters never load on their own while a fill is under way. Any
Redis failure is a miss served from the database. Each read is counted once, by its
outcome (``caching.metrics.record``).

A manager with a ``LiveCount`` (``caching.counts``) stores its entries with holes where the
counts go and fills them at read time from the counts read in the same round trip.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings
from django.db import models

from caching import counts, entries, keys, refresh, topology
from caching.connection import CacheUnavailable
from caching.counts import LiveCount
from caching.entries import LEASE, PRESENT, Found, Frame, Slot, dumps
from caching.metrics import COUNT_LOADS, FILL_SECONDS, record

ScopeFn = Callable[[Sequence[models.Model]], set[str]]
Params = dict[str, Any]


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


@dataclass(frozen=True)
class Served:
    """A read's value as JSON (``data``) and, for a page, its total; ``null`` when the
    loader found nothing (nothing was stored). ``tag`` names the stored entry it came from
    (``Frame.tag``): the same tag is the same bytes; None when it was loaded uncached."""

    data: bytes
    total: int | None = None
    tag: str | None = None

    @property
    def missing(self) -> bool:
        return self.data == b"null"

    def value(self) -> Any:
        return json.loads(self.data)


@dataclass
class CacheManager:
    """One hot read. ``loader(**params)`` returns a JSON-ready value, or None when there is
    nothing to cache; with ``paged``, a dict ``{"items": [...], "total": n}`` whose items are
    the data and whose total travels beside them. ``warm_params`` lists the parameters the
    warming task fills (shared namespaces only)."""

    namespace: str
    loader: Callable[..., Any]
    scope_param: str | None
    key_params: tuple[str, ...]
    dependencies: tuple[Dependency, ...]
    version: int = 1
    paged: bool = False
    warm_params: Callable[[], Iterable[Params]] | None = None
    live_count: LiveCount | None = None
    local: bool = True  # entries may be held in the in-process tier (``caching.local``)
    # Test hook: called between the load and the store (forces the stale-set interleaving).
    after_load: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @property
    def ttl(self) -> int:
        return int(settings.CACHE_TTLS[self.namespace])

    def slot(self, params: Params) -> Slot:
        scope = keys.ALL if self.scope_param is None else str(params[self.scope_param])
        fragment = keys.params({name: params[name] for name in self.key_params})
        shard = keys.shard_of(scope, fragment)
        return Slot(
            namespace=self.namespace,
            shard=shard,
            scope_gen_key=keys.generation_key(self.namespace, shard, scope),
            key=keys.entry_key(self.namespace, self.version, shard, scope, fragment),
            counter_key=None
            if self.live_count is None
            else keys.counter_key(self.live_count.counter.name, shard),
            local=self.local,
        )

    def load(self, params: Params) -> Served:
        """Compute the value from the database, uncached."""
        return self._encode(self.loader(**params))

    def read(self, params: Params) -> Served:
        """This read's value for ``params``, from Redis when possible (see the module)."""
        if not settings.CACHE_ENABLED:
            return self.load(params)
        slot = self.slot(params)
        try:
            (found,) = entries.lookup([slot], [LEASE], lease_ms=settings.CACHE_LEASE_MS)
        except CacheUnavailable:
            record(self.namespace, "unavailable")
            return self.load(params)
        return self.settle(slot, found, params)

    def settle(self, slot: Slot, found: Found, params: Params) -> Served:
        """Serve a lookup's outcome: the entry if present (queueing the reload of an expired
        one whose refresh lease this request won), else fill it or wait for its filler."""
        if found.frame is not None:
            record(self.namespace, found.state)
            if found.state == "refresh" and not refresh.submit(
                lambda: self._fill(slot, found, params)
            ):
                self._fill(slot, found, params)  # queue full: reload inline
            return self._served(slot, found)
        if found.state == "wait":
            return self._wait_for_fill(slot, found.stamp, params)
        record(self.namespace, "fill")
        return self._fill(slot, found, params)

    def warm(self, **params: Any) -> bool:
        """Fill this entry if it is missing or expired; True if this call stored it."""
        slot = self.slot(params)
        (found,) = entries.lookup([slot], [LEASE], lease_ms=settings.CACHE_LEASE_MS)
        if found.state not in ("fill", "refresh"):
            return False
        self._fill(slot, found, params)
        return True

    def _encode(self, value: Any) -> Served:
        if self.paged:
            return Served(dumps(value["items"]), int(value["total"]))
        return Served(dumps(value))

    def _fill(self, slot: Slot, found: Found, params: Params) -> Served:
        """Load, then store under the stamp read before loading, with the live counts the
        load read (under a version drawn before it, as ``caching.counts`` requires)."""
        version = None if self.live_count is None else counts.next_version()
        started = time.perf_counter()
        try:
            value = self.loader(**params)
        except BaseException:
            self._release(slot, found)
            raise
        FILL_SECONDS.labels(self.namespace).observe(time.perf_counter() - started)
        if self.after_load is not None:
            self.after_load()
        if value is None:
            # Nothing to cache (e.g. an unknown course): let waiters load for themselves.
            self._release(slot, found)
            return self._encode(value)
        payload = value["items"] if self.paged else value
        ids: tuple[str, ...] = ()
        shown: list[bytes] = []
        if self.live_count is None:
            data = dumps(payload)
        else:
            data, ids, shown = counts.cut(self.live_count, payload)
        ttl_ms = self.ttl * 1000
        frame = Frame(
            fresh_until_ms=entries.now_ms() + fresh_ms(ttl_ms),
            stamp=found.stamp,
            data=data,
            total=int(value["total"]) if self.paged else None,
            counted=",".join(ids).encode(),
        )
        with contextlib.suppress(CacheUnavailable):
            entries.store(slot, found, frame, ttl_ms + settings.CACHE_STALE_GRACE * 1000)
            if self.live_count is not None and version is not None:
                name = self.live_count.counter.name
                shown_counts = dict(zip(ids, shown, strict=True))
                entries.set_counts(name, {slot.shard: found.epoch}, version, shown_counts)
        # Tagged even if the store was refused: a tag names one fill, and a later request
        # can only see it again if this very frame was stored.
        return served_from(slot, frame, shown)

    def _served(self, slot: Slot, found: Found) -> Served:
        """A found frame as served: its holes filled with the live counts found beside it,
        and those Redis did not have read from the database (and written back)."""
        frame = found.frame
        assert frame is not None
        if not frame.counted or self.live_count is None:
            return served_from(slot, frame, [])
        shown = found.counts or [None] * len(frame.ids)
        if None in shown:
            in_redis = list(zip(frame.ids, shown, strict=True))
            missing = [ident for ident, count in in_redis if count is None]
            loaded, _ = counts.refresh(self.live_count.counter, missing, {slot.shard: found.epoch})
            COUNT_LOADS.labels(self.live_count.counter.name).inc(len(missing))
            shown = [b"%d" % loaded[i] if count is None else count for i, count in in_redis]
        return served_from(slot, frame, cast(list[bytes], shown))

    def _wait_for_fill(self, slot: Slot, since: str, params: Params) -> Served:
        """Look again, backing off, until the filler's value is there (then serve it) or its
        lease lapses (then this request fills).

        The value may be served even if its stamp is no longer current (a write committed
        during the load), provided the stamp is not older than ``since``, the one this
        request saw when it began to wait: the filler then read its stamp after this
        request arrived or saw the same writes, so its load includes every write that
        had returned before this request arrived. The loader therefore runs at most once
        per stamp, and under continuous invalidation waiters take no load of their own.
        The wait is bounded by twice the lease (a lease outlives no fill by more)."""
        deadline = time.monotonic() + 2 * settings.CACHE_LEASE_MS / 1000
        delay = 0.002
        try:
            while time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
                (found,) = entries.lookup(
                    [slot], [LEASE], lease_ms=settings.CACHE_LEASE_MS, since=[since]
                )
                if found.frame is not None:
                    record(self.namespace, "waited")
                    return self._served(slot, found)
                if found.state == "fill":
                    record(self.namespace, "fill")
                    return self._fill(slot, found, params)
        except CacheUnavailable:
            pass
        record(self.namespace, "gave_up")
        return self.load(params)

    def _release(self, slot: Slot, found: Found) -> None:
        with contextlib.suppress(CacheUnavailable):
            entries.release(slot, found)

    def targets_for(self, model: type[models.Model], rows: Sequence[models.Model]) -> set[str]:
        label = model._meta.label
        scopes: set[str] = set()
        for dependency in self.dependencies:
            if dependency.model == label:
                scopes |= dependency.scopes(rows)
        return scopes


def read_behind(
    gate: CacheManager, gate_params: Params, manager: CacheManager, params: Params
) -> Served | None:
    """``manager``'s read for ``params``, looked up in the same round trip as ``gate``'s
    entry and only if that entry is present (a bearer token's principal, say): None, with
    nothing read, leased or counted, when it is not, or when Redis is unavailable; the
    caller then takes the full path (``gate.read``, then ``manager.read``)."""
    if not settings.CACHE_ENABLED:
        return None
    gate_slot, slot = gate.slot(gate_params), manager.slot(params)
    if gate_slot.shard != slot.shard and settings.CACHE_REDIS_MODE == topology.CLUSTER:
        return None  # one script call reaches one slot of a cluster
    try:
        found = entries.lookup(
            [gate_slot, slot], [PRESENT, LEASE], lease_ms=settings.CACHE_LEASE_MS
        )
    except CacheUnavailable:
        return None
    if len(found) < 2:
        return None
    gate.settle(gate_slot, found[0], gate_params)
    return manager.settle(slot, found[1], params)


def served_from(slot: Slot, frame: Frame, shown: list[bytes]) -> Served:
    """``frame`` as served, its holes (if any) filled with the live counts ``shown``."""
    data = counts.splice(frame.data, shown) if frame.counted else frame.data
    return Served(data, frame.total, frame.tag(slot.key, shown))


def fresh_ms(ttl_ms: int) -> int:
    """How long a new entry is served as fresh: a random (1 - ``CACHE_TTL_JITTER``) to 1 of
    its TTL (never longer), so entries filled together (a warm, a flush, a burst of new
    users) come due for reload spread out instead of in one wave."""
    return ttl_ms - random.randrange(int(ttl_ms * settings.CACHE_TTL_JITTER) + 1)
