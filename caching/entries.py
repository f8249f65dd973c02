"""Operations on cache entries: look up, store, release, and bump generations.

An entry's value is framed as ``<fresh-until ms> <stamp> <total>[ <ids>]\\n<JSON>``: the
scripts read its expiry and stamp from the first line, and a hit hands the JSON part
(``data``) and the page total (``total``, ``-`` when the value is not a page) to the
response as they are, without searching or editing JSON bytes. An entry with live counts
(``caching.counts``) lists the ids they count, and its JSON is a ``%`` template with a
``%b`` where each count goes; the lookup returns the counts beside it.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from django.conf import settings

from caching import keys, local
from caching.connection import fan_out, guarded, mark_stale
from caching.scripts import COUNT_SET, LOOKUP_SCRIPT, RELEASE_SCRIPT, STORE_SCRIPT

LEASE = "lease"
Epochs = dict[int, str]  # shard -> its epoch
PRESENT = "present"


@dataclass(frozen=True)
class Slot:
    """Where one entry lives: its shard, the counters its stamp is made of, its key and its
    lease, and the hash of the live counts it shows, if any (all in the shard)."""

    namespace: str
    shard: int
    scope_gen_key: str
    key: str
    counter_key: str | None = None
    local: bool = False  # may be held in the in-process tier (``caching.local``)

    def key_list(self) -> list[str]:
        """The entry's keys, in the order the scripts take them (five, or six with counts)."""
        listed = [
            keys.epoch_key(self.shard),
            keys.generation_key(self.namespace, self.shard),
            self.scope_gen_key,
            self.key,
            keys.lease_key(self.key),
        ]
        return listed if self.counter_key is None else [*listed, self.counter_key]

    def validity_keys(self) -> tuple[str, ...]:
        """The keys whose change ends a held copy's validity: the three counters of its stamp,
        and its counts hash. (Its own key changes only by a fill under a new stamp, or by
        expiry, which the copy's own expiry covers.)"""
        listed = (
            keys.epoch_key(self.shard),
            keys.generation_key(self.namespace, self.shard),
            self.scope_gen_key,
        )
        return listed if self.counter_key is None else (*listed, self.counter_key)


@dataclass(frozen=True)
class Frame:
    """A stored entry, split: when it stops being fresh, its stamp, its JSON, its total,
    and the ids whose live counts fill its JSON's holes (``counted``: comma-separated, in
    order; split only when a count must be read from the database)."""

    fresh_until_ms: int
    stamp: str
    data: bytes
    total: int | None
    counted: bytes = b""

    @property
    def ids(self) -> list[str]:
        return self.counted.decode().split(",") if self.counted else []

    def tag(self, key: str, counts: Sequence[bytes] = ()) -> str:
        """Names this fill of entry ``key`` with ``counts`` in its holes: its key, stamp and
        expiry (unique per fill) and the counts, so two reads with the same tag served the
        same bytes. Not a hash of the payload."""
        name = f"{key}|{self.stamp}|{self.fresh_until_ms}|".encode() + b",".join(counts)
        return hashlib.blake2b(name, digest_size=12).hexdigest()

    def encode(self) -> bytes:
        total = "-" if self.total is None else str(self.total)
        head = f"{self.fresh_until_ms} {self.stamp} {total}".encode()
        counted = b" " + self.counted if self.counted else b""
        return head + counted + b"\n" + self.data

    @staticmethod
    def stamp_in(head: bytes) -> bytes | None:
        """The stamp in the first bytes of a stored value (None if they are not a frame)."""
        fields = head.split(b" ", 2)
        return fields[1] if len(fields) == 3 else None

    @classmethod
    def decode(cls, raw: bytes) -> Frame:
        head, _, data = raw.partition(b"\n")
        fresh_until, stamp, total, *counted = head.split(b" ")
        return cls(
            fresh_until_ms=int(fresh_until),
            stamp=stamp.decode(),
            data=data,
            total=None if total == b"-" else int(total),
            counted=counted[0] if counted else b"",
        )


@dataclass(frozen=True)
class Found:
    """One entry's lookup: its state, the stamp current at the lookup, and its frame if
    present. States: hit, stale, refresh (served; this caller reloads), fill (missing;
    this caller loads), wait (missing; another caller loads), absent (missing, not leased).
    ``counts``: the live counts of the frame's ids as decimal bytes, None where Redis had
    none under the current epoch (all None: ``counts`` is None)."""

    state: str
    stamp: str
    frame: Frame | None
    token: str
    counts: list[bytes | None] | None = None

    @property
    def epoch(self) -> str:
        return self.stamp.partition(".")[0]

    def is_current_hit(self) -> bool:
        """A fresh frame under the current stamp, with all its counts: what may be held."""
        return (
            self.state == "hit"
            and self.frame is not None
            and self.frame.stamp == self.stamp
            and (not self.frame.counted or (self.counts is not None and None not in self.counts))
        )


def stamp(counters: Sequence[bytes | None]) -> bytes:
    """The stamp the scripts build (``scripts.STAMP``) from the epoch, namespace generation
    and scope generation values (a missing counter is 0)."""
    return b".".join(value or b"0" for value in counters)


def new_lease_token() -> str:
    """Tells a lease's holder from others; unique, not secret, so drawn without the system
    call of ``secrets`` (``random`` reseeds itself in each forked worker)."""
    return f"{random.getrandbits(64):016x}"


def now_ms() -> int:
    return int(time.time() * 1000)


