"""Every Redis key the project uses is built here, and only here.

Layout (``<ns>`` is a manager's namespace such as ``courses:list``; ``chainlearn`` is
``settings.CACHE_KEY_PREFIX``):

- ``chainlearn:epoch``: the global epoch, bumped after Redis was unreachable so nothing
  written before an outage is read after it.
- ``chainlearn:<ns>:gen:<scope>``: generation counters. Scope ``*`` is the whole namespace;
  other scopes are one course or one user. Invalidation is one ``INCR``.
- ``chainlearn:<ns>:v<version>:<scope>:<params>``: an entry. Its key is fixed; its value
  carries the stamp (``<epoch>.<namespace gen>.<scope gen>``) it was filled under, and the
  lookup script serves it only while that stamp is current. A bumped counter therefore
  turns every old entry into a miss at once, and the next fill overwrites it in place.
- ``<entry>:lease``: the single-fill lease of one entry.
- ``chainlearn:count:<name>``: a hash of live counts (``caching.counts``), one field per
  counted id, and ``~epoch``, the epoch they were written under;
  ``chainlearn:count-version:<name>``: the version of each id's latest count.
- ``chainlearn:ratelimit:<scope>:<ident>``: a fixed-window request counter.
- ``chainlearn:master``: the run id of the master the data were written on (Sentinel mode,
  ``caching.topology``).

The Lua scripts (``caching.scripts``) receive every key they touch in ``KEYS`` and never
build a key name themselves.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings

PREFIX: str = getattr(settings, "CACHE_KEY_PREFIX", "cache")
ALL = "*"
MAX_PARAM_CHARS = 200


def generation_prefix(namespace: str) -> str:
    """What every generation key of ``namespace`` starts with (the in-process tier tracks
    changes under it)."""
    return f"{PREFIX}:{namespace}:gen:"


def epoch_key() -> str:
    return f"{PREFIX}:epoch"


def generation_key(namespace: str, scope: str = ALL) -> str:
    return f"{generation_prefix(namespace)}{scope}"


def params(values: Mapping[str, object]) -> str:
    """Normalized parameter fragment: sorted ``name=value`` pairs, ``None`` as ``all``."""
    fragment = "&".join(
        f"{name}={'all' if value is None else value}" for name, value in sorted(values.items())
    )
    if len(fragment) > MAX_PARAM_CHARS:
        raise ValueError("cache key parameters too long")
    return fragment


def entry_key(namespace: str, version: int, scope: str, fragment: str) -> str:
    return f"{PREFIX}:{namespace}:v{version}:{scope}:{fragment}"


def lease_key(entry: str) -> str:
    return f"{entry}:lease"


def entry_pattern(namespace: str) -> str:
    """Glob over a namespace's entries (every version), for ``cache_stats`` only."""
    return f"{PREFIX}:{namespace}:v*"


def entry_scope(namespace: str, key: str) -> tuple[int, str] | None:
    """(version, scope) of an entry key of ``namespace``; None for a lease or another key."""
    head = f"{PREFIX}:{namespace}:v"
    if not key.startswith(head) or key.endswith(":lease"):
        return None
    version, _, rest = key[len(head) :].partition(":")
    scope, sep, _ = rest.partition(":")
    if not version.isdigit() or not sep:
        return None
    return int(version), scope


def counter_key(name: str) -> str:
    return f"{PREFIX}:count:{name}"


def counter_versions_key(name: str) -> str:
    return f"{PREFIX}:count-version:{name}"


def rate_limit_key(scope: str, ident: str) -> str:
    """Fixed-window request counter of one client (IP or user) for one rate-limited scope."""
    return f"{PREFIX}:ratelimit:{scope}:{ident}"


def master_key() -> str:
    """The run id of the Redis master the stored data were written on
    (``caching.topology``)."""
    return f"{PREFIX}:master"
