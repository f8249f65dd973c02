# ruff: noqa: RUF001
"""The write-heavy scenario's report (``benchmarks/write_heavy.py``): a log line per run,
``results/<date>-write-heavy.md`` with one table per endpoint, and the JSON beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _stale(enroll: dict[str, Any]) -> str:
    if not enroll:
        return "–"
    return f"{enroll['stale']} ({enroll['stale_beyond_in_flight']})"


def summary(run: dict[str, Any]) -> str:
    e = run["enroll"] or {}
    return (
        f"{run['endpoint']:6} {run['rate']:5.0f}/s {run['tree']:7} "
        f"read {run['read_rps']:6.0f} req/s p99 {run['latency_ms']['p99']:6.1f} ms  "
        f"hit {_pct(run['hit_rate'])}  loads {run['loader_runs_per_s']:.1f}/s  "
        f"count loads {_fmt(run['count_loads_per_s'])}/s  "
        f"enrolls {_fmt(e.get('achieved_per_s'))}/s p99 {_fmt(e.get('p99_ms'))} ms "
        f"errors {e.get('errors', '–')}  checked {e.get('checked', '–')} "
        f"stale {_stale(e)}  CPU workers {run['worker_cpu_per_s']:.2f} "
        f"enroller {_fmt(e.get('cpu_per_s'), 2)} s/s  balance {run['worker_balance']:.2f}"
    )


def enroll_cpu_ms(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per tree, the workers' CPU ms per enrollment, from its run without reads."""
    costs = {}
    for run in runs:
        achieved = (run["enroll"] or {}).get("achieved_per_s")
        if not run.get("reads_on", True) and achieved:
            costs[run["tree"]] = 1000 * run["worker_cpu_per_s"] / achieved
    return costs


def reads_per_cpu(run: dict[str, Any], cost_ms: float | None) -> float | None:
    """Reads per worker CPU second left for reads (the enrollments' CPU taken out)."""
    achieved = (run["enroll"] or {}).get("achieved_per_s") or 0.0
    if cost_ms is None and achieved:
        return None
    left = run["worker_cpu_per_s"] - achieved * (cost_ms or 0.0) / 1000
    return run["read_rps"] / left if left > 0 else None


def cost_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| tree | enrollments/s | workers CPU s/s | workers CPU ms per enrollment | "
        "PostgreSQL CPU s/s | enroll p99 ms |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    costs = enroll_cpu_ms(runs)
    for run in runs:
        if run.get("reads_on", True):
            continue
        e = run["enroll"] or {}
        lines.append(
            f"| {run['tree']} | {_fmt(e.get('achieved_per_s'))} | "
            f"{run['worker_cpu_per_s']:.2f} | {_fmt(costs.get(run['tree']), 2)} | "
            f"{run['postgres_cpu_per_s']:.2f} | {_fmt(e.get('p99_ms'))} |"
        )
    return lines


