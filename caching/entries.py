"""Operations on cache entries: look up, store, release, and bump generations.

An entry's value is framed as ``<fresh-until ms> <stamp> <total>\\n<JSON>``: the scripts
read its expiry and stamp from the first line, and a hit hands the JSON part (``data``)
and the page total (``total``, ``-`` when the value is not a page) to the response as
they are, without searching or editing JSON bytes.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from caching import keys
from caching.connection import guarded
from caching.scripts import LOOKUP_SCRIPT, RELEASE_SCRIPT, STORE_SCRIPT

LEASE = "lease"
PRESENT = "present"


@dataclass(frozen=True)
class Slot:
    """Where one entry lives: the counters its stamp is made of, its key and its lease."""

    namespace: str
    scope_gen_key: str
    key: str

    def key_list(self) -> list[str]:
        """The entry's five keys, in the order the scripts take them."""
        return [
            keys.epoch_key(),
            keys.generation_key(self.namespace),
            self.scope_gen_key,
            self.key,
            keys.lease_key(self.key),
        ]


@dataclass(frozen=True)
class Frame:
    """A stored entry, split: when it stops being fresh, its stamp, its JSON, its total."""

    fresh_until_ms: int
    stamp: str
    data: bytes
    total: int | None

    def tag(self, key: str) -> str:
        """Names this fill of entry ``key``: its key, stamp and expiry (unique per fill), so
        two reads with the same tag served the same bytes. Not a hash of the payload."""
        name = f"{key}|{self.stamp}|{self.fresh_until_ms}".encode()
        return hashlib.blake2b(name, digest_size=12).hexdigest()

    def encode(self) -> bytes:
        total = "-" if self.total is None else str(self.total)
        return f"{self.fresh_until_ms} {self.stamp} {total}\n".encode() + self.data

    @staticmethod
    def stamp_in(head: bytes) -> bytes | None:
        """The stamp in the first bytes of a stored value (None if they are not a frame)."""
        fields = head.split(b" ", 2)
        return fields[1] if len(fields) == 3 else None

    @classmethod
    def decode(cls, raw: bytes) -> Frame:
        head, _, data = raw.partition(b"\n")
        fresh_until, stamp, total = head.split(b" ")
        return cls(
            fresh_until_ms=int(fresh_until),
            stamp=stamp.decode(),
            data=data,
            total=None if total == b"-" else int(total),
        )


@dataclass(frozen=True)
class Found:
    """One entry's lookup: its state, the stamp current at the lookup, and its frame if
    present. States: hit, stale, refresh (served; this caller reloads), fill (missing;
    this caller loads), wait (missing; another caller loads), absent (missing, not leased)."""

    state: str
    stamp: str
    frame: Frame | None
    token: str


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


def lookup(slots: Sequence[Slot], modes: Sequence[str], *, lease_ms: int) -> list[Found]:
    """Look up ``slots`` in one round trip (``scripts.LOOKUP``); one ``Found`` per entry
    read, fewer when an entry in mode ``PRESENT`` was absent."""
    token = new_lease_token()
    script_keys = [key for slot in slots for key in slot.key_list()]
    replies = guarded(
        [slot.namespace for slot in slots],
        "lookup",
        lambda c: LOOKUP_SCRIPT(c, script_keys, [now_ms(), lease_ms, token, *modes]),
    )
    return [
        Found(
            state=state.decode(),
            stamp=stamp.decode(),
            frame=Frame.decode(raw) if raw else None,
            token=token,
        )
        for state, stamp, raw in replies
    ]


def store(slot: Slot, found: Found, frame: Frame, ttl_ms: int) -> bool:
    """Store ``frame`` if the stamp is still ``found.stamp``, and release the lease."""
    stored = guarded(
        slot.namespace,
        "store",
        lambda c: STORE_SCRIPT(
            c, slot.key_list(), [found.stamp, frame.encode(), ttl_ms, found.token]
        ),
    )
    return bool(stored)


def release(slot: Slot, found: Found) -> None:
    guarded(
        slot.namespace,
        "release",
        lambda c: RELEASE_SCRIPT(c, [keys.lease_key(slot.key)], [found.token]),
    )


def bump_generations(namespaces: Sequence[str], gen_keys: Iterable[str]) -> None:
    """``INCR`` each generation key in one round trip (the O(1) invalidation)."""

    def run(client) -> None:  # type: ignore[no-untyped-def]
        pipe = client.pipeline(transaction=False)
        for key in gen_keys:
            pipe.incr(key)
        pipe.execute()

    guarded(namespaces, "invalidate", run, respect_breaker=False)


def bump_epoch() -> None:
    """Make every entry of every namespace a miss at once (one ``INCR``)."""
    guarded("*", "invalidate", lambda c: c.incr(keys.epoch_key()), respect_breaker=False)
