"""Every Redis key the project uses is built here, and only here.

**Virtual shards.** The keys live in ``SHARDS`` virtual shards. A shard is a Redis Cluster
hash tag, ``{<n>}``: every key of shard ``n`` hashes to the same cluster slot, so one
script call can read and write all the keys of one entry (its counters, the entry, its
lease, its live counts) on one node, and each is declared in ``KEYS``. An entry's shard
is a hash of its scope (the course or user it is about), or, for a namespace without
scopes (the list pages), of its parameters: the entries of every namespace spread over
all the shards, and so over every master. The 16 tags hash to slots that the default
three-master slot split puts 6, 6 and 4 to a master. The layout is the same in every
mode (``caching.topology``); on one Redis the tags cost nothing.

Layout (``<ns>`` is a manager's namespace such as ``courses:list``; ``chainlearn`` is
``settings.CACHE_KEY_PREFIX``; ``{s}`` a shard's tag):

- ``chainlearn:epoch:{s}``: the shard's epoch, bumped when an invalidation of the shard
  may have been lost (Redis was unreachable, or a failover may have dropped it), so
  nothing the shard held before is read after it. Other shards keep their entries.
- ``chainlearn:<ns>:gen:{s}:<scope>``: generation counters. Scope ``*`` is the whole
  namespace, one counter per shard; other scopes are one course or one user, in the
  shard of that scope. Invalidating a scope is one ``INCR``; a whole namespace, one per
  shard (``SHARDS``, however many entries are live), pipelined.
- ``chainlearn:<ns>:v<version>:{s}:<scope>:<params>``: an entry. Its key is fixed; its
  value carries the stamp (``<epoch>.<namespace gen>.<scope gen>``, the shard's counters)
  it was filled under, and the lookup script serves it only while that stamp is current.
  A bumped counter therefore turns every old entry into a miss at once, and the next fill
  overwrites it in place.
- ``<entry>:lease``: the single-fill lease of one entry.
- ``chainlearn:count:<name>:{s}``: a hash of live counts (``caching.counts``), one field
  per counted id, and ``~epoch``, the shard's epoch they were written under;
  ``chainlearn:count-version:<name>:{s}``: the version of each id's latest count. Every
  shard has its own copy, beside the entries that show the counts.
- ``chainlearn:ratelimit:<scope>:<ident>``: a fixed-window request counter (one key per
  call; no tag, so the counters spread by their own hash).
- ``chainlearn:master:{s}``: the run id of the server the shard's data were written on
  (``caching.topology``).

The Lua scripts (``caching.scripts``) receive every key they touch in ``KEYS`` and never
build a key name themselves.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from django.conf import settings

PREFIX: str = getattr(settings, "CACHE_KEY_PREFIX", "cache")
ALL = "*"
MAX_PARAM_CHARS = 200
# How many virtual shards the keys spread over: at most this many masters share the
# cache's load. Part of the key layout, so a constant, not a setting: processes that
# disagreed on it would invalidate keys the others do not read.
SHARDS = 16
EVERY_SHARD = range(SHARDS)


def tag(shard: int) -> str:
    return f"{{{shard}}}"


def shard_of(scope: str, fragment: str) -> int:
    """The shard of an entry: by its scope, or by its parameters when it has none."""
    return zlib.crc32((fragment if scope == ALL else scope).encode()) % SHARDS


def generation_prefix(namespace: str) -> str:
    """What every generation key of ``namespace`` starts with (the in-process tier tracks
    changes under it)."""
    return f"{PREFIX}:{namespace}:gen:"


def epoch_prefix() -> str:
    return f"{PREFIX}:epoch:"


def epoch_key(shard: int) -> str:
    return f"{epoch_prefix()}{tag(shard)}"


def generation_key(namespace: str, shard: int, scope: str = ALL) -> str:
    return f"{generation_prefix(namespace)}{tag(shard)}:{scope}"


def params(values: Mapping[str, object]) -> str:
    """Normalized parameter fragment: sorted ``name=value`` pairs, ``None`` as ``all``."""
    fragment = "&".join(
        f"{name}={'all' if value is None else value}" for name, value in sorted(values.items())
    )
    if len(fragment) > MAX_PARAM_CHARS:
        raise ValueError("cache key parameters too long")
    return fragment


def entry_key(namespace: str, version: int, shard: int, scope: str, fragment: str) -> str:
    return f"{PREFIX}:{namespace}:v{version}:{tag(shard)}:{scope}:{fragment}"


def lease_key(entry: str) -> str:
    return f"{entry}:lease"


def entry_pattern(namespace: str) -> str:
    """Glob over a namespace's entries (every version), for ``cache_stats`` only."""
    return f"{PREFIX}:{namespace}:v*"


def entry_scope(namespace: str, key: str) -> tuple[int, int, str] | None:
    """(version, shard, scope) of an entry key of ``namespace``; None for a lease or
    another key."""
    head = f"{PREFIX}:{namespace}:v"
    if not key.startswith(head) or key.endswith(":lease"):
        return None
    version, _, rest = key[len(head) :].partition(":")
    tagged, _, rest = rest.partition(":")
    shard = tagged.removeprefix("{").removesuffix("}")
    scope, sep, _ = rest.partition(":")
    if not (version.isdigit() and shard.isdigit() and tagged == tag(int(shard)) and sep):
        return None
    return int(version), int(shard), scope


def counter_prefix() -> str:
    return f"{PREFIX}:count:"


def counter_key(name: str, shard: int) -> str:
    return f"{counter_prefix()}{name}:{tag(shard)}"


def counter_versions_key(name: str, shard: int) -> str:
    return f"{PREFIX}:count-version:{name}:{tag(shard)}"


def rate_limit_key(scope: str, ident: str) -> str:
    """Fixed-window request counter of one client (IP or user) for one rate-limited scope."""
    return f"{PREFIX}:ratelimit:{scope}:{ident}"


def master_key(shard: int) -> str:
    """The run id of the Redis master the shard's data were written on
    (``caching.topology``)."""
    return f"{PREFIX}:master:{tag(shard)}"
