"""Per-run counters from the servers' own statistics.

- SQL: ``pg_stat_statements`` is reset before each measured run and summed after it for
  the app database only (this module queries from the ``postgres`` database, so its own
  statements are never counted). Django's connection health check (``CONN_HEALTH_CHECKS``
  sends ``SELECT 1`` before the first query of a request) is reported apart.
- Redis: ``CONFIG RESETSTAT`` before, ``INFO commandstats`` after (summed over the
  masters when the cache is on a Redis Cluster). Redis counts the commands a Lua script
  runs as well as the ``EVALSHA`` itself, so both are reported: commands, and script calls
  (network round trips of the cache path).
- Hits and misses: the service's ``/metrics`` counters (``cache_hits_total``,
  ``cache_misses_total``, summed over workers), which also count requests served from the
  database while a worker's circuit breaker skipped Redis; the Redis stats hashes
  ``chainlearn:stats:<ns>`` add fill waits and stale-served counts.
- CPU: ``/proc`` jiffies of the gunicorn processes, the PostgreSQL and Redis servers, wrk
  (a child of this process) and everything else on the machine ("foreign": other work
  that shared the 2 cores during the run).
- Cache events in the gunicorn log during the run (Redis timeouts, breaker, epoch bumps).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from benchmarks.config import Config
from benchmarks.services import admin_connection, cache_redis

# Used when the registry cannot be read; normally every registered manager is followed.
NAMESPACES = (
    "courses:list",
    "courses:detail",
    "users:progress",
    "rewards:history",
    "credentials:list",
)
PING = "SELECT $1"
# Commands the harness sends itself, and a replica's replication traffic to its master
# (REPLCONF ACK every second on a Sentinel setup or a cluster). A Sentinel's PING and
# PUBLISH are left in (a PING could as well be the application's): a few per second.
OWN_REDIS_COMMANDS = {"info", "config|resetstat", "config", "replconf", "psync", "sync"}
SCRIPT_COMMANDS = {"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall"}
METRIC = re.compile(r"^cache_(hits|misses|errors|stale_served|fill_waits)_total\{([^}]*)\} (\S+)$")
# /metrics counter → the name the report uses.
KINDS = {"stale_served": "stale", "fill_waits": "waits"}
TICK = os.sysconf("SC_CLK_TCK")
LOG_EVENTS = {
    "redis_errors": re.compile(r"cache \w+ failed for"),
    "breaker_opened": re.compile(r"circuit breaker opened"),
    "epoch_bumps": re.compile(r"cache epoch bumped"),
}


def _jiffies(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _busy() -> int:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal
    return values[0] + values[1] + values[2] + values[5] + values[6] + values[7]


def machine_busy_share(seconds: float) -> float:
    """Share of all cores busy over the next ``seconds``."""
    before, started = _busy(), time.monotonic()
    time.sleep(seconds)
    used = (_busy() - before) / TICK
    return used / (time.monotonic() - started) / (os.cpu_count() or 2)


class CpuMeter:
    """CPU seconds used during a run, by who used them."""

    def __init__(self, state_dir: Path) -> None:
        self.postmaster = _pidfile(state_dir / "pg" / "postmaster.pid")
        self.redis = _pidfile(state_dir / "redis.pid")
        # The nodes of the Redis Cluster that run.sh --redis cluster starts, if it runs.
        self.cluster = [
            pid for path in (state_dir / "cluster").glob("redis-*.pid") if (pid := _pidfile(path))
        ]
        self.server_pids: list[int] = []
        self.worker_pids: list[int] = []
        self.others: dict[str, list[int]] = {}
        self._start: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        groups = {"gunicorn": self.server_pids, "postgres": [], "redis": [], **self.others}
        if self.postmaster:
            groups["postgres"] = [self.postmaster, *_children(self.postmaster)]
        groups["redis"] = [pid for pid in (self.redis, *self.cluster) if pid]
        sample = {name: sum(_jiffies(p) for p in pids) / TICK for name, pids in groups.items()}
        for pid in self.worker_pids:
            sample[f"worker:{pid}"] = _jiffies(pid) / TICK
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        sample["bench"] = me.ru_utime + me.ru_stime
        sample["wrk"] = kids.ru_utime + kids.ru_stime
        sample["total"] = _busy() / TICK
        sample["wall"] = time.monotonic()
        return sample

    def start(
        self,
        server_pids: list[int],
        worker_pids: list[int],
        others: dict[str, list[int]] | None = None,
    ) -> None:
        """Start counting; ``others`` names more processes to count apart (not foreign)."""
        self.server_pids = server_pids
        self.worker_pids = worker_pids
        self.others = others or {}
        self._start = self._sample()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        # Backends that exited during the run lose their time; clamp at zero.
        delta = {k: max(0.0, end[k] - self._start.get(k, 0.0)) for k in end}
        known = sum(
            delta[k] for k in ("gunicorn", "postgres", "redis", "bench", "wrk", *self.others)
        )
        delta["foreign"] = max(0.0, delta["total"] - known)
        workers = [delta[f"worker:{pid}"] for pid in self.worker_pids]
        # 1.0: the workers shared the load evenly; near 0: one worker served (almost) all.
        delta["worker_balance"] = min(workers) / max(workers) if workers and max(workers) else 1.0
        return delta


@dataclass
class Snapshot:
    sql_calls: int = 0
    sql_pings: int = 0
    sql_top: list[tuple[int, str]] = field(default_factory=list)
    redis_calls: int = 0
    redis_scripts: int = 0
    redis_by_command: dict[str, int] = field(default_factory=dict)
    cache: dict[str, dict[str, int]] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    log_events: dict[str, int] = field(default_factory=dict)


def metrics_text(base_url: str, token: str) -> str:
    """The service's /metrics (every gunicorn worker's counters), as Prometheus text."""
    request = urllib.request.Request(
        f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def scrape(base_url: str, token: str) -> dict[str, dict[str, float]]:
    """``{namespace: {hits, misses, errors, stale, waits}}`` from the service's /metrics."""
    out: dict[str, dict[str, float]] = {}
    for line in metrics_text(base_url, token).splitlines():
        match = METRIC.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
        counts = out.setdefault(
            labels["namespace"], dict.fromkeys(("hits", "misses", "errors", "stale", "waits"), 0.0)
        )
        counts[KINDS.get(match[1], match[1])] += float(match[3])
    return out


