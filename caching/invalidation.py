"""Turning changed rows into generation bumps and live-count refreshes, after the
transaction commits.

Signal receivers and the invalidating queryset both end here, so every write path
invalidates through the same registry. Bumps are scheduled with ``transaction.on_commit``:
a rolled-back write bumps nothing, and a reader can never see the bump before the data.
Targets name a namespace's scopes, or a live counter's ids (``caching.counts``), whose
counts are read again and written to Redis instead of invalidating the entries showing
them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.db import models, transaction

from caching import counts, entries, keys
from caching.connection import mark_stale
from caching.metrics import COUNT_UPDATES, INVALIDATIONS
from caching.registry import registry

logger = logging.getLogger("caching")

Targets = dict[str, set[str]]


def targets_for(model: type[models.Model], rows: Sequence[models.Model]) -> Targets:
    """Namespace → scopes made stale, and counter → ids whose counts changed, by ``rows``
    of ``model`` changing."""
    targets: Targets = {}
    label = model._meta.label
    if not rows or label not in registry.model_labels():
        return targets
    for manager in registry.all():
        scopes = manager.targets_for(model, rows)
        if scopes:
            targets[manager.namespace] = scopes
    for counter in registry.counters():
        ids = counter.ids(rows) if counter.model == label else set()
        if ids:
            targets[counter.name] = ids
    return targets


def merge(*many: Targets) -> Targets:
    merged: Targets = defaultdict(set)
    for targets in many:
        for namespace, scopes in targets.items():
            merged[namespace] |= scopes
    return dict(merged)


def invalidate(targets: Targets, cause: str) -> None:
    """Bump the generations of ``targets`` now, in one round trip per node, then refresh
    the live counts it names. A namespace-wide target bumps the namespace's counter in
    every shard; a scope, its own counter in its shard."""
    if not targets:
        return
    counters = {counter.name: counter for counter in registry.counters()}
    stale = {name: scopes for name, scopes in targets.items() if name not in counters}
    gen_keys = [
        (shard, keys.generation_key(namespace, shard, scope))
        for namespace, scopes in sorted(stale.items())
        for scope in sorted(scopes)
        for shard in (keys.EVERY_SHARD if scope == keys.ALL else [keys.shard_of(scope, "")])
    ]
    counted = sorted(targets.keys() & counters.keys())
    # A shard not reached is marked: its epoch is bumped before its next read.
    epochs, lost = entries.bump_generations(sorted(targets), gen_keys, read_epochs=bool(counted))
    if lost:
        logger.warning("invalidation of %s deferred to an epoch bump", ", ".join(sorted(targets)))
    for namespace, scopes in stale.items():
        INVALIDATIONS.labels(namespace, cause).inc(len(scopes))
    for name in counted:
        refresh_counts(counters[name], targets[name], epochs)


def refresh_counts(counter: counts.Counter, ids: set[str], epochs: entries.Epochs) -> None:
    """Write the new counts of ``ids`` into every shard's counts (each shard's entries read
    their own copy); where that fails, make the shard's stored counts a miss."""
    missed = set(keys.EVERY_SHARD) - epochs.keys()
    try:
        _, failed = counts.refresh(counter, sorted(ids), epochs, patient=True)
    except Exception:  # the database failed after the commit: the stored counts are old
        logger.exception("counts of %s not refreshed; bumping the epoch", counter.name)
        entries.bump_epoch()
        return
    mark_stale(failed | missed)
    if failed or missed:
        logger.warning("counts of %s not refreshed; deferred to an epoch bump", counter.name)
        return
    COUNT_UPDATES.labels(counter.name).inc(len(ids))


def invalidate_on_commit(targets: Targets, cause: str, using: str | None = None) -> None:
    if targets:
        transaction.on_commit(lambda: invalidate(targets, cause), using=using, robust=True)


def flush(namespaces: Iterable[str], cause: str = "flush") -> None:
    """Make every entry of ``namespaces`` a miss at once (a namespace-wide generation bump)."""
    invalidate({namespace: {keys.ALL} for namespace in namespaces}, cause)
