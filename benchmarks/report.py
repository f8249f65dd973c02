# ruff: noqa: RUF001
"""Targets, the markdown report, the chart, and the latest table in benchmarks/README.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.config import ROOT

README = ROOT / "benchmarks" / "README.md"
START, END = "<!-- latest-results:start -->", "<!-- latest-results:end -->"
# Wrappers every request passes through; left out of the profile tables.
PASS_THROUGH = (
    "ThreadWorker.handle_request", "WSGIHandler.__call__", "BaseHandler.get_response",
    "convert_exception_to_response", "MiddlewareMixin.__call__", "csrf_exempt",
    "View.as_view", "BaseHandler._get_response", "ThreadWorker.handle ", "_WorkItem.run",
)  # fmt: skip
# Where the cache runs, per ``run.sh --redis`` (the report's setup line).
REDIS_SETUPS = {
    "standalone": "one Redis server",
    "sentinel": "the master of a Sentinel setup (a master, a replica, three Sentinels; "
    "`--redis sentinel`)",
    "cluster": "a Redis Cluster (three masters, a replica of each; no in-process tier; Redis "
    "counts summed over the masters; `--redis cluster`)",
}
HOT = ("list_anon", "detail_anon", "list_auth", "progress", "history", "credentials")
ANONYMOUS = ("list_anon", "detail_anon")
AUTHENTICATED = ("list_auth", "progress", "history", "credentials")


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the issue, evaluated on this run's numbers."""
    runs = results["runs"]
    cached, uncached = runs.get("cached", {}), runs.get("uncached", {})
    out: list[dict[str, Any]] = []

    def add(name: str, value: str, goal: str, met: bool | None) -> None:
        out.append({"target": name, "value": value, "goal": goal, "met": met})

    if "list_anon" in cached and "health" in cached:
        ratio = cached["list_anon"]["rps"] / cached["health"]["rps"]
        add(
            "cached anonymous list req/s ÷ /health/live req/s",
            f"{ratio:.2f}",
            "≥ 0.60",
            ratio >= 0.6,
        )
    for name, plain in (("list_anon_304", "list_anon"), ("detail_anon_304", "detail_anon")):
        if name in cached and plain in cached and "health" in cached:
            run = cached[name]
            add(
                f"{run['label']}: req/s ÷ plain GET (÷ /health/live)",
                f"{run['rps'] / cached[plain]['rps']:.2f} "
                f"({run['rps'] / cached['health']['rps']:.2f}); "
                f"{run['bytes_per_req']:.0f} bytes/answer",
                "≥ 1.00 (a 304 costs no more than a cached 200)",
                run["rps"] >= cached[plain]["rps"] * 0.98,
            )
    for name in HOT:
        if name in cached and name in uncached:
            ratio = cached[name]["rps"] / uncached[name]["rps"]
            goal = 5.0 if name == "list_anon" else 3.0
            add(
                f"{cached[name]['label']}: cached ÷ uncached req/s",
                f"{ratio:.1f}×",
                f"≥ {goal:.0f}×",
                ratio >= goal,
            )
    for name in HOT:
        if name in cached and name in uncached:
            c99, u99 = cached[name]["latency_ms"]["p99"], uncached[name]["latency_ms"]["p99"]
            add(
                f"{cached[name]['label']}: cached p99 ÷ uncached p99",
                f"{c99 / u99:.2f}",
                "≤ 0.33",
                c99 <= u99 / 3,
            )
    for name in HOT:
        if name in cached:
            run = cached[name]
            limit = 0 if name in ANONYMOUS else 2
            per_hit = run["sql_per_hit"]
            note = f"{_fmt(per_hit, 2)} (+{run['sql_pings_per_req']:.2f} health-check pings/req)"
            add(
                f"{run['label']}: SQL per cached hit",
                note,
                f"≤ {limit}",
                None if per_hit is None else per_hit <= limit + 0.005,
            )
    mixed = results.get("mixed")
    if mixed:
        rate = mixed["hit_rate"].get("courses:detail")
        add(
            "mixed workload: course-detail hit rate",
            _pct(rate),
            "≥ 90 %",
            rate is not None and rate >= 0.9,
        )
        stale = sum(mixed["stale"].values())
        add(
            "mixed workload: stale reads",
            f"{stale} of {sum(mixed['checked'].values())} checked",
            "0",
            stale == 0 and sum(mixed["checked"].values()) > 0,
        )
    inval = results.get("invalidation")
    if inval and len(inval) >= 2:
        first = inval[0]
        repeat = next((r for r in inval if r.get("repeat")), first)
        large = max(inval, key=lambda r: r["keys"])
        base = (first["median_us"] + repeat["median_us"]) / 2
        noise = max(
            abs(first["median_us"] - repeat["median_us"]),
            *(r.get("block_median_spread_us", 0.0) for r in inval),
            0.15 * base,
        )
        diff = large["median_us"] - base
        add(
            f"invalidation: {first['keys']:,} vs {large['keys']:,} live keys (median)",
            f"{base:.0f} µs vs {large['median_us']:.0f} µs (Δ {diff:+.0f} µs, "
            f"noise {noise:.0f} µs)",
            f"no slower at {large['keys']:,} beyond noise",
            diff <= noise,
        )
        worst = max(r["median_us"] for r in inval)
        add(
            "invalidation: time per namespace flush (median)",
            f"{worst:.0f} µs",
            "< 1 ms",
            worst < 1000,
        )
    return out


