"""Benchmark settings: one dataclass, filled from the command line (``python -m benchmarks``)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class SeedSize:
    courses: int = 1000
    users: int = 10000
    enrollments: int = 100000
    submissions: int = 200000
    seed: int = 42

    def args(self) -> list[str]:
        return [
            "--courses",
            str(self.courses),
            "--users",
            str(self.users),
            "--enrollments",
            str(self.enrollments),
            "--submissions",
            str(self.submissions),
            "--seed",
            str(self.seed),
        ]


@dataclass(frozen=True)
class Config:
    database_url: str
    redis_url: str
    seed: SeedSize = field(default_factory=SeedSize)
    app_port: int = 28090
    web_workers: int = 2
    web_threads: int = 4
    duration: int = 10
    # Measured runs per endpoint and mode, alternating which mode goes first.
    rounds: int = 2
    warmup: int = 3
    connections: int = 32
    wrk_threads: int = 2
    token_users: int = 1000
    mixed_duration: int = 40
    mixed_connections: int = 16
    # Writes per second in the mixed workload, per kind.
    enroll_rate: float = 4.0
    submit_rate: float = 3.0
    claim_rate: float = 2.0
    admin_edit_rate: float = 0.5
    invalidation_sizes: tuple[int, ...] = (1000, 1_000_000)
    invalidation_rounds: int = 2000
    profile: bool = True
    profile_seconds: int = 8
    modes: tuple[str, ...] = ("cached", "uncached")
    # Endpoint names to measure (empty: all); see ``benchmarks.load.endpoints``.
    endpoints: tuple[str, ...] = ()
    # Before each measured run, wait (at most quiet_wait s, quiet_budget s in all) until the
    # machine is less than quiet_threshold busy.
    quiet_wait: float = 20.0
    quiet_budget: float = 120.0
    quiet_threshold: float = 0.25
    date: str | None = None
    state_dir: Path = Path(os.environ.get("STATE_DIR", "/tmp/chainlearn-bench"))
    # host:port of every node when the cache is on a Redis Cluster (``CACHE_REDIS_MODE=
    # cluster``, as ``run.sh --redis cluster`` sets): the harness's Redis flushes and counts
    # then go to each of its masters instead of to ``redis_url``.
    cluster_nodes: tuple[str, ...] = ()

    @property
    def work_dir(self) -> Path:
        path = self.state_dir / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def pg(self) -> dict[str, object]:
        parts = urlsplit(self.database_url)
        return {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
            "user": parts.username or "postgres",
            "dbname": parts.path.lstrip("/"),
        }

    @property
    def app_db(self) -> str:
        return str(self.pg["dbname"])

    @property
    def seed_db(self) -> str:
        s = self.seed
        return (
            f"{self.app_db}_seed_{s.courses}_{s.users}_{s.enrollments}_{s.submissions}_{s.seed}"
        )[:63]


def parser() -> argparse.ArgumentParser:
    """The options every scenario takes (a scenario may add its own and change defaults)."""
    d = Config(database_url="", redis_url="")
    s = SeedSize()
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Cached vs uncached load benchmark of the ChainLearn hot paths "
        "(see benchmarks/README.md). Expects DATABASE_URL and REDIS_URL of servers it may "
        "wipe: use benchmarks/run.sh, which starts its own.",
    )
    p.add_argument("--courses", type=int, default=s.courses)
    p.add_argument("--users", type=int, default=s.users)
    p.add_argument("--enrollments", type=int, default=s.enrollments)
    p.add_argument("--submissions", type=int, default=s.submissions)
    p.add_argument("--seed", type=int, default=s.seed)
    p.add_argument(
        "--port",
        type=int,
        default=d.app_port,
        help="cached server's port; the uncached one uses the next",
    )
    p.add_argument("--workers", type=int, default=d.web_workers)
    p.add_argument(
        "--threads", "--web-threads", type=int, default=d.web_threads, help="gthread threads/worker"
    )
    p.add_argument("--duration", type=int, default=d.duration, help="seconds per wrk run")
    p.add_argument(
        "--rounds",
        type=int,
        default=d.rounds,
        help="measured runs per endpoint and mode (order alternates; the report averages)",
    )
    p.add_argument("--warmup", type=int, default=d.warmup, help="seconds of warm-up per run")
    p.add_argument("--connections", type=int, default=d.connections)
    p.add_argument("--wrk-threads", type=int, default=d.wrk_threads)
    p.add_argument("--token-users", type=int, default=d.token_users)
    p.add_argument("--mixed-duration", type=int, default=d.mixed_duration)
    p.add_argument("--mixed-connections", type=int, default=d.mixed_connections)
    p.add_argument(
        "--invalidation-sizes",
        default=",".join(str(n) for n in d.invalidation_sizes),
        help="comma-separated live-key counts",
    )
    p.add_argument("--invalidation-rounds", type=int, default=d.invalidation_rounds)
    p.add_argument("--no-profile", action="store_true", help="skip py-spy on missed targets")
    p.add_argument(
        "--modes",
        default=",".join(d.modes),
        help="cached,uncached,nofast,nol1,routed (order is run order; nofast: "
        "CACHE_FAST_PATH=false; nol1: CACHE_L1=false; routed: CACHE_CLUSTER_DIRECT=false)",
    )
    p.add_argument(
        "--endpoints",
        default="",
        help="comma-separated endpoint names to measure (default all: health, list_anon, "
        "detail_anon, list_auth, progress, history, credentials)",
    )
    p.add_argument("--date", default=None, help="report name (default: today, UTC)")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=d.quiet_wait,
        help="max seconds to wait before each run for other load on the machine to stop "
        f"(total at most {d.quiet_budget:.0f} s; 0 disables)",
    )
    return p


def from_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> Config:
    """The settings of parsed options (``p`` reports a missing service URL)."""
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not database_url or not redis_url:
        p.error("DATABASE_URL and REDIS_URL must be set (benchmarks/run.sh sets them)")
    return Config(
        database_url=database_url,
        redis_url=redis_url,
        cluster_nodes=cluster_nodes(),
        seed=SeedSize(a.courses, a.users, a.enrollments, a.submissions, a.seed),
        app_port=a.port,
        web_workers=a.workers,
        web_threads=a.threads,
        duration=a.duration,
        rounds=a.rounds,
        warmup=a.warmup,
        connections=a.connections,
        wrk_threads=a.wrk_threads,
        token_users=a.token_users,
        mixed_duration=a.mixed_duration,
        mixed_connections=a.mixed_connections,
        invalidation_sizes=tuple(int(n) for n in a.invalidation_sizes.split(",") if n),
        invalidation_rounds=a.invalidation_rounds,
        profile=not a.no_profile,
        modes=tuple(m for m in a.modes.split(",") if m),
        endpoints=tuple(e for e in a.endpoints.split(",") if e),
        quiet_wait=a.quiet_wait,
        date=a.date,
    )


def cluster_nodes() -> tuple[str, ...]:
    """``CACHE_REDIS_NODES`` in cluster mode, else none (the cache is at ``REDIS_URL``)."""
    if os.environ.get("CACHE_REDIS_MODE") != "cluster":
        return ()
    return tuple(n.strip() for n in os.environ.get("CACHE_REDIS_NODES", "").split(",") if n.strip())


def parse(argv: list[str] | None = None) -> Config:
    p = parser()
    return from_args(p, p.parse_args(argv))
