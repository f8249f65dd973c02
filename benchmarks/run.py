"""The whole benchmark: data, both cache modes under wrk, the mixed workload, invalidation
cost, profiles of missed targets, and the report. Entry point: ``python -m benchmarks``
(``bash benchmarks/run.sh`` starts the servers and calls it)."""

from __future__ import annotations

import http.client
import os
import secrets
import shlex
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from benchmarks import load, profiling, report, services, stats
from benchmarks.config import RESULTS, Config, parse
from benchmarks.dataset import Dataset
from benchmarks.services import Server, log

# Queries a loader runs on a miss; measured at start-up by ``loader_queries``.
LOADER_QUERIES: dict[str, int] = {}
PROFILE_LIMIT = 4
# A run where one worker did less than this share of the other's CPU is measured again.
BALANCE_MIN = 0.5
BALANCE_RETRIES = 3


def setup_django(secret_key: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chainlearn.settings")
    os.environ["DEBUG"] = "false"
    os.environ["SECRET_KEY"] = secret_key
    os.environ["LOG_LEVEL"] = "ERROR"
    import django

    django.setup()


def measure_endpoint(
    config: Config, collector: stats.Collector, server: Server, endpoint: load.Endpoint
) -> dict[str, Any]:
    sent: list[tuple[str, ...]] = list(endpoint.requests)
    if endpoint.conditional:
        sent = load.with_etags(server.base_url, endpoint.requests)
    lua = load.script(sent, config.work_dir)
    imbalanced: list[float] = []
    try:
        wait_for_quiet(config)
        load.wrk(config, server.base_url, lua, seconds=config.warmup)
        collector.attach(server)
        while True:
            collector.reset()
            result = load.wrk(config, server.base_url, lua, seconds=config.duration)
            snap = collector.collect()
            balance = snap.cpu.get("worker_balance", 1.0)
            if balance >= BALANCE_MIN or len(imbalanced) >= BALANCE_RETRIES:
                break
            # wrk's keep-alive connections all landed on one worker (gthread accepts
            # greedily): this run measured one worker, not the server. Measure again.
            imbalanced.append(round(balance, 2))
            log(f"{endpoint.name}: worker CPU balance {balance:.2f}, measuring again")
    finally:
        lua.unlink(missing_ok=True)
    requests = int(result["requests"])
    counts = snap.cache.get(endpoint.namespace or "", {})
    metrics = snap.metrics.get(endpoint.namespace or "", {})
    sql_per_hit = None
    if endpoint.namespace and server.cache_enabled:
        # Hit and miss requests share the per-request queries (e.g. isEnrolled); a miss of
        # any namespace (the endpoint's, the auth principal's) adds its loader's queries.
        # What a request costs when everything hits is the rest, per request.
        loaded = sum(
            counts_.get("misses", 0.0) * LOADER_QUERIES.get(ns, 1)
            for ns, counts_ in snap.metrics.items()
        )
        sql_per_hit = max(0.0, (snap.sql_calls - loaded) / max(requests, 1))
    cpu = snap.cpu
    wall = cpu.get("wall") or 1.0
    latency = {k: v / 1000 for k, v in result["latency_us"].items()}  # type: ignore[attr-defined]
    return {
        "label": endpoint.label,
        "requests": requests,
        "rps": result["rps"],
        "bytes_per_req": int(result["bytes"]) / max(requests, 1),  # type: ignore[call-overload]
        "errors": result["errors"],
        "latency_ms": latency,
        "sql_per_req": snap.sql_calls / requests,
        "sql_pings_per_req": snap.sql_pings / requests,
        "sql_per_hit": sql_per_hit,
        "redis_per_req": snap.redis_calls / requests,
        "lua_per_req": snap.redis_scripts / requests,
        "redis_by_command": snap.redis_by_command,
        "cache": {**counts, **{f"metrics_{k}": v for k, v in metrics.items()}},
        "hit_rate": stats.hit_rate(metrics)
        if endpoint.namespace and server.cache_enabled
        else None,
        "auth_hit_rate": stats.hit_rate(snap.metrics["users:principal"])
        if endpoint.authenticated and "users:principal" in snap.metrics
        else None,
        "sql_top": snap.sql_top[:5],
        "cpu": cpu,
        "worker_cpu_ms_per_req": 1000 * cpu.get("gunicorn", 0.0) / max(requests, 1),
        "foreign_cpu_share": cpu.get("foreign", 0.0) / (os.cpu_count() or 2) / wall,
        "log_events": snap.log_events,
        "worker_balance": snap.cpu.get("worker_balance", 1.0),
        "imbalanced_retries": imbalanced,
    }


def loader_queries(data: Dataset) -> dict[str, int]:
    """How many queries each registered manager's loader runs, counted on real rows."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from caching.registry import registry
    from users.models import hash_token

    user_id, token = next(iter(data.tokens.items()))
    samples = {
        "difficulty": None, "page": 1, "limit": 20, "course_id": data.course_ids[0],
        "user_id": user_id, "key_hash": hash_token(token),
    }  # fmt: skip
    counts = {}
    for manager in registry.all():
        names = [*manager.key_params]
        if manager.scope_param:
            names.append(manager.scope_param)
        if not all(name in samples for name in names):
            continue
        with CaptureQueriesContext(connection) as captured:
            manager.load({name: samples[name] for name in names})
        counts[manager.namespace] = len(captured.captured_queries)
    return counts


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def wait_for_quiet(config: Config) -> None:
    """Wait (within the run's budget) until other work on the machine leaves the cores idle.

    This machine may be shared; a run measured while something else burns CPU mostly
    measures that. Waits up to ``config.quiet_wait`` seconds per run and
    ``config.quiet_budget`` in total, then measures anyway (the report shows the other
    load of every run).
    """
    global _quiet_spent
    deadline = time.monotonic() + min(config.quiet_wait, config.quiet_budget - _quiet_spent)
    started = time.monotonic()
    while time.monotonic() < deadline:
        if stats.machine_busy_share(0.5) < config.quiet_threshold:
            break
    _quiet_spent += time.monotonic() - started


_quiet_spent = 0.0


def burn_in(config: Config, data: Dataset, server: Server) -> None:
    """A few seconds of every endpoint on a fresh server, discarded.

    New workers are slower at first (lazy imports and URL resolver, first connections,
    copy-on-write page faults after the fork); the first measured run would pay for it.
    """
    mixed_reads = load.script(load.mixed_requests(data), config.work_dir)
    try:
        for path in ("/health/live", None):
            lua = load.script([(path, "")], config.work_dir) if path else mixed_reads
            load.wrk(config, server.base_url, lua, seconds=3)
            if path:
                lua.unlink(missing_ok=True)
    finally:
        mixed_reads.unlink(missing_ok=True)


def rewarm(namespace: str | None) -> None:
    """Flush and re-warm a warmed namespace (list, detail) as ``cache_flush`` does.

    Warm-on-start stores every detail entry at the same instant, so they all expire
    together ``TTL`` seconds later; without this, whichever 10 s run falls on that instant
    measures a synchronized expiry wave instead of the endpoint. Per-user namespaces are
    not warmed by the project: their warm-up run fills them and they expire by TTL.
    """
    from caching.invalidation import flush
    from caching.warming import warm, warmable

    if namespace in warmable():
        flush([namespace], cause="benchmark")
        warm((namespace,))


def prefill(server: Server, endpoint: load.Endpoint, concurrency: int = 8) -> None:
    """Send each distinct request of a per-user endpoint once, so the measured run starts
    with every learner's token and entry cached, as on a service in use.

    A 3 s warm-up reaches only part of the 1,000 learners while their entries are cold
    (each miss is a database load); the rest would be filled during the measured run,
    which would then measure cold starts, not the cache. The endpoint's namespace and the
    token principals are flushed first, so entries filled by earlier runs (the burn-in)
    do not all expire together mid-run; progress's 10 s TTL still expires during the run,
    and its entries are refreshed as in service.
    """
    from caching.invalidation import flush

    flush([endpoint.namespace or "", "users:principal"], cause="benchmark")
    distinct = sorted(set(endpoint.requests))

    def send(batch: list[tuple[str, str]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            for path, token in batch:
                conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"prefill {path}: HTTP {response.status}")
        finally:
            conn.close()

    batches = [distinct[i::concurrency] for i in range(concurrency)]
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, batches))


def run_endpoints(
    config: Config, data: Dataset, collector: stats.Collector, servers: dict[str, Server]
) -> dict[str, dict[str, Any]]:
    """Each endpoint in each mode, the modes back to back so both see the same machine,
    ``config.rounds`` times in alternating order (cached, uncached, uncached, cached…), so
    a machine speeding up or slowing down during the pair weighs on both modes alike. A
    conditional endpoint joins its plain twin's alternation (cached mode only: without
    the cache there is no ETag to revalidate)."""
    out: dict[str, dict[str, Any]] = {mode: {} for mode in servers}
    wanted = [e for e in load.endpoints(data) if not config.endpoints or e.name in config.endpoints]
    names = {e.name for e in wanted}
    for first in (e for e in wanted if not e.conditional or e.plain not in names):
        group = [first, *(e for e in wanted if e.conditional and e.plain == first.name)]
        slots = [
            (mode, endpoint)
            for mode, server in servers.items()
            for endpoint in group
            if server.cache_enabled or not endpoint.conditional
        ]
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {
            (mode, endpoint.name): [] for mode, endpoint in slots
        }
        for round_ in range(config.rounds):
            for mode, endpoint in slots if round_ % 2 == 0 else list(reversed(slots)):
                server = servers[mode]
                if server.cache_enabled:
                    rewarm(endpoint.namespace)
                    if endpoint.authenticated:
                        prefill(server, endpoint)
                run = measure_endpoint(config, collector, server, endpoint)
                runs[(mode, endpoint.name)].append(run)
                log(
                    f"{mode:8} {endpoint.name:12} {run['rps']:8.0f} req/s  "
                    f"p99 {run['latency_ms']['p99']:7.2f} ms  SQL/req {run['sql_per_req']:.2f}  "
                    f"hit {_rate(run['hit_rate'])}  CPU {run['worker_cpu_ms_per_req']:.2f} ms/req"
                    f"  other load {100 * run['foreign_cpu_share']:.0f} %"
                    f"  balance {run['worker_balance']:.2f}"
                    f"  non-2xx {run['errors']['status']}  bytes/req {run['bytes_per_req']:.0f}"
                    f"  events {run['log_events']}"
                )
        for (mode, name), slot_runs in runs.items():
            out[mode][name] = combine(slot_runs)
    return out


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One endpoint and mode over several runs: req/s and latency percentiles are the mean
    of the runs' (each run is equally long), per-request figures are weighted by requests,
    counts are summed."""
    if len(runs) == 1:
        return runs[0]
    total = sum(r["requests"] for r in runs)

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in runs)

    def weighted(key: str) -> float | None:
        if any(r[key] is None for r in runs):
            return None
        return sum(r[key] * r["requests"] for r in runs) / max(total, 1)

    first = runs[0]
    return {
        **first,
        "requests": total,
        "rps": mean("rps"),
        "errors": {k: sum(r["errors"][k] for r in runs) for k in first["errors"]},
        "latency_ms": {
            k: statistics.fmean(r["latency_ms"][k] for r in runs) for k in first["latency_ms"]
        },
        "latency_ms_runs": [r["latency_ms"] for r in runs],
        "rps_runs": [r["rps"] for r in runs],
        **{
            key: weighted(key)
            for key in (
                "sql_per_req",
                "bytes_per_req",
                "sql_pings_per_req",
                "sql_per_hit",
                "redis_per_req",
                "lua_per_req",
                "hit_rate",
                "auth_hit_rate",
                "worker_cpu_ms_per_req",
            )
        },
        "cache": {k: sum(r["cache"].get(k, 0) for r in runs) for k in first["cache"]},
        "foreign_cpu_share": mean("foreign_cpu_share"),
        "log_events": {k: sum(r["log_events"][k] for r in runs) for k in first["log_events"]},
        "worker_balance": min(r["worker_balance"] for r in runs),
        "imbalanced_retries": [x for r in runs for x in r["imbalanced_retries"]],
    }