def _table(results: dict[str, Any]) -> list[str]:
    runs = results["runs"]
    lines = [
        "| endpoint | mode | req/s | p50 ms | p95 ms | p99 ms | SQL/req | SQL/hit | "
        "pings/req | Redis cmds/req | Lua calls/req | hit rate | worker CPU ms/req | "
        "other load | cached ÷ uncached req/s | p99 cached ÷ uncached | ÷ /health/live |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    names = list(next(iter(runs.values())).keys()) if runs else []
    for name in names:
        for mode in ("cached", "nol1", "nofast", "routed", "uncached"):
            run = runs.get(mode, {}).get(name)
            if run is None:
                continue
            other = runs.get("uncached", {}).get(name)
            floor = runs.get(mode, {}).get("health")
            of_floor = f"{run['rps'] / floor['rps']:.2f}" if floor and name != "health" else ""
            ratio = p99 = ""
            if mode != "uncached" and other:
                ratio = f"**{run['rps'] / other['rps']:.1f}×**"
                p99 = f"{run['latency_ms']['p99'] / other['latency_ms']['p99']:.2f}"
            lat = run["latency_ms"]
            lines.append(
                f"| {run['label']} | {mode} | {run['rps']:,.0f} | {lat['p50']:.2f} | "
                f"{lat['p95']:.2f} | {lat['p99']:.2f} | {run['sql_per_req']:.2f} | "
                f"{_fmt(run['sql_per_hit'], 2)} | {run['sql_pings_per_req']:.2f} | "
                f"{run['redis_per_req']:.2f} | {run['lua_per_req']:.2f} | "
                f"{_pct(run['hit_rate'])}{_auth(run)} | {run['worker_cpu_ms_per_req']:.2f} | "
                f"{100 * run['foreign_cpu_share']:.0f} % | {ratio} | {p99} | {of_floor} |"
            )
    return lines


def _noise(results: dict[str, Any]) -> list[str]:
    """Both servers serve /health/live identically: its ratios show the run's noise."""
    runs = results["runs"]
    cached, uncached = runs.get("cached", {}).get("health"), runs.get("uncached", {}).get("health")
    if not cached or not uncached:
        return []
    rps = cached["rps"] / uncached["rps"]
    p99 = cached["latency_ms"]["p99"] / uncached["latency_ms"]["p99"]
    return [
        f"Noise: `/health/live` does the same work on both servers, yet its cached ÷ uncached "
        f"ratios in this run are {rps:.2f}× req/s and {p99:.2f} p99. Read req/s ratios as "
        f"±{100 * abs(rps - 1):.0f} % and p99 ratios as ±{100 * abs(p99 - 1):.0f} % "
        "(p99 of a 10 s closed-loop run is set by a few hundred slowest requests).",
        "",
    ]


def _events(results: dict[str, Any]) -> list[str]:
    """Redis timeouts, breaker openings and epoch bumps logged during measured runs, and
    runs measured again because one worker served (almost) every connection."""
    seen = []
    retried = [
        f"{run['label']} ({mode}): worker CPU balance {run['imbalanced_retries']}"
        for mode, runs in results["runs"].items()
        for run in runs.values()
        if run.get("imbalanced_retries")
    ]
    out = []
    if retried:
        out += [
            f"{len(retried)} run(s) were measured again because wrk's 32 keep-alive "
            "connections had nearly all been accepted by one of the two gunicorn workers "
            "(worker CPU min/max below 0.5: the run measured one worker, not the server); "
            "the table shows the balanced re-run:",
            "",
            *[f"- {line}" for line in retried],
            "",
        ]
    for mode, runs in results["runs"].items():
        for run in runs.values():
            events = {k: v for k, v in run.get("log_events", {}).items() if v}
            if events:
                seen.append(f"{run['label']} ({mode}): {events}")
    mixed = results.get("mixed", {})
    events = {k: v for k, v in mixed.get("log_events", {}).items() if v}
    if events:
        seen.append(f"mixed workload: {events}")
    if not seen:
        return [*out, "No Redis errors, breaker openings or epoch bumps were logged.", ""]
    return [
        *out,
        "Cache events logged by the workers during measured runs:",
        "",
        *[f"- {line}" for line in seen],
        "",
    ]


def _auth(run: dict[str, Any]) -> str:
    rate = run.get("auth_hit_rate")
    return "" if rate is None else f" (token {_pct(rate)})"


def _targets_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | this run | goal | met |", "|---|--:|--:|:-:|"]
    for row in rows:
        mark = {True: "✅ met", False: "❌ missed", None: "n/a"}[row["met"]]
        lines.append(f"| {row['target']} | {row['value']} | {row['goal']} | {mark} |")
    return lines


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    names = [n for n in next(iter(runs.values())) if n in runs.get("uncached", {})]
    labels = [runs["cached"][n]["label"].replace(" (", "\n(") for n in names]
    x = range(len(names))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 8.5), sharex=True)
    width = 0.38
    for offset, mode, color in (
        (-width / 2, "cached", "#2a9d8f"),
        (width / 2, "uncached", "#e76f51"),
    ):
        rps = [runs[mode][n]["rps"] for n in names]
        p99 = [runs[mode][n]["latency_ms"]["p99"] for n in names]
        bars = top.bar([i + offset for i in x], rps, width, label=mode, color=color)
        top.bar_label(bars, labels=[f"{v:,.0f}" for v in rps], fontsize=7, padding=2)
        bars = bottom.bar([i + offset for i in x], p99, width, label=mode, color=color)
        bottom.bar_label(bars, labels=[f"{v:.1f}" for v in p99], fontsize=7, padding=2)
    top.set_ylabel("requests / s")
    top.set_title(
        f"ChainLearn hot paths, cached vs uncached ({results['meta']['date']}; "
        f"{results['meta']['workers']} gunicorn workers × {results['meta']['threads']} threads, "
        f"wrk {results['meta']['connections']} connections, 2 shared cores)"
    )
    top.legend()
    top.grid(axis="y", alpha=0.3)
    bottom.set_ylabel("p99 latency (ms)")
    bottom.grid(axis="y", alpha=0.3)
    bottom.set_xticks(list(x))
    bottom.set_xticklabels(labels, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], out_dir: Path) -> Path:
    date = results["meta"]["date"]
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{date}.png"
    chart(results, png)
    (out_dir / f"{date}.json").write_text(json.dumps(results, indent=1, default=str))
    rows = targets(results)
    results["targets"] = rows
    md = out_dir / f"{date}.md"
    md.write_text("\n".join(_markdown(results, rows, png.name)) + "\n")
    _update_readme(results, rows, md.name, png.name)
    return md


