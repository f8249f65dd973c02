"""The benchmark's database (seeded once into a template, copied fresh for every run) and
the gunicorn server under test."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis
from psycopg import sql
from redis.cluster import ClusterNode, RedisCluster

from benchmarks.config import ROOT, Config


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def admin_connection(config: Config, dbname: str = "postgres") -> psycopg.Connection:
    pg = dict(config.pg)
    pg["dbname"] = dbname
    return psycopg.connect(**pg, autocommit=True)  # type: ignore[arg-type]


def seed_signature(config: Config) -> str:
    """What the seeded template depends on: sizes, seed, the migrations and the seeder."""
    digest = hashlib.sha256()
    files = [*sorted(ROOT.glob("*/migrations/*.py")), ROOT / "courses" / "seeding.py"]
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    s = config.seed
    return json.dumps(
        {
            "courses": s.courses,
            "users": s.users,
            "enrollments": s.enrollments,
            "submissions": s.submissions,
            "seed": s.seed,
            "code": digest.hexdigest()[:16],
        },
        sort_keys=True,
    )


def _manage(config: Config, dbname: str, *args: str, env: dict[str, str] | None = None) -> str:
    pg = config.pg
    run_env = dict(os.environ)
    run_env["DATABASE_URL"] = f"postgres://{pg['user']}@{pg['host']}:{pg['port']}/{dbname}"
    run_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=run_env,
        text=True,
        capture_output=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def copy_database(config: Config, source: str, target: str) -> None:
    """Replace database ``target`` with a copy of ``source`` (its sessions are ended)."""
    with admin_connection(config) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')


def prepare_database(config: Config) -> dict[str, object]:
    """Make the app database a fresh copy of the seeded template; seed it first if needed.

    The template (``<db>_seed_<sizes>_<seed>``) carries the seed signature as its comment: a rerun
    with the same sizes, seed, migrations and seeder copies it in seconds instead of
    seeding again (about 100 s at the default size). Returns what was done and how long.
    """
    signature = seed_signature(config)
    started = time.monotonic()
    with admin_connection(config) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [config.seed_db],
        ).fetchone()
        reseed = row is None or row[0] != signature
        if reseed:
            log(f"seeding template database {config.seed_db} (sizes changed or first run)")
            conn.execute(f'DROP DATABASE IF EXISTS "{config.seed_db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{config.seed_db}"')
    seed_output = ""
    if reseed:
        _manage(config, config.seed_db, "migrate", "--no-input", "-v", "0")
        seed_output = _manage(
            config,
            config.seed_db,
            "seed_demo",
            *config.seed.args(),
            "--reset",
            env={
                "DEMO_PASSWORD": secrets.token_urlsafe(12),
                "ADMIN_PASSWORD": secrets.token_urlsafe(12),
            },
        )
        with admin_connection(config, config.seed_db) as conn:
            conn.execute("VACUUM ANALYZE")
        with admin_connection(config) as conn:
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(config.seed_db), sql.Literal(signature)
                )
            )
    seed_seconds = time.monotonic() - started
    copy_started = time.monotonic()
    copy_database(config, config.seed_db, config.app_db)
    with admin_connection(config) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    with admin_connection(config, config.app_db) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in (
                "courses_course",
                "users_user",
                "courses_enrollment",
                "courses_quizsubmission",
                "rewards_reward",
                "credentials_credential",
            )
        }
    return {
        "reseeded": reseed,
        "seed_seconds": round(seed_seconds, 1),
        "copy_seconds": round(time.monotonic() - copy_started, 1),
        "counts": counts,
        "seed_output": seed_output,
    }


def cache_redis(config: Config) -> list[redis.Redis]:
    """Clients of the Redis servers that hold the cache, for the harness's own flushes and
    counts: the server at ``REDIS_URL``, or each master of the Redis Cluster, as redis-py's
    cluster client finds them from the seed nodes (replicas refuse writes and only repeat
    their master's)."""
    if not config.cluster_nodes:
        return [redis.Redis.from_url(config.redis_url)]
    addresses = (node.rpartition(":") for node in config.cluster_nodes)
    seeds = [ClusterNode(host, int(port)) for host, _, port in addresses]
    cluster = RedisCluster(startup_nodes=seeds, socket_timeout=2)
    try:
        return [redis.Redis(host=node.host, port=node.port) for node in cluster.get_primaries()]
    finally:
        cluster.close()


def flush_cache_redis(config: Config) -> None:
    """Empty the cache's Redis (every master, in cluster mode)."""
    for client in cache_redis(config):
        client.flushall()
        client.close()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# The server modes: (CACHE_ENABLED, CACHE_FAST_PATH, CACHE_L1, CACHE_CLUSTER_DIRECT, port
# offset). ``nofast`` is the cache without the hot reads' short-circuit in front of DRF
# (``chainlearn.hot_reads``); ``nol1`` is the cache without its in-process tier
# (``caching.local``): Redis on every read; ``routed`` (on a cluster) sends the scripts
# through redis-py's cluster client instead of each thread's own connection to a master.
MODES = {
    "cached": (True, True, True, True, 0),
    "uncached": (False, True, True, True, 1),
    "nofast": (True, False, True, True, 2),
    "nol1": (True, True, False, True, 3),
    "routed": (True, True, True, False, 4),
}


class Server:
    """gunicorn with the project's config module, production settings, one cache mode.

    ``root`` is the checkout whose code it runs (default this one; the write-heavy scenario
    also runs an older checkout's), with this checkout's interpreter and environment.
    """

    def __init__(
        self,
        config: Config,
        *,
        mode: str,
        secret_key: str,
        metrics_token: str,
        root: Path = ROOT,
    ) -> None:
        self.config = config
        self.mode = mode
        self.root = root
        self.cache_enabled, self.fast_path, self.l1, self.direct, offset = MODES[mode]
        # The servers run side by side (only one is under load at a time).
        self.port = config.app_port + offset
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.secret_key = secret_key
        self.metrics_token = metrics_token
        self.metrics_dir = tempfile.mkdtemp(prefix="prometheus-", dir=config.work_dir)
        tree = "" if root == ROOT else f"-{root.name}"
        self.log_path = config.work_dir / f"gunicorn-{mode}{tree}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.config.database_url,
            REDIS_URL=self.config.redis_url,
            DEBUG="false",
            SECRET_KEY=self.secret_key,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            METRICS_TOKEN=self.metrics_token,
            PROMETHEUS_MULTIPROC_DIR=self.metrics_dir,
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            WEB_WORKERS=str(self.config.web_workers),
            WEB_THREADS=str(self.config.web_threads),
            CACHE_ENABLED="true" if self.cache_enabled else "false",
            CACHE_FAST_PATH="true" if self.fast_path else "false",
            # A cluster has no in-process tier (the settings refuse CACHE_L1 there).
            CACHE_L1="true" if self.l1 and not self.config.cluster_nodes else "false",
            CACHE_CLUSTER_DIRECT="true" if self.direct else "false",
            CACHE_WARM_ON_START="true",
            LOG_LEVEL="WARNING",
            # The checkout's own packages before the editable install's (this checkout).
            PYTHONPATH=str(self.root),
        )
        env.pop("GUNICORN_ACCESS_LOG", None)
        return env

    def start(self) -> None:
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use")
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    "python:chainlearn.gunicorn_conf",
                    "chainlearn.wsgi",
                ],
                cwd=self.root,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log_path}")
            if port_open(self.port) and len(self.worker_pids()) >= self.config.web_workers:
                try:
                    with urllib.request.urlopen(f"{self.base_url}/health/live", timeout=5):
                        return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start in 60 s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def all_pids(self) -> list[int]:
        return [] if self.proc is None else [self.proc.pid, *self.worker_pids()]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        deadline = time.monotonic() + 15
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()