def lookup(
    slots: Sequence[Slot],
    modes: Sequence[str],
    *,
    lease_ms: int,
    since: Sequence[str] | None = None,
) -> list[Found]:
    """Look up ``slots`` in one round trip (``scripts.LOOKUP``); one ``Found`` per entry
    read, fewer when an entry in mode ``PRESENT`` was absent. ``since``: per entry, the
    stamp a waiter saw when it began waiting for a fill ('' for none).

    When every slot may be held in-process and all are, fresh and confirmed by the
    invalidation stream, they are served from there as hits with no round trip
    (``caching.local``); a fresh hit from Redis is held for the next read."""
    local_slots = since is None and all(slot.local for slot in slots)
    if local_slots:
        held = local.serve(slots)
        if held is not None:
            return [Found("hit", h.frame.stamp, h.frame, "", h.counts) for h in held]
    mark = local.mark() if local_slots else None
    token = new_lease_token()
    script_keys: list[str] = []
    args: list[object] = [now_ms(), lease_ms, token]
    for index, slot in enumerate(slots):
        slot_keys = slot.key_list()
        script_keys += slot_keys
        args += [modes[index], len(slot_keys), since[index] if since else ""]
    replies = guarded(
        [slot.namespace for slot in slots],
        "lookup",
        lambda c: LOOKUP_SCRIPT(c, script_keys, args),
        shards={slot.shard for slot in slots},
    )
    found = [
        Found(
            state=state.decode(),
            stamp=stamp.decode(),
            frame=Frame.decode(raw) if raw else None,
            token=token,
            counts=_counts(counts),
        )
        for state, stamp, raw, counts in replies
    ]
    if mark is not None and len(found) == len(slots):
        for slot, one in zip(slots, found, strict=True):
            if one.frame is not None and one.is_current_hit():
                kept = local.Held(slot.namespace, one.frame, one.counts, slot.validity_keys())
                local.keep(slot.key, kept, mark)
    return found


def store(slot: Slot, found: Found, frame: Frame, ttl_ms: int) -> bool:
    """Store ``frame`` if the stamp is still ``found.stamp``, and release the lease."""
    stored = guarded(
        slot.namespace,
        "store",
        lambda c: STORE_SCRIPT(
            c, slot.key_list(), [found.stamp, frame.encode(), ttl_ms, found.token]
        ),
        shards=[slot.shard],
    )
    return bool(stored)


def release(slot: Slot, found: Found) -> None:
    guarded(
        slot.namespace,
        "release",
        lambda c: RELEASE_SCRIPT(c, [keys.lease_key(slot.key)], [found.token]),
        shards=[slot.shard],
    )


def bump_generations(
    namespaces: Sequence[str], gen_keys: Iterable[tuple[int, str]], *, read_epochs: bool
) -> tuple[Epochs, set[int]]:
    """``INCR`` each (shard, generation key), pipelined per node (the O(1) invalidation),
    and with ``read_epochs`` read every shard's epoch too (a count refresh writes every
    shard's counts under it). Returns the epochs of the shards reached, and the shards
    whose bumps may not have landed: those are marked for an epoch bump
    (``connection.mark_stale``)."""
    commands: dict[int, list[tuple[str, ...]]] = defaultdict(list)
    for shard, key in gen_keys:
        commands[shard].append(("INCR", key))
    bumped = set(commands)
    if read_epochs:
        for shard in keys.EVERY_SHARD:
            commands[shard].append(("GET", keys.epoch_key(shard)))
    replies, failed = fan_out(namespaces, "invalidate", commands, patience=patience())
    lost = failed & bumped
    mark_stale(lost)
    if not read_epochs:
        return {}, lost
    return {shard: (answers[-1] or b"0").decode() for shard, answers in replies.items()}, lost


def _counts(reply: bytes | list[bytes | None] | None) -> list[bytes | None] | None:
    """A lookup's counts reply: all counts joined by ',', or a list with gaps, or none."""
    if isinstance(reply, bytes):
        return list(reply.split(b","))
    return reply or None


def set_counts(
    name: str,
    epochs: Epochs,
    version: int,
    counts: Mapping[str, int | bytes],
    *,
    patient: bool = False,
) -> set[int]:
    """Write live ``counts`` of counter ``name``, read from the database under ``version``,
    into the counter hash of each shard in ``epochs`` (with the epoch read there before the
    database read), unless newer ones are there (``scripts.COUNT_SET``). Returns the shards
    that could not be reached; a shard whose epoch moved meanwhile writes nothing.
    ``patient``: a write's refresh, which waits out a failover (``patience``)."""
    pairs: list[object] = []
    for ident, count in counts.items():
        pairs += [ident, count]
    commands = {
        shard: [
            (
                "EVAL",
                COUNT_SET,
                3,
                keys.epoch_key(shard),
                keys.counter_key(name, shard),
                keys.counter_versions_key(name, shard),
                epoch,
                version,
                *pairs,
            )
        ]
        for shard, epoch in epochs.items()
    }
    _, failed = fan_out(name, "count", commands, patience=patience() if patient else 0.0)
    return failed


def bump_epoch() -> None:
    """Make every entry of every namespace a miss at once (one ``INCR`` per shard); a
    shard not reached is bumped before its next read."""
    commands = {shard: [("INCR", keys.epoch_key(shard))] for shard in keys.EVERY_SHARD}
    _, failed = fan_out("*", "invalidate", commands, patience=patience())
    mark_stale(failed)


def patience() -> float:
    """Seconds an invalidation keeps trying while Redis fails over
    (``CACHE_INVALIDATION_PATIENCE_MS``)."""
    return settings.CACHE_INVALIDATION_PATIENCE_MS / 1000


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON, the form every cached payload is stored and served in."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
