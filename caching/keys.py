"""Every Redis key the project uses is built here, and only here.

Layout (``<ns>`` is a manager's namespace such as ``courses:list``):

- ``chainlearn:epoch``: global epoch; bumped after Redis was unreachable so nothing written
  before an outage is read after it.
- ``chainlearn:<ns>:gen:<scope>``: generation counters. Scope ``*`` is the whole namespace;
  other scopes are one course or one user. Invalidation is one ``INCR``.
- ``chainlearn:<ns>:v<version>:<scope>:<stamp>:<params>``: an entry. ``<stamp>`` is
  ``e<epoch>.<namespace gen>.<scope gen>``, so a bumped counter orphans every old entry at
  once (they expire by TTL) and a slow reader's late store lands on a key nobody reads.
- ``<entry>:lease``: the single-fill lease of one entry.
- ``chainlearn:stats:<ns>``: hash of hit/miss/stale/wait counts for ``cache_stats``.

The Lua scripts in ``caching/backend.py`` rebuild the entry and lease keys from
``entry_head`` and ``params`` with the same ``stamp`` format (the principal lookup also
appends a user id to ``generation_key(ns, "")`` and ``entry_head_prefix``);
``tests/test_cache_keys.py`` pins that they agree.
"""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "chainlearn"
ALL = "*"
MAX_PARAM_CHARS = 200


def epoch_key() -> str:
    return f"{PREFIX}:epoch"


def generation_key(namespace: str, scope: str = ALL) -> str:
    return f"{PREFIX}:{namespace}:gen:{scope}"


def entry_head_prefix(namespace: str, version: int) -> str:
    return f"{PREFIX}:{namespace}:v{version}:"


def entry_head(namespace: str, version: int, scope: str) -> str:
    return f"{entry_head_prefix(namespace, version)}{scope}:"


def stamp(epoch: int | str, namespace_gen: int | str, scope_gen: int | str) -> str:
    return f"e{epoch}.{namespace_gen}.{scope_gen}"


def params(values: Mapping[str, object]) -> str:
    """Normalized parameter fragment: sorted ``name=value`` pairs, ``None`` as ``all``."""
    fragment = "&".join(
        f"{name}={'all' if value is None else value}" for name, value in sorted(values.items())
    )
    if len(fragment) > MAX_PARAM_CHARS:
        raise ValueError("cache key parameters too long")
    return fragment


def entry_key(head: str, entry_stamp: str, fragment: str) -> str:
    return f"{head}{entry_stamp}:{fragment}"


def lease_key(key: str) -> str:
    return f"{key}:lease"


def stats_key(namespace: str) -> str:
    return f"{PREFIX}:stats:{namespace}"


def entry_pattern(namespace: str) -> str:
    """Glob over a namespace's entries, for the ``cache_stats`` command only."""
    return f"{PREFIX}:{namespace}:v*"


def rate_limit_key(scope: str, ident: str) -> str:
    """Fixed-window request counter of one client (IP or user) for one rate-limited scope."""
    return f"{PREFIX}:ratelimit:{scope}:{ident}"
