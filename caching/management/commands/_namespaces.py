"""Argument helpers shared by the cache commands."""

from __future__ import annotations

from django.core.management.base import CommandError

from caching.registry import registry


def resolve(namespace: str | None, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The namespaces a command acts on, or a ``CommandError`` naming the valid ones."""
    choices = allowed if allowed is not None else tuple(registry.namespaces())
    if namespace is None:
        return choices
    if namespace not in choices:
        raise CommandError(
            f"Unknown or unsupported namespace {namespace!r}; choose one of: {', '.join(choices)}"
        )
    return (namespace,)