def _markdown(results: dict[str, Any], rows: list[dict[str, Any]], png: str) -> list[str]:
    meta = results["meta"]
    db = results["database"]
    counts = db["counts"]
    lines = [
        f"# ChainLearn cache benchmark, {meta['date']}",
        "",
        f"Command: `{meta['command']}` — total runtime {meta['runtime_s'] / 60:.1f} min "
        f"({'seeded the template database' if db['reseeded'] else 'reused the seeded template'}"
        f", {db['seed_seconds']:.0f} s; copy {db['copy_seconds']:.0f} s).",
        "",
        f"![req/s and p99 per endpoint, cached vs uncached]({png})",
        "",
        "## Setup",
        "",
        f"- Data: {counts['courses_course']:,} courses, {counts['users_user']:,} users, "
        f"{counts['courses_enrollment']:,} enrollments, "
        f"{counts['courses_quizsubmission']:,} quiz submissions, "
        f"{counts['rewards_reward']:,} rewards, {counts['credentials_credential']:,} credentials "
        f"(`seed_demo {meta.get('seed_args', '')}`).",
        f"- Server: gunicorn `-c python:chainlearn.gunicorn_conf`, {meta['workers']} workers × "
        f"{meta['threads']} threads (gthread), DEBUG=false, persistent DB connections, "
        "cache warmed on start, PostgreSQL 15 and Redis 7 on loopback (PostgreSQL with "
        "fsync off, as in the project's service script); the cache on "
        + REDIS_SETUPS[meta.get("redis_mode", "standalone")]
        + ". Two servers run side by side, "
        "`CACHE_ENABLED=true` and `false`; each endpoint is measured on one, then at once on "
        f"the other, {meta.get('rounds', 1)} time(s) in alternating order (cached first, then "
        "uncached first), so both modes of a ratio see the same machine; req/s and latency "
        "percentiles are the mean over the rounds, per-request figures are weighted by "
        "requests.",
        f"- Load: wrk, {meta['wrk_threads']} threads, {meta['connections']} connections, "
        f"{meta['warmup']} s warm-up then {meta['duration']} s measured per endpoint, mode "
        "and round; "
        f"requests rotate over {meta['courses']} course ids, {meta['list_variants']} list "
        f"pages (4 difficulty filters × 5 pages) and {meta['tokens']} learners' bearer tokens.",
        "- **The machine has 2 cores, shared by wrk, gunicorn, PostgreSQL and Redis**: "
        "absolute numbers are low and the load generator takes CPU from the server; ratios "
        "from the same run are what the targets compare.",
        "- SQL/req counts statements in `pg_stat_statements` for the app database; "
        "pings/req are Django's `CONN_HEALTH_CHECKS` `SELECT 1` before the first query of a "
        "request, listed apart. SQL/hit = (SQL − Σ misses × that namespace's loader queries) "
        "÷ requests: what a request costs when every cache lookup hits. "
        "Redis cmds/req is `INFO commandstats` (commands run inside the Lua scripts count "
        "too); Lua calls/req is EVALSHA calls, i.e. cache round trips. Hit rate is "
        "`cache_hits_total ÷ (hits + misses)` from the service's /metrics over the run "
        "(requests served from the database while a circuit breaker was open count as "
        'misses); "token" is the bearer-token principal cache of authenticated requests. '
        "Worker CPU ms/req is the gunicorn processes' CPU time (/proc) per "
        "request; other load is the share of the 2 cores used by processes outside the "
        "benchmark (other jobs on this machine) during the run; before each run the "
        "benchmark waits up to 20 s for the machine to go quiet "
        f"({results.get('quiet_wait_s', 0):.0f} s waited in all).",
        "",
        "## Results",
        "",
        *_table(results),
        "",
        *_noise(results),
        *_events(results),
        "## Targets",
        "",
        *_targets_table(rows),
        "",
    ]
    mixed = results.get("mixed")
    if mixed:
        lines += _mixed_section(mixed)
    inval = results.get("invalidation")
    if inval:
        lines += [
            "## Invalidation cost",
            "",
            '`caching.invalidation.flush(["courses:list"])` timed in-process '
            f"({inval[0]['rounds']} rounds per size), with the list namespace holding N live "
            "entries (keys from the list manager's `slot()`; the generation is set back after "
            "each timed flush so every flush faces N live keys). The smallest size is measured "
            "first and again last (after the extra keys are deleted). Noise is the largest of: "
            "the drift between those two medians, the spread of the medians of 10 consecutive "
            "blocks within any size, and 15 % of the small-size median. The target (O(1): the "
            "cost does not grow with the key count) is met when the largest size's median "
            "exceeds the small-size median by no more than that noise.",
            "",
            "| live keys | keys in Redis | median µs | p25 µs | p75 µs | p99 µs | max µs | "
            "probe hits before / after flush |",
            "|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for r in inval:
            lines.append(
                f"| {r['keys']:,}{' (again)' if r.get('repeat') else ''} | "
                f"{r['redis_keys_total']:,} | {r['median_us']:.0f} | "
                f"{r['p25_us']:.0f} | {r['p75_us']:.0f} | {r['p99_us']:.0f} | "
                f"{r['max_us']:.0f} | {r['live_probe_hits']}/200 → "
                f"{r['live_probe_hits_after_flush']}/200 |"
            )
        lines.append("")
    profiles = results.get("profiles")
    if profiles:
        lines += _profile_section(profiles)
    if results.get("sql_top"):
        lines += ["## Statements per endpoint (cached mode, top 3)", ""]
        for name, top in results["sql_top"].items():
            lines.append(f"- **{name}**: " + "; ".join(f"{c}× `{q}`" for c, q in top[:3]))
        lines.append("")
    if results.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in results["notes"]], ""]
    return lines


