"""Invalidation cost against the number of live keys in the course-list namespace.

The namespace is filled with N distinct live entries (keys built by the list manager's own
``slot()``, i.e. ``caching.keys``, under the current epoch and generation; values in the
manager's wire format), then ``caching.invalidation.flush(["courses:list"])`` (the call
every course or enrollment write makes for the list) is timed many times. After each
timed flush the generation is set back, untimed, so every timed flush faces N live keys.
Requires ``django.setup()`` and no server running against this Redis.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.services import log

NAMESPACE = "courses:list"
DIFFICULTIES = (None, "beginner", "intermediate", "advanced")
LIMITS = range(1, 51)
KEY_TTL_MS = 600_000


def _params(index: int) -> dict[str, Any]:
    """The ``index``-th distinct (difficulty, limit, page) combination."""
    difficulty = DIFFICULTIES[index % 4]
    limit = LIMITS[(index // 4) % 50]
    page = index // 200 + 1
    return {"difficulty": difficulty, "page": page, "limit": limit}


def fill(client: Any, manager: Any, start: int, stop: int) -> None:
    from caching import entries, keys
    from caching.entries import Frame

    values = []  # per shard: an entry under the shard's current stamp
    for shard in keys.EVERY_SHARD:
        epoch = (client.get(keys.epoch_key(shard)) or b"0").decode()
        gen = (client.get(keys.generation_key(NAMESPACE, shard)) or b"0").decode()
        values.append(
            Frame(
                fresh_until_ms=entries.now_ms() + KEY_TTL_MS,
                stamp=f"{epoch}.{gen}.{gen}",
                data=b'[{"id":"000000000000000000000000000000000000","title":"x","enrolledCount":0}]',
                total=1,
            ).encode()
        )
    pipe = client.pipeline(transaction=False)
    for index in range(start, stop):
        slot = manager.slot(_params(index))
        pipe.set(slot.key, values[slot.shard], px=KEY_TTL_MS)
        if len(pipe) >= 10_000:
            pipe.execute()
    pipe.execute()


def live_count_sample(manager: Any, count: int, probes: int = 200) -> int:
    """How many of ``probes`` evenly spread filled entries a lookup finds fresh (the lookup
    neither leases nor counts: it only reports whether the entry is present)."""
    from caching import entries
    from caching.entries import PRESENT

    found = 0
    for i in range(probes):
        index = i * max(1, count // probes)
        (result,) = entries.lookup([manager.slot(_params(index))], [PRESENT], lease_ms=1)
        found += result.state == "hit"
    return found


def _generations(client: Any) -> list[tuple[str, bytes]]:
    """The namespace's generation in every shard, to put back after a timed flush."""
    from caching import keys

    gen_keys = [keys.generation_key(NAMESPACE, shard) for shard in keys.EVERY_SHARD]
    return [(key, client.get(key) or b"0") for key in gen_keys]


def _put_back(client: Any, saved: list[tuple[str, bytes]]) -> None:
    pipe = client.pipeline(transaction=False)
    for key, value in saved:
        pipe.set(key, value)
    pipe.execute()


def _time(client: Any, rounds: int) -> dict[str, Any]:
    from caching.invalidation import flush

    for _ in range(50):  # warm the code path and the connection
        saved = _generations(client)
        flush([NAMESPACE], cause="benchmark")
        _put_back(client, saved)
    samples = []
    for _ in range(rounds):
        saved = _generations(client)
        t0 = time.perf_counter_ns()
        flush([NAMESPACE], cause="benchmark")
        samples.append((time.perf_counter_ns() - t0) / 1000)
        _put_back(client, saved)
    ordered = sorted(samples)
    block = max(1, rounds // 10)
    blocks = [statistics.median(samples[i : i + block]) for i in range(0, rounds, block)]
    return {
        "rounds": rounds,
        # Medians of 10 consecutive blocks: how much the timing drifts within one size.
        "block_median_spread_us": max(blocks) - min(blocks),
        "median_us": statistics.median(samples),
        "p25_us": ordered[len(ordered) // 4],
        "p75_us": ordered[(3 * len(ordered)) // 4],
        "p99_us": ordered[int(len(ordered) * 0.99) - 1],
        "max_us": ordered[-1],
    }


def _unlink(client: Any, manager: Any, start: int, stop: int) -> None:
    pipe = client.pipeline(transaction=False)
    for index in range(start, stop):
        pipe.unlink(manager.slot(_params(index)).key)
        if len(pipe) >= 10_000:
            pipe.execute()
    pipe.execute()


def _orphans(client: Any, manager: Any, size: int) -> int:
    """Probe hits left after one real flush (0: every entry was orphaned at once)."""
    from caching.invalidation import flush

    saved = _generations(client)
    flush([NAMESPACE], cause="benchmark")
    left = live_count_sample(manager, size)
    _put_back(client, saved)
    return left


def keys_total(client: Any) -> int:
    """The keys in the cache's Redis: on a Redis Cluster, summed over the masters (a plain
    DBSIZE there asks one node, at random)."""
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        return int(client.dbsize(target_nodes=RedisCluster.PRIMARIES))
    return int(client.dbsize())


def measure(sizes: tuple[int, ...], rounds: int) -> list[dict[str, Any]]:
    """Time the flush at each size, smallest first, then the smallest again after the
    extra keys are deleted: the two smallest-size runs show the drift between runs."""
    from caching.connection import redis_client
    from caching.registry import registry

    manager = registry.get(NAMESPACE)
    client = redis_client()
    ordered_sizes = sorted(sizes)
    plan = [*ordered_sizes, ordered_sizes[0]] if len(ordered_sizes) > 1 else ordered_sizes
    results = []
    filled = 0
    for step, size in enumerate(plan):
        started = time.monotonic()
        if size > filled:
            fill(client, manager, filled, size)
        elif size < filled:
            _unlink(client, manager, size, filled)
        changed = time.monotonic() - started
        filled = size
        log(f"invalidation: {size:,} live list keys ready in {changed:.1f} s")
        row = {
            "keys": size,
            "repeat": step == len(plan) - 1 and len(plan) > 1,
            "redis_keys_total": keys_total(client),
            "live_probe_hits": live_count_sample(manager, size),
            "prepare_seconds": round(changed, 1),
            **_time(client, rounds),
        }
        row["live_probe_hits_after_flush"] = _orphans(client, manager, size)
        results.append(row)
    # Leave the namespace orphaned (the synthetic entries expire with their TTL).
    from caching.invalidation import flush

    flush([NAMESPACE], cause="benchmark")
    return results