def table(runs: list[dict[str, Any]], trees: list[str]) -> list[str]:
    lines = [
        "| enrollments/s asked | tree | read req/s | p50 ms | p99 ms | hit rate | "
        "loader runs/s | count loads/s | enrollments/s | enroll p99 ms | enroll errors | "
        "enroller CPU s/s | workers CPU s/s | reads per read-CPU s | ÷ no writes | "
        "checked | stale |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    costs = enroll_cpu_ms(runs)
    reading = [run for run in runs if run.get("reads_on", True)]
    quiet = {run["tree"]: reads_per_cpu(run, None) for run in reading if not run["enroll"]}
    for run in sorted(reading, key=lambda r: (r["rate"], trees.index(r["tree"]))):
        e = run["enroll"] or {}
        per_cpu = reads_per_cpu(run, costs.get(run["tree"]))
        base = quiet.get(run["tree"])
        lines.append(
            f"| {run['rate']:g} | {run['tree']} | {run['read_rps']:,.0f} | "
            f"{run['latency_ms']['p50']:.2f} | {run['latency_ms']['p99']:.2f} | "
            f"{_pct(run['hit_rate'])} | {run['loader_runs_per_s']:.1f} | "
            f"{_fmt(run['count_loads_per_s'])} | {_fmt(e.get('achieved_per_s'))} | "
            f"{_fmt(e.get('p99_ms'))} | {e.get('errors', '–')} | "
            f"{_fmt(e.get('cpu_per_s'), 2)} | {run['worker_cpu_per_s']:.2f} | "
            f"{_fmt(per_cpu, 0)} | {_fmt(per_cpu / base if per_cpu and base else None, 2)} | "
            f"{e.get('checked', '–')} | {_stale(e)} |"
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    m, w = meta["machine"], meta["enroller"]
    counts = results["database"]["counts"]
    lines = [
        f"# Write-heavy scenario, {meta['date']}",
        "",
        f"Command: `{meta['command']}` — total runtime {meta['runtime_s'] / 60:.1f} min.",
        "",
        "## Setup",
        "",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, Linux "
        f"{m['kernel']}; Python {m['python']}, PostgreSQL {m['postgresql']}, Redis "
        f"{m['redis']}, {m['wrk']}. **wrk, the enroller, gunicorn, PostgreSQL and Redis share "
        "these cores**: compare the trees within this run, not with other machines.",
        "- Trees: "
        + "; ".join(f"**{t['name']}** `{t['root']}` at {t['code']}" for t in meta["trees"])
        + ". The database is migrated by this checkout.",
        f"- Data: {counts['courses_course']:,} courses, {counts['users_user']:,} users, "
        f"{counts['courses_enrollment']:,} enrollments (`seed_demo {meta['seed_args']}`); "
        f"{meta['tokens']:,} learners with bearer tokens ({meta['tokens_issued']:,} issued for "
        "this scenario beyond the harness's).",
        f"- Server: gunicorn `-c python:chainlearn.gunicorn_conf`, {meta['workers']} workers × "
        f"{meta['threads']} threads (gthread), DEBUG=false, cache on and warmed on start, "
        "started from the tree's checkout (cwd and PYTHONPATH) with this checkout's venv. "
        "Every run starts from the same state: the app database copied from a snapshot, "
        "Redis flushed, a new server.",
        f"- Reads: wrk, {meta['wrk_threads']} threads, {meta['connections']} connections, "
        f"{meta['warmup']} s warm-up then {meta['duration']} s measured, anonymous.",
        f"- Writes: `benchmarks/enroller.py`, a separate process, enrolls through "
        "`POST /api/v1/courses/<id>/enroll` (bearer tokens) at the asked rate, open loop "
        f"(enroll i due at start + i / rate) over keep-alive connections (one per "
        f"{w['per_connection']:g}/s, {w['connections'][0]} to {w['connections'][1]}), "
        f"from the start of the warm-up to {w['tail_s']} s after the window, each (learner, "
        "course) pair not enrolled yet.",
        "",
        "How to read it: read req/s and latency are wrk's (its `done` hook). Hit rate = Δ"
        "`cache_hits_total` ÷ (Δhits + Δ`cache_misses_total`) of the endpoint's namespace, "
        "loader runs/s = Δ`cache_fill_seconds_count` of that namespace (page or detail loads "
        "from the database), count loads/s = Δ of `cache_count_loads_total` (all labels; – "
        "where it has no sample: a tree without live counts, or none loaded since the server "
        "started), all from the server's `/metrics` (every "
        "worker) over the measured window. Enrollments/s counts the 2xx enrolls sent in the "
        "window, enroll p99 is from send to answer. Workers CPU is the gunicorn processes' "
        "CPU seconds per second (/proc), enroller CPU the enroller process's. Enroll errors "
        f"(non-2xx), checked and stale cover the whole enroller run: after every "
        f"{w['check_every']}th enroll has returned, the enroller reads the endpoint and compares "
        "the course's `enrolledCount` with PostgreSQL's count read just before the GET "
        "(before) and just after its answer (after): fresh iff before ≤ served ≤ after, no "
        "lag window. In brackets, the stale reads that stay stale when the course's enrolls "
        "still in flight (sent, not answered) as the GET left are allowed to be missing: "
        "before may count a write that committed but has not returned yet. Reads per "
        "read-CPU s = read req/s ÷ (workers CPU s/s − enrollments/s × the tree's CPU per "
        "enrollment, measured without reads, below each table); ÷ no writes compares it with "
        "the same tree's run at 0/s: the read path's own cost under the write load, on cores "
        "the enrollments share.",
        "",
    ]
    for endpoint in results["endpoints"]:
        runs = [r for r in results["runs"] if r["endpoint"] == endpoint["name"]]
        lines += [
            f"## {endpoint['name']}: {endpoint['label']}",
            "",
            f"Courses enrolled into: {', '.join(f'`{c}`' for c in endpoint['courses'][:3])}"
            + (f" and {len(endpoint['courses']) - 3} more" if len(endpoint["courses"]) > 3 else "")
            + f". Pairs available: {endpoint['pairs']:,} (a run uses rate × "
            f"{w['seconds']} s).",
            "",
            *table(runs, [t["name"] for t in meta["trees"]]),
            "",
        ]
        if any(not run.get("reads_on", True) for run in runs):
            lines += [
                f"What an enrollment costs, from a run with the enroller at "
                f"{meta['enroll_cost_rate']:g}/s and no reads:",
                "",
                *cost_table(runs),
                "",
            ]
    if results["notes"]:
        lines += ["## Notes", "", *[f"- {n}" for n in results["notes"]], ""]
    return "\n".join(lines)


def notes(runs: list[dict[str, Any]]) -> list[str]:
    out = []
    for run in runs:
        where = f"{run['endpoint']} at {run['rate']:g}/s on {run['tree']}"
        e = run["enroll"] or {}
        if run["imbalanced_retries"]:
            out.append(f"{where}: measured again, worker CPU balance {run['imbalanced_retries']}")
        if e.get("pairs_exhausted"):
            out.append(f"{where}: the enroller ran out of (learner, course) pairs")
        if e.get("stale_examples"):
            out.append(f"{where}: stale reads, e.g. {e['stale_examples']}")
        if e.get("problems"):
            out.append(f"{where}: enroller problems, e.g. {e['problems'][:3]}")
        if e and e["max_behind_ms"] > 100:
            out.append(
                f"{where}: the enroller fell behind its schedule by up to "
                f"{e['max_behind_ms']:.0f} ms in the window ({e['missed']} enrolls not sent "
                "by the end of its run)"
            )
        if run["foreign_cpu_share"] > 0.1:
            out.append(
                f"{where}: other processes used {100 * run['foreign_cpu_share']:.0f} % of the "
                "cores during the window"
            )
    return out


def write(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{results['meta']['date']}-write-heavy"
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    md = out_dir / f"{stem}.md"
    md.write_text(markdown(results))
    return md
