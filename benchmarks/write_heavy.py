"""Write-heavy scenario (issue 12, point 3): two hot reads under a steady stream of
enrollments, optionally on an older checkout's server and this one's in the same run.

Entry point: ``bash benchmarks/run.sh --write-heavy [options]`` (``python -m
benchmarks.write_heavy`` with the harness's services; the harness's options, here with
``--duration 15 --connections 16 --web-threads 16`` by default, plus ``--rates`` and
``--compare-root``). For each endpoint and each target enrollment rate:

- ``list``: wrk reads ``GET /api/v1/courses?page=1&limit=20`` (anonymous) while the
  enrollments are spread over the 20 courses of that page;
- ``detail``: wrk reads ``GET /api/v1/courses/<id>`` of the newest course (anonymous)
  while every enrollment goes into that course (a course launch).

Every run starts from the same state: the app database is copied from a snapshot taken
once the learners have their tokens, Redis is flushed, and a new gunicorn server (the
harness's config, ``--web-threads`` threads per worker) starts from the tree's checkout
and warms the cache. wrk reads the endpoint for the warm-up, then for ``--duration``
measured seconds, while ``benchmarks/enroller.py``, a process of its own, enrolls at the
target rate (none at 0) with pairs picked from PostgreSQL that are not enrolled yet, and
checks served counts against the database. With ``--compare-root`` each cell runs on the
older checkout's server ("before") and on this checkout's ("after"), alternating which
goes first; the database is migrated by this checkout (the newer one).

Per run: read req/s and latency (wrk's ``done`` hook); from ``/metrics`` deltas over the
measured window, the namespace's hit rate, loader runs per second
(``cache_fill_seconds_count``) and count loads per second (``cache_count_loads_total``,
all labels; absent on a tree without live counts); the enroller's achieved rate, p99,
errors and CPU; the gunicorn processes' CPU (/proc); the freshness checks. Report:
``results/<date>-write-heavy.md`` and ``.json``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import dataset, load, services, stats, write_heavy_report
from benchmarks.config import RESULTS, ROOT, Config, from_args, parser
from benchmarks.dataset import Dataset
from benchmarks.run import BALANCE_MIN, BALANCE_RETRIES, setup_django, wait_for_quiet
from benchmarks.services import Server, log

LIST_PATH = "/api/v1/courses?page=1&limit=20"
LIST_SIZE = 20
# The enroller runs this much longer than warm-up plus window, so it never stops inside it.
ENROLL_TAIL_S = 2
# Keep-alive connections of the enroller: one per this many enrolls a second (4 to 24),
# so each has 80 ms per enroll and its share of the freshness reads.
ENROLLS_PER_CONNECTION = 12.5
ENROLL_CONNECTIONS = (4, 24)
CHECK_EVERY = 10
SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$")


@dataclass(frozen=True)
class Endpoint:
    name: str
    label: str
    namespace: str
    path: str
    courses: tuple[str, ...]  # where its enrollments go


@dataclass(frozen=True)
class Tree:
    name: str
    root: Path
    code: str  # short commit, "+ uncommitted changes" when the checkout differs from it


@dataclass(frozen=True)
class Scenario:
    config: Config
    secrets: dict[str, str]
    snapshot: str  # database every run is copied from
    tokens: dict[str, str]  # user id -> bearer token
    pairs: dict[str, list[tuple[str, str]]]  # endpoint -> (user id, course id), not enrolled


def enroll_seconds(config: Config) -> int:
    """How long the enroller of a run enrolls: warm-up, window and tail."""
    return config.warmup + config.duration + ENROLL_TAIL_S


def parse(argv: list[str] | None) -> tuple[Config, tuple[float, ...], Path | None, float]:
    p = parser()
    p.prog = "python -m benchmarks.write_heavy"
    p.description = (
        "Write-heavy scenario: the course list and a course detail read by wrk while a "
        "separate process enrolls learners at fixed rates (see benchmarks/README.md)."
    )
    p.set_defaults(duration=15, connections=16, threads=16)
    p.add_argument(
        "--rates",
        default="0,10,100,300",
        help="target enrollments per second, comma-separated (0: no enroller)",
    )
    p.add_argument(
        "--enroll-cost",
        type=float,
        default=50.0,
        help="per endpoint and tree, one more run with the enroller at this rate and no "
        "reads, for the workers' CPU per enrollment (0: none)",
    )
    p.add_argument(
        "--compare-root",
        type=Path,
        default=None,
        help="another checkout of the project (e.g. a git worktree of an older commit): "
        "each cell also runs on a server started from its code",
    )
    a = p.parse_args(argv)
    rates = tuple(float(r) for r in a.rates.split(",") if r)
    if not rates or min(rates) < 0:
        p.error("--rates needs one or more rates >= 0")
    compare = a.compare_root.resolve() if a.compare_root else None
    if compare is not None and not (compare / "manage.py").is_file():
        p.error(f"--compare-root {compare} is not a checkout of the project")
    return from_args(p, a), rates, compare, a.enroll_cost


def tree(name: str, root: Path) -> Tree:
    """A checkout the servers run, checked to import its own packages."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return done.stdout.strip()

    code = git("rev-parse", "--short", "HEAD") or "not a git checkout"
    if git("status", "--porcelain"):
        code += " + uncommitted changes"
    found = subprocess.run(
        [sys.executable, "-c", "import chainlearn; print(chainlearn.__file__)"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not Path(found).is_relative_to(root):
        raise RuntimeError(f"{root}: the interpreter imports chainlearn from {found!r}")
    return Tree(name, root, code)


def endpoints(data: Dataset) -> list[Endpoint]:
    launch = data.course_ids[0]  # the newest course; course_ids are in list order
    return [
        Endpoint(
            "list",
            f"GET {LIST_PATH} (anonymous), enrollments spread over its {LIST_SIZE} courses",
            "courses:list",
            LIST_PATH,
            tuple(data.course_ids[:LIST_SIZE]),
        ),
        Endpoint(
            "detail",
            "GET /api/v1/courses/{id} (anonymous), every enrollment into that course",
            "courses:detail",
            f"/api/v1/courses/{launch}",
            (launch,),
        ),
    ]


def enrollment_pairs(
    config: Config, data: Dataset, courses: tuple[str, ...], needed: int
) -> list[tuple[str, str]]:
    """Up to ``needed`` (user, course) pairs not enrolled yet, round-robin over ``courses``:
    learners who have a token first, then the others in a seed-stable order."""
    with dataset.connect(config) as conn:
        rows = conn.execute(
            """
            SELECT c.id::text, u.id::text FROM users_user u
            CROSS JOIN unnest(%s::uuid[]) AS c(id)
            WHERE u.is_active AND u.username NOT IN ('demo', 'admin')
              AND NOT EXISTS (SELECT 1 FROM courses_enrollment e
                              WHERE e.user_id = u.id AND e.course_id = c.id)
            ORDER BY u.id::text = ANY(%s::text[]) DESC, md5(u.id::text)
            """,
            [list(courses), data.token_user_ids],
        ).fetchall()
    free: dict[str, list[tuple[str, str]]] = {course: [] for course in courses}
    for course_id, user_id in rows:
        free[course_id].append((user_id, course_id))
    turns = itertools.zip_longest(*free.values())
    return [pair for turn in turns for pair in turn if pair is not None][:needed]


def issue_tokens(data: Dataset, user_ids: set[str]) -> int:
    """Give every learner of ``user_ids`` without one a bearer token, as a login does."""
    from django.db import transaction

    from users.models import ApiToken, User

    missing = user_ids - data.tokens.keys()
    with transaction.atomic():
        for user in User.objects.filter(pk__in=missing):
            data.tokens[str(user.pk)] = ApiToken.issue(user)
    return len(missing)


class EnrollerProcess:
    """``benchmarks.enroller`` at one rate against one server, from start to its output."""

    def __init__(self, scenario: Scenario, server: Server, endpoint: Endpoint, rate: float) -> None:
        config = scenario.config
        seconds = enroll_seconds(config)
        count = math.ceil(rate * seconds)
        low, high = ENROLL_CONNECTIONS
        self.connections = min(high, max(low, math.ceil(rate / ENROLLS_PER_CONNECTION)))
        self.timeout = seconds + 60
        work = Path(tempfile.mkdtemp(prefix="enroller-", dir=config.work_dir))
        self.plan_path, self.out_path = work / "plan.json", work / "out.json"
        self.plan_path.write_text(
            json.dumps(
                {
                    "port": server.port,
                    "rate": rate,
                    "seconds": seconds,
                    "connections": self.connections,
                    "read": endpoint.name,
                    "read_path": endpoint.path,
                    "pg": config.pg,
                    "pairs": [
                        (course, scenario.tokens[user])
                        for user, course in scenario.pairs[endpoint.name][:count]
                    ],
                    "check_every": CHECK_EVERY,
                    "out": str(self.out_path),
                }
            )
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.enroller", str(self.plan_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError("the enroller did not start (see its output above)")

    def finish(self) -> dict[str, Any]:
        if self.proc.wait(timeout=self.timeout) != 0:
            raise RuntimeError(f"the enroller exited with {self.proc.returncode}")
        out: dict[str, Any] = json.loads(self.out_path.read_text())
        out["connections"] = self.connections
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        for path in (self.plan_path, self.out_path):
            path.unlink(missing_ok=True)
        self.plan_path.parent.rmdir()


def samples(text: str) -> dict[tuple[str, str], float]:
    """``{(metric, labels): value}`` of Prometheus text."""
    out = {}
    for line in text.splitlines():
        if match := SAMPLE.match(line):
            out[(match[1], match[2] or "")] = float(match[3])
    return out


def total(values: dict[tuple[str, str], float], name: str, namespace: str = "") -> float | None:
    """Sum of metric ``name`` over its labels (of ``namespace`` only, if given); None when
    the service exposes no such sample."""
    label = f'namespace="{namespace}"' if namespace else ""
    found = [v for (n, labels), v in values.items() if n == name and label in labels]
    return sum(found) if found else None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def enroll_figures(
    out: dict[str, Any], window: tuple[float, float], cpu_seconds: float
) -> dict[str, Any]:
    """Rate, latency and CPU of the enrolls sent in the measured window; errors and checks
    over the whole enroller run (warm-up and tail too)."""
    start, end = window
    seconds = end - start
    sent = [e for e in out["enrolls"] if start <= e[1] < end]
    ok = [e for e in sent if 200 <= e[3] < 300]
    latency = [e[2] - e[1] for e in ok]
    stale = [c for c in out["checks"] if not c[1] <= c[2] <= c[3]]
    # Below ``before`` by more than the course's enrolls then in flight, or above ``after``:
    # stale even if a write is visible only once its request has returned.
    beyond = [c for c in stale if not c[1] - c[4] <= c[2] <= c[3]]
    p50, p99 = percentile(latency, 50), percentile(latency, 99)
    return {
        "achieved_per_s": len(ok) / seconds,
        "p50_ms": None if p50 is None else 1000 * p50,
        "p99_ms": None if p99 is None else 1000 * p99,
        # How late the enrolls of the window left against their schedule (the enroller
        # kept up if this stays small).
        "max_behind_ms": 1000 * max((e[1] - e[0] for e in sent), default=0.0),
        "cpu_per_s": cpu_seconds / seconds,
        "connections": out["connections"],
        "sent": len(out["enrolls"]),
        "errors": sum(1 for e in out["enrolls"] if not 200 <= e[3] < 300),
        "pairs_exhausted": out["pairs"] < out["scheduled"],
        # Scheduled enrolls not sent by the end of the run (the server did not keep up).
        "missed": min(out["pairs"], out["scheduled"]) - len(out["enrolls"]),
        "checked": len(out["checks"]),
        "stale": len(stale),
        "stale_beyond_in_flight": len(beyond),
        "stale_examples": [
            {"before": c[1], "served": c[2], "after": c[3], "in_flight": c[4]} for c in stale[:5]
        ],
        "problems": out["problems"],
    }


def measure(
    scenario: Scenario, tree: Tree, endpoint: Endpoint, rate: float, *, reads_on: bool = True
) -> dict[str, Any]:
    """One run from the snapshot's state: fresh database copy, empty Redis, new server.
    Without ``reads_on`` wrk does not run: the window measures what the enrollments cost."""
    config = scenario.config
    services.copy_database(config, scenario.snapshot, config.app_db)
    services.flush_cache_redis(config)
    server = Server(config, mode="cached", root=tree.root, **scenario.secrets)
    lua = load.script([(endpoint.path, "")], config.work_dir)
    enroller: EnrollerProcess | None = None
    try:
        with services.running(server):
            wait_for_quiet(config)
            if rate:
                enroller = EnrollerProcess(scenario, server, endpoint, rate)
            if reads_on:
                load.wrk(config, server.base_url, lua, seconds=config.warmup)
            else:
                time.sleep(config.warmup)
            before = samples(stats.metrics_text(server.base_url, server.metrics_token))
            meter = stats.CpuMeter(config.state_dir)
            others = {"enroller": [enroller.proc.pid]} if enroller else None
            meter.start(server.all_pids(), server.worker_pids(), others)
            started = time.monotonic()
            if reads_on:
                reads = load.wrk(config, server.base_url, lua, seconds=config.duration)
            else:
                time.sleep(config.duration)
                reads = {"rps": 0.0, "errors": 0, "latency_us": {"p50": 0.0, "p99": 0.0}}
            cpu = meter.stop()
            window = (started, time.monotonic())
            after = samples(stats.metrics_text(server.base_url, server.metrics_token))
            writes = enroller.finish() if enroller else None
    finally:
        lua.unlink(missing_ok=True)
        if enroller:
            enroller.stop()
    seconds = window[1] - window[0]

    def delta(name: str, namespace: str = "") -> float | None:
        now = total(after, name, namespace)
        return None if now is None else now - (total(before, name, namespace) or 0.0)

    hits = delta("cache_hits_total", endpoint.namespace) or 0.0
    misses = delta("cache_misses_total", endpoint.namespace) or 0.0
    count_loads = delta("cache_count_loads_total")
    cores = os.cpu_count() or 2
    return {
        "endpoint": endpoint.name,
        "rate": rate,
        "tree": tree.name,
        "reads_on": reads_on,
        "seconds": round(seconds, 2),
        "read_rps": float(reads["rps"]),  # type: ignore[arg-type]
        "read_errors": reads["errors"],
        "latency_ms": {k: v / 1000 for k, v in reads["latency_us"].items()},  # type: ignore[attr-defined]
        "hits": hits,
        "misses": misses,
        "hit_rate": hits / (hits + misses) if hits + misses else None,
        "loader_runs_per_s": (delta("cache_fill_seconds_count", endpoint.namespace) or 0.0)
        / seconds,
        "count_loads_per_s": None if count_loads is None else count_loads / seconds,
        "worker_cpu_per_s": cpu["gunicorn"] / seconds,
        "postgres_cpu_per_s": cpu["postgres"] / seconds,
        "redis_cpu_per_s": cpu["redis"] / seconds,
        "foreign_cpu_share": cpu["foreign"] / cores / seconds,
        "worker_balance": cpu["worker_balance"],
        "enroll": None if writes is None else enroll_figures(writes, window, cpu["enroller"]),
    }


def measure_balanced(
    scenario: Scenario, tree: Tree, endpoint: Endpoint, rate: float
) -> dict[str, Any]:
    """``measure``, again (from the same state) while one worker got (nearly) all of wrk's
    keep-alive connections, as the harness does (``run.measure_endpoint``)."""
    imbalanced: list[float] = []
    while True:
        run = measure(scenario, tree, endpoint, rate)
        if run["worker_balance"] >= BALANCE_MIN or len(imbalanced) >= BALANCE_RETRIES:
            run["imbalanced_retries"] = imbalanced
            return run
        imbalanced.append(round(run["worker_balance"], 2))
        log(f"worker CPU balance {run['worker_balance']:.2f}, measuring again")


def machine(config: Config) -> dict[str, Any]:
    info = Path("/proc/cpuinfo").read_text().splitlines()
    memory = Path("/proc/meminfo").read_text().splitlines()
    with services.admin_connection(config) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    clients = services.cache_redis(config)
    redis_version = clients[0].info("server")["redis_version"]
    for client in clients:
        client.close()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {
        "cpu": next((x.split(":", 1)[1].strip() for x in info if x.startswith("model name")), "?"),
        "cores": os.cpu_count(),
        "memory_gb": round(
            int(next(x.split()[1] for x in memory if x.startswith("MemTotal"))) / 1024**2, 1
        ),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg,
        "redis": redis_version,
        "wrk": (wrk.stdout + wrk.stderr).split(" [", 1)[0].strip(),
    }


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    config, rates, compare, enroll_cost = parse(argv)
    date = config.date or datetime.now(UTC).strftime("%Y-%m-%d")
    config = replace(config, date=date)
    trees = [tree("after", ROOT)]
    if compare is not None:
        trees.insert(0, tree("before", compare))
    log("trees: " + "; ".join(f"{t.name} {t.root} ({t.code})" for t in trees))
    secrets_ = {"secret_key": secrets.token_urlsafe(40), "metrics_token": secrets.token_urlsafe(24)}
    log(f"preparing database ({config.seed})")
    database = services.prepare_database(config)
    setup_django(secrets_["secret_key"])
    data = dataset.build(config)
    targets = endpoints(data)
    needed = math.ceil(max(*rates, enroll_cost) * enroll_seconds(config))
    pairs = {e.name: enrollment_pairs(config, data, e.courses, needed) for e in targets}
    issued = issue_tokens(data, {user for chosen in pairs.values() for user, _ in chosen})
    log(
        f"{len(data.tokens)} learners with bearer tokens ({issued} issued for this scenario); "
        + ", ".join(f"{name}: {len(chosen)} pairs" for name, chosen in pairs.items())
    )
    from django.db import connections

    connections.close_all()  # nothing may hold the app database while it is copied
    snapshot = f"{config.app_db}_write_heavy"
    services.copy_database(config, config.app_db, snapshot)
    scenario = Scenario(config, secrets_, snapshot, dict(data.tokens), pairs)
    runs: list[dict[str, Any]] = []
    try:
        for cell, (endpoint, rate) in enumerate(itertools.product(targets, rates)):
            for tree_ in trees if cell % 2 == 0 else trees[::-1]:
                run = measure_balanced(scenario, tree_, endpoint, rate)
                runs.append(run)
                log(write_heavy_report.summary(run))
        for endpoint in targets if enroll_cost else []:
            for tree_ in trees:
                run = measure(scenario, tree_, endpoint, enroll_cost, reads_on=False)
                run["imbalanced_retries"] = []
                runs.append(run)
                log(write_heavy_report.summary(run))
    finally:
        with services.admin_connection(config) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{snapshot}" WITH (FORCE)')
    results: dict[str, Any] = {
        "runs": runs,
        "endpoints": [
            {
                "name": e.name,
                "label": e.label,
                "path": e.path,
                "namespace": e.namespace,
                "courses": e.courses,
                "pairs": len(pairs[e.name]),
            }
            for e in targets
        ],
        "notes": write_heavy_report.notes(runs),
        "database": {k: v for k, v in database.items() if k != "seed_output"},
        "meta": {
            "date": date,
            "command": os.environ.get("BENCH_COMMAND") or "python -m benchmarks.write_heavy",
            "runtime_s": time.monotonic() - started + float(os.environ.get("BENCH_SETUP_S", "0")),
            "rates": rates,
            "enroll_cost_rate": enroll_cost,
            "trees": [{"name": t.name, "root": str(t.root), "code": t.code} for t in trees],
            "workers": config.web_workers,
            "threads": config.web_threads,
            "connections": config.connections,
            "wrk_threads": config.wrk_threads,
            "duration": config.duration,
            "warmup": config.warmup,
            "enroller": {
                "seconds": enroll_seconds(config),
                "tail_s": ENROLL_TAIL_S,
                "per_connection": ENROLLS_PER_CONNECTION,
                "connections": ENROLL_CONNECTIONS,
                "check_every": CHECK_EVERY,
            },
            "tokens": len(data.tokens),
            "tokens_issued": issued,
            "seed_args": " ".join(config.seed.args()),
            "machine": machine(config),
        },
    }
    md = write_heavy_report.write(results, RESULTS)
    log(f"report written: {md} ({results['meta']['runtime_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