class Collector:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.pg: psycopg.Connection = admin_connection(config)
        self.pg.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.redis: list[redis.Redis] = []
        self.cpu = CpuMeter(config.state_dir)
        self._metrics: dict[str, dict[str, float]] = {}
        self._log_offset = 0
        self.server: Any = None
        self.namespaces = namespaces()

    def attach(self, server: Any) -> None:
        """Measure against this running server (its workers, /metrics and log)."""
        self.server = server

    def close(self) -> None:
        self.pg.close()
        self._close_redis()

    def _close_redis(self) -> None:
        for client in self.redis:
            client.close()
        self.redis = []

    def reset(self) -> None:
        self._metrics = scrape(self.server.base_url, self.server.metrics_token)
        self._log_offset = self._log_size()
        self.pg.execute("SELECT pg_stat_statements_reset()")
        # The cache's servers, asked again each run (a cluster's masters could change).
        self._close_redis()
        self.redis = cache_redis(self.config)
        for client in self.redis:
            client.config_resetstat()
        self.cpu.start(self.server.all_pids(), self.server.worker_pids())

    def _log_size(self) -> int:
        try:
            return int(self.server.log_path.stat().st_size)
        except OSError:
            return 0

    def collect(self) -> Snapshot:
        snap = Snapshot()
        snap.cpu = self.cpu.stop()
        rows = self.pg.execute(
            """
            SELECT s.calls, s.query FROM pg_stat_statements s
            JOIN pg_database d ON d.oid = s.dbid
            WHERE d.datname = %s ORDER BY s.calls DESC
            """,
            [self.config.app_db],
        ).fetchall()
        for calls, query in rows:
            if query.strip() == PING:
                snap.sql_pings += calls
            else:
                snap.sql_calls += calls
                snap.sql_top.append((calls, " ".join(query.split())[:160]))
        for client in self.redis:
            stats: dict[str, Any] = client.info("commandstats")
            for name, values in stats.items():
                command = name.removeprefix("cmdstat_")
                if command in OWN_REDIS_COMMANDS:
                    continue
                calls = int(values["calls"])
                snap.redis_by_command[command] = snap.redis_by_command.get(command, 0) + calls
                snap.redis_calls += calls
                if command in SCRIPT_COMMANDS:
                    snap.redis_scripts += calls
        now = scrape(self.server.base_url, self.server.metrics_token)
        for ns, counts in now.items():
            before_m = self._metrics.get(ns, {})
            snap.metrics[ns] = {k: v - before_m.get(k, 0.0) for k, v in counts.items()}
        # The cache's own counts are the /metrics counters (one rule, counted once).
        for ns in self.namespaces:
            seen = snap.metrics.get(ns, {})
            snap.cache[ns] = {k: int(seen.get(k, 0)) for k in ("hits", "misses", "stale", "waits")}
        with open(self.server.log_path, "rb") as log:
            log.seek(self._log_offset)
            text = log.read().decode(errors="replace")
        snap.log_events = {k: len(p.findall(text)) for k, p in LOG_EVENTS.items()}
        return snap


def namespaces() -> tuple[str, ...]:
    """Every cache namespace the project registers (Django must be set up)."""
    try:
        from caching.registry import registry

        return tuple(registry.namespaces())
    except Exception:
        return NAMESPACES


def hit_rate(counts: dict[str, Any]) -> float | None:
    seen = counts.get("hits", 0) + counts.get("misses", 0)
    return counts.get("hits", 0) / seen if seen else None
