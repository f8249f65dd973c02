"""Live counts: numbers inside cached entries that change far more often than the rest.

An entry that shows a count per record (a course's enrollments, say) would otherwise be
invalidated by every change to what it counts. Instead its manager declares a
``LiveCount``: the entry is stored with a hole where each record's count goes, its header
lists the counted ids, and the counts live apart in one Redis hash per ``Counter``
(``keys.counter_key``). The lookup script reads the entry and the counts of its ids in the
same round trip; the read fills the holes (``splice``). A change to the counted rows
rewrites their counts after it commits and leaves the entries alone.

Why a served count is exact (caching.md's rule: once a write's request has returned, no
read shows the value from before it):

- **One copy per shard.** An entry's counts are read in its own lookup, so each shard
  (``caching.keys``) keeps the counts its entries show; a refresh writes every shard's.
- **Versions from the database.** ``refresh`` draws a number from the PostgreSQL sequence
  ``caching_count_version`` and only then reads the counts, so a higher version's read
  began after a lower one's was drawn and saw every write the lower one saw. Redis keeps a
  count only if no higher version is there (``scripts.COUNT_SET``), so of two refreshes
  racing (a slow one, a fast one), the count left is the later-read one, whatever order
  they land in. A write's refresh runs after its commit and before its request returns:
  any count left afterwards was read after that commit.
- **A count missing in Redis** (first read, eviction, an older epoch) is read from the
  database by the request that needs it, the same way, and written back.
- **A lost refresh.** The counts hash holds the counts of one epoch (the first refresh
  under a new epoch empties it; the versions live in a hash of their own that outlives
  epochs), and a refresh writes nothing if the epoch changed since it read it before its
  database read.
  If Redis cannot be reached when a write commits, the process marks the shards it could
  not reach (``connection.mark_stale``) and bumps their epochs before it reads them again;
  every count stored there under the old epoch is then a miss and is read again from the
  database. If
  the database read itself fails after a commit, the epoch is bumped at once.
- **A restarted Redis** comes back without the counts (they load on demand) and with epoch
  0, so a refresh that read the old epoch writes nothing. One restored from a snapshot
  holds old counts under an old epoch; as for entries, the processes that found it
  unreachable bump the epoch before they use it again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, models

from caching import entries

# The database sequence every count's version is drawn from (migration 0001).
VERSION_SEQUENCE = "caching_count_version"
_HOLE = "\x00"
_HOLE_JSON = json.dumps(_HOLE).encode()  # how a hole is written before it is cut out


@dataclass(frozen=True)
class Counter:
    """A count per id kept live in Redis. ``load(ids)`` counts them in the database (an id
    it leaves out counts 0); a change to rows of ``model`` changes the counts of
    ``ids(rows)``."""

    name: str
    model: str
    ids: Callable[[Sequence[models.Model]], set[str]]
    load: Callable[[Collection[str]], Mapping[str, int]]


@dataclass(frozen=True)
class LiveCount:
    """Where a manager's values show ``counter``: the ``field`` of each record (each item of
    a page, or the value itself), counting the record's ``id_field``."""

    counter: Counter
    field: str
    id_field: str = "id"


def refresh(
    counter: Counter, ids: Collection[str], epochs: entries.Epochs, *, patient: bool = False
) -> tuple[dict[str, int], set[int]]:
    """Read the counts of ``ids`` from the database under a new version and write them to
    the counts of each shard in ``epochs`` unless its epoch is gone (see the module).
    Returns the counts, and the shards Redis could not be reached for. ``patient``: a
    write's refresh (``entries.set_counts``)."""
    version = next_version()
    counts = read(counter, ids)
    return counts, entries.set_counts(counter.name, epochs, version, counts, patient=patient)


def read(counter: Counter, ids: Collection[str]) -> dict[str, int]:
    loaded = counter.load(ids)
    return {ident: int(loaded.get(ident, 0)) for ident in ids}


def next_version() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT nextval('{VERSION_SEQUENCE}')")
        (version,) = cursor.fetchone()
    return int(version)


def cut(live: LiveCount, payload: Any) -> tuple[bytes, tuple[str, ...], list[bytes]]:
    """``payload`` (a page's items, or one record) as a JSON template for ``splice``: each
    ``%`` doubled and ``%b`` in place of each record's count (a NUL string first, which no
    database text holds); the counted ids and the counts taken out, in order."""
    records = payload if isinstance(payload, list) else [payload]
    holed = [{**record, live.field: _HOLE} for record in records]
    data = entries.dumps(holed if isinstance(payload, list) else holed[0])
    ids = tuple(str(record[live.id_field]) for record in records)
    if data.count(_HOLE_JSON) != len(ids):
        raise ValueError(f"{live.field}: a value other than the count is a NUL string")
    template = data.replace(b"%", b"%%").replace(_HOLE_JSON, b"%b")
    return template, ids, [b"%d" % record[live.field] for record in records]


def splice(template: bytes, counts: Sequence[bytes]) -> bytes:
    """Fill the holes of a ``cut`` template with ``counts`` (decimal bytes), in order: one
    ``%`` formatting in C, which also checks there are as many counts as holes."""
    return template % tuple(counts)