def run_mixed(
    config: Config, data: Dataset, collector: stats.Collector, server: Server
) -> dict[str, Any]:
    from benchmarks import mixed

    work = mixed.plan(config, data)
    workload = mixed.Workload(config, data, work, server.port)
    admin = mixed.AdminSession(server.port, data.admin_password)
    admin.login()
    from caching.warming import warm

    warm()  # what the scheduled warming keeps hot; the run starts from that state
    lua = load.script(load.mixed_requests(data), config.work_dir)
    connections = config.mixed_connections
    try:
        wait_for_quiet(config)
        load.wrk(config, server.base_url, lua, seconds=config.warmup, connections=connections)
        collector.attach(server)
        collector.reset()
        result: dict[str, Any] = {}
        reader = threading.Thread(
            target=lambda: result.update(
                load.wrk(
                    config,
                    server.base_url,
                    lua,
                    seconds=config.mixed_duration,
                    connections=connections,
                )
            ),
            daemon=True,
        )
        threads = workload.threads(admin)
        reader.start()
        for thread in threads:
            thread.start()
        reader.join(timeout=config.mixed_duration + 60)
        workload.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        snap = collector.collect()
    finally:
        lua.unlink(missing_ok=True)
    tally = workload.tally
    return {
        "duration": config.mixed_duration,
        "connections": connections,
        "wrk": {
            "rps": result["rps"],
            "errors": result["errors"],
            "latency_ms": {k: v / 1000 for k, v in result["latency_us"].items()},
        },
        "rates": {
            "enrollment": config.enroll_rate,
            "quiz submission": config.submit_rate,
            "reward claim": config.claim_rate,
            "admin course edit": config.admin_edit_rate,
        },
        "writes": dict(tally.writes),
        "write_failures": dict(tally.write_failures),
        "write_median_ms": {
            k: statistics.median(v) * 1000 for k, v in tally.write_seconds.items() if v
        },
        "checked": dict(tally.checked),
        "stale": dict(tally.stale),
        "errors": dict(tally.errors),
        "examples": tally.examples,
        "hit_rate": {ns: stats.hit_rate(snap.metrics.get(ns, {})) for ns in collector.namespaces},
        "cache": snap.cache,
        "metrics": snap.metrics,
        "log_events": snap.log_events,
        "cpu": snap.cpu,
        "foreign_cpu_share": snap.cpu.get("foreign", 0.0)
        / (os.cpu_count() or 2)
        / (snap.cpu.get("wall") or 1.0),
        "worker_balance": snap.cpu.get("worker_balance", 1.0),
        "list_max_lag": tally.list_max_lag,
        "list_lagging_items": tally.list_lagging_items,
    }


