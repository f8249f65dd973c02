"""Assertion and data helpers shared by several test modules."""

from __future__ import annotations

from typing import Any

from django.test import Client

from courses.models import Course, Enrollment, Module, Quiz, QuizSubmission

ERROR_KEYS = {"statusCode", "error", "message"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the contract's error envelope with ``status`` and ``code``."""
    assert response.status_code == status, response.content
    body = response.json()
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"details"}
    assert body["statusCode"] == status
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


def assert_success(response: Any, status: int = 200) -> Any:
    """The response is a success envelope with ``status``; returns its ``data``."""
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is True
    assert set(body["meta"]) == {"version", "timestamp", "requestId"}
    return body["data"]


def row_counts() -> dict[str, int]:
    """Row counts of the course-side tables."""
    return {
        model.__name__: model.objects.count()
        for model in (Course, Module, Quiz, Enrollment, QuizSubmission)
    }


def management(prefix: str, total: int, initial: int = 0, maximum: int = 1000) -> dict:
    """An admin inline formset's management-form fields."""
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": str(maximum),
    }


class CacheCounts:
    """This process's cache counters for one namespace (``/metrics``' own), counted from
    when the object was made: ``counts.now()`` → ``{"hits", "misses", "stale", "waits",
    "fills"}`` (fills: loader runs that filled an entry)."""

    NAMES = {
        "hits": "cache_hits_total",
        "misses": "cache_misses_total",
        "stale": "cache_stale_served_total",
        "waits": "cache_fill_waits_total",
        "fills": "cache_fill_seconds_count",
    }

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        from prometheus_client import REGISTRY

        labels = {"namespace": self.namespace}
        return {
            kind: REGISTRY.get_sample_value(name, labels) or 0.0
            for kind, name in self.NAMES.items()
        }

    def now(self) -> dict[str, int]:
        current = self._read()
        return {kind: int(current[kind] - self.start[kind]) for kind in self.NAMES}


def revalidated(client: Client, path: str) -> Any:
    """The ``data`` of ``path``, read as a browser would: revalidating with the ETag of this
    client's last read of it, and reusing that body on a 304. A test of an invalidation
    matrix row that reads through this also checks that the write changed the ETag of
    each read it changed (a wrong 304 would show the old data)."""
    last: dict[str, tuple[str, Any] | None] = client.__dict__.setdefault("etags", {})
    sent = last.get(path)
    response = client.get(path, **({"HTTP_IF_NONE_MATCH": sent[0]} if sent else {}))
    if response.status_code == 304:
        assert sent is not None and response["ETag"] == sent[0]
        return sent[1]
    assert response.status_code == 200, response.content
    body = response.json()["data"]
    etag = response.get("ETag")
    assert sent is None or etag != sent[0], "a 200 for the ETag the client already had"
    last[path] = (etag, body) if etag else None
    return body


def redis_keys(client: Any, pattern: str) -> list[bytes]:
    """The keys matching ``pattern``, sorted; on a Redis Cluster, from every master (where
    ``KEYS`` would ask one node)."""
    return sorted(client.scan_iter(match=pattern, count=1000))


# Commands a master receives without the application sending them: a replica's REPLCONF
# ACK every second, a Sentinel's PING, INFO and hello PUBLISH, and the counting itself.
NOT_FROM_THE_APPLICATION = frozenset(
    {"replconf", "psync", "sync", "ping", "publish", "info", "config|resetstat"}
)


def command_calls(client: Any) -> dict[str, int]:
    """Calls per command the application made since the last ``reset_command_stats``
    (``INFO commandstats``, less ``NOT_FROM_THE_APPLICATION``); on a Redis Cluster, summed
    over the masters."""
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        per_node = client.info("commandstats", target_nodes=RedisCluster.PRIMARIES).values()
    else:
        per_node = [client.info("commandstats")]
    calls: dict[str, int] = {}
    for stats in per_node:
        for name, value in stats.items():
            command = name.removeprefix("cmdstat_")
            if command in NOT_FROM_THE_APPLICATION:
                continue
            calls[command] = calls.get(command, 0) + int(value["calls"])
    return calls


def reset_command_stats(client: Any) -> None:
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        client.config_resetstat(target_nodes=RedisCluster.PRIMARIES)
    else:
        client.config_resetstat()


def key_count(client: Any) -> int:
    """How many keys Redis holds (``DBSIZE``); on a Redis Cluster, over the masters."""
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        return int(client.dbsize(target_nodes=RedisCluster.PRIMARIES))  # summed
    return int(client.dbsize())