def _mixed_section(mixed: dict[str, Any]) -> list[str]:
    wrk = mixed["wrk"]
    lines = [
        "## Mixed workload (cache enabled)",
        "",
        f"{mixed['duration']} s: wrk ({mixed['connections']} connections) reads — 50 % course "
        "detail, 15 % course list, 15 % progress, 10 % reward history, 10 % credentials — "
        f"at {wrk['rps']:,.0f} req/s (p50 {wrk['latency_ms']['p50']:.1f} ms, "
        f"p99 {wrk['latency_ms']['p99']:.1f} ms, {wrk['errors']['status']} non-2xx; other "
        f"load {100 * mixed.get('foreign_cpu_share', 0):.0f} %; worker CPU balance "
        f"{mixed.get('worker_balance', 1.0):.2f}); "
        "meanwhile Python threads write at a steady rate through the API and the admin, and "
        "check reads against PostgreSQL (see `benchmarks/mixed.py` for the freshness rule).",
        "",
        "| write | rate asked /s | done | failed | achieved /s | median ms |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for kind, asked in mixed["rates"].items():
        done = mixed["writes"].get(kind, 0)
        lines.append(
            f"| {kind} | {asked} | {done} | {mixed['write_failures'].get(kind, 0)} | "
            f"{done / mixed['duration']:.2f} | {_fmt(mixed['write_median_ms'].get(kind))} |"
        )
    lines += ["", "| read checked | checked | stale | errors |", "|---|--:|--:|--:|"]
    for kind in ("detail", "list", "progress", "history", "credentials"):
        lines.append(
            f"| {kind} | {mixed['checked'].get(kind, 0)} | {mixed['stale'].get(kind, 0)} | "
            f"{mixed['errors'].get(kind, 0)} |"
        )
    other_errors = {
        k: v
        for k, v in mixed["errors"].items()
        if k not in ("detail", "list", "progress", "history", "credentials")
    }
    lines += [
        "",
        "Hit rate during the mixed run: "
        + ", ".join(f"{ns} {_pct(rate)}" for ns, rate in mixed["hit_rate"].items())
        + ".",
        f"Course-list counts below the database's after the read: "
        f"{mixed['list_lagging_items']} items, at most {mixed['list_max_lag']} enrollment(s) "
        "behind (only enrollments still in flight may be missing).",
    ]
    if other_errors:
        lines.append(f"Write/driver errors: {other_errors}.")
    if mixed["examples"]:
        lines += [
            "",
            "First problems seen:",
            "",
            "```",
            *[json.dumps(e, default=str)[:600] for e in mixed["examples"]],
            "```",
        ]
    lines.append("")
    return lines


def _profile_section(profiles: dict[str, Any]) -> list[str]:
    lines = [
        "## Profiles of missed targets (py-spy under the same wrk load)",
        "",
        "One worker sampled with `--gil` (CPU: the thread holding the GIL), the other with "
        "`--idle` (wall time of every request thread, socket waits included). Percentages "
        "are of samples inside gunicorn's `handle_request`; layers are charged to the "
        "innermost non-stdlib frame. Collapsed stacks (gzipped, for any flamegraph tool) "
        "are in `results/profiles/`.",
        "",
    ]
    for name, prof in profiles.items():
        lines += [
            f"### {name}",
            "",
            f"req/s while profiled: {_fmt(prof.get('rps_while_profiled'), 0)}",
            "",
        ]
        for view, title in (("cpu", "CPU (GIL held)"), ("wall", "wall time")):
            summary = prof.get(view)
            if not summary:
                continue
            lines += [
                f"**{title}**, {summary['samples_in_requests']:,} samples "
                f"(`{summary['file']}`): "
                + ", ".join(f"{layer} {share} %" for layer, share in summary["layers"]),
                "",
                "| function (inclusive) | % |",
                "|---|--:|",
                *[
                    f"| `{f}` | {sh} |"
                    for f, sh in summary["inclusive"]
                    if not f.startswith(PASS_THROUGH) and "Middleware.__call__" not in f
                ][:16],
                "",
            ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Re-render a report from its JSON: ``python -m benchmarks.report results/<date>.json``."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.report benchmarks/results/<date>.json")
        return 2
    path = Path(args[0])
    results = json.loads(path.read_text())
    print(write(results, path.parent))
    return 0


def _update_readme(results: dict[str, Any], rows: list[dict[str, Any]], md: str, png: str) -> None:
    if not README.exists():
        return
    text = README.read_text()
    if START not in text or END not in text:
        return
    block = "\n".join(
        [
            START,
            f"Latest run: [{md}](results/{md}) ({results['meta']['date']}, "
            f"{results['meta']['runtime_s'] / 60:.1f} min).",
            "",
            f"![chart](results/{png})",
            "",
            *_table(results),
            "",
            *_targets_table(rows),
            END,
        ]
    )
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(head + block + tail)


if __name__ == "__main__":
    raise SystemExit(main())