def missed_endpoints(results: dict[str, Any]) -> list[str]:
    """Hot paths with a missed target, in target order (profiled in cached mode)."""
    names: list[str] = []
    cached = results["runs"].get("cached", {})
    for row in report.targets(results):
        if row["met"] is not False:
            continue
        if row["target"].startswith("cached anonymous list"):
            candidates = ["list_anon"]
        else:
            candidates = [
                n
                for n in report.HOT
                if n in cached and row["target"].startswith(cached[n]["label"])
            ]
        names += [n for n in candidates if n not in names]
    return names[:PROFILE_LIMIT]


def run_profiles(config: Config, data: Dataset, names: list[str], server: Server) -> dict[str, Any]:
    endpoints = {e.name: e for e in load.endpoints(data)}
    out: dict[str, Any] = {}
    for name in names:
        endpoint = endpoints[name]
        lua = load.script(endpoint.requests, config.work_dir)
        try:
            load.wrk(config, server.base_url, lua, seconds=config.warmup)
            stamp = f"{config.date}-{name}-cached"
            for _attempt in range(3):
                profile = profiling.record(config, server, lua, RESULTS / "profiles", stamp)
                views = [profile.get(v, {}) for v in ("cpu", "wall")]
                if all(v.get("samples_in_requests") for v in views):
                    break
                log(f"{name}: a profiled worker served no request (connection imbalance), again")
            out[f"{endpoint.label}, cached"] = profile
            log(f"profiled {name}")
        finally:
            lua.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    config = parse(argv)
    date = config.date or datetime.now(UTC).strftime("%Y-%m-%d")
    config = Config(**{**config.__dict__, "date": date})
    secrets_ = {"secret_key": secrets.token_urlsafe(40), "metrics_token": secrets.token_urlsafe(24)}
    log(f"preparing database ({config.seed})")
    database = services.prepare_database(config)
    log(
        f"database ready: {database['counts']} "
        f"({'seeded' if database['reseeded'] else 'template reused'})"
    )
    setup_django(secrets_["secret_key"])
    from caching import entries

    entries.bump_epoch()  # entries from an earlier run describe an older copy of the data
    from benchmarks import dataset

    data = dataset.build(config)
    log(f"{len(data.tokens)} learners with bearer tokens, {len(data.course_ids)} active courses")
    LOADER_QUERIES.update(loader_queries(data))
    log(f"queries per loader run: {LOADER_QUERIES}")
    collector = stats.Collector(config)
    results: dict[str, Any] = {"runs": {}, "notes": []}
    servers = {mode: Server(config, mode=mode, **secrets_) for mode in config.modes}
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            burn_in(config, data, server)
        log(
            "gunicorn up: "
            + ", ".join(
                f"{mode} :{s.port} workers {s.worker_pids()}" for mode, s in servers.items()
            )
        )
        results["runs"] = run_endpoints(config, data, collector, servers)
        cached = servers.get("cached")
        if cached is not None and config.mixed_duration > 0:
            log("mixed workload")
            results["mixed"] = run_mixed(config, data, collector, cached)
            m = results["mixed"]
            log(
                f"mixed: checked {sum(m['checked'].values())} reads, stale "
                f"{sum(m['stale'].values())}, detail hit rate "
                f"{_rate(m['hit_rate'].get('courses:detail'))}"
            )
        if config.profile and cached is not None and len(servers) == 2:
            names = missed_endpoints(results)
            if names:
                log(f"profiling missed targets: {names}")
                results["profiles"] = run_profiles(config, data, names, cached)
    finally:
        for server in servers.values():
            server.stop()
    try:
        if config.invalidation_sizes:
            from benchmarks import invalidation_cost

            results["invalidation"] = invalidation_cost.measure(
                config.invalidation_sizes, config.invalidation_rounds
            )
    finally:
        collector.close()
    results["database"] = {k: v for k, v in database.items() if k != "seed_output"}
    results["sql_top"] = {
        run["label"]: run["sql_top"] for run in results["runs"].get("cached", {}).values()
    }
    results["quiet_wait_s"] = round(_quiet_spent, 1)
    results["loader_queries"] = LOADER_QUERIES
    results["meta"] = meta(config, data, started, date)
    path = report.write(results, RESULTS)
    log(f"report written: {path} ({results['meta']['runtime_s'] / 60:.1f} min)")
    for row in results["targets"]:
        mark = {True: "met", False: "MISSED", None: "n/a"}[row["met"]]
        log(f"  [{mark:6}] {row['target']}: {row['value']} (goal {row['goal']})")
    return 0


def meta(config: Config, data: Dataset, started: float, date: str) -> dict[str, Any]:
    return {
        "date": date,
        "command": os.environ.get("BENCH_COMMAND")
        or "python -m benchmarks " + shlex.join(sys.argv[1:]),
        "runtime_s": time.monotonic() - started + float(os.environ.get("BENCH_SETUP_S", "0")),
        "workers": config.web_workers,
        "threads": config.web_threads,
        "connections": config.connections,
        "wrk_threads": config.wrk_threads,
        "duration": config.duration,
        "rounds": config.rounds,
        "warmup": config.warmup,
        "courses": len(data.course_ids),
        "list_variants": len(data.list_variants),
        "tokens": len(data.tokens),
        "seed_args": " ".join(config.seed.args()),
        "redis_mode": os.environ.get("BENCH_REDIS_MODE", "standalone"),
    }
