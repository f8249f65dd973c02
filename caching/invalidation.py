"""Turning changed rows into generation bumps, after the transaction commits.

Signal receivers and the invalidating queryset both end here, so every write path
invalidates through the same registry. Bumps are scheduled with ``transaction.on_commit``:
a rolled-back write bumps nothing, and a reader can never see the bump before the data.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.db import models, transaction

from caching import entries, keys
from caching.connection import CacheUnavailable, breaker
from caching.metrics import INVALIDATIONS
from caching.registry import registry

logger = logging.getLogger("caching")

Targets = dict[str, set[str]]


def targets_for(model: type[models.Model], rows: Sequence[models.Model]) -> Targets:
    """Namespace → scopes made stale by ``rows`` of ``model`` changing."""
    targets: Targets = {}
    if not rows or model._meta.label not in registry.model_labels():
        return targets
    for manager in registry.all():
        scopes = manager.targets_for(model, rows)
        if scopes:
            targets[manager.namespace] = scopes
    return targets


def merge(*many: Targets) -> Targets:
    merged: Targets = defaultdict(set)
    for targets in many:
        for namespace, scopes in targets.items():
            merged[namespace] |= scopes
    return dict(merged)


def invalidate(targets: Targets, cause: str) -> None:
    """Bump the generations of ``targets`` now, all in one round trip."""
    if not targets:
        return
    gen_keys = [
        keys.generation_key(namespace, scope)
        for namespace, scopes in sorted(targets.items())
        for scope in sorted(scopes)
    ]
    try:
        entries.bump_generations(sorted(targets), gen_keys)
    except CacheUnavailable:
        # The entries may still be in Redis: bump the epoch before the next cache read.
        breaker.needs_epoch_bump = True
        logger.warning("invalidation of %s deferred to an epoch bump", ", ".join(sorted(targets)))
        return
    for namespace, scopes in targets.items():
        INVALIDATIONS.labels(namespace, cause).inc(len(scopes))


def invalidate_on_commit(targets: Targets, cause: str, using: str | None = None) -> None:
    if targets:
        transaction.on_commit(lambda: invalidate(targets, cause), using=using, robust=True)


def flush(namespaces: Iterable[str], cause: str = "flush") -> None:
    """Make every entry of ``namespaces`` a miss at once (a namespace-wide generation bump)."""
    invalidate({namespace: {keys.ALL} for namespace in namespaces}, cause)
