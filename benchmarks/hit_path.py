"""The cost of one cache hit, two trees side by side in one run.

``bash benchmarks/run.sh --hit-path --compare-root PATH [--hits N] [--rounds R]`` copies
the seeded database as the other scenarios do, then, ``R`` times, runs
``benchmarks/hit_path_child.py`` once per tree (alternating which goes first; Redis flushed
before each) and reports the wall and CPU microseconds per hit of the course list's first
page and a course detail, and after ÷ before. In process, without HTTP or a server: what
a tree adds to or removes from the hit itself (the lookup script and its handling), which
the HTTP benchmarks cannot resolve under their run-to-run noise.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import services
from benchmarks.config import RESULTS, ROOT, from_args, parser
from benchmarks.services import Server, log

CHILD = Path(__file__).resolve().parent / "hit_path_child.py"


def run_child(config: Any, root: Path, hits: int) -> dict[str, Any]:
    services.flush_cache_redis(config)
    # The environment the harness gives its servers (settings, URLs, the tree first on
    # PYTHONPATH); no server is started.
    server = Server(
        config,
        mode="cached",
        root=root,
        secret_key=secrets.token_urlsafe(40),
        metrics_token=secrets.token_urlsafe(24),
    )
    try:
        done = subprocess.run(
            [sys.executable, str(CHILD), str(hits)],
            cwd=root,
            env=server.env(),
            capture_output=True,
            text=True,
        )
    finally:
        server.stop()  # removes its metrics directory
    if done.returncode:
        raise RuntimeError(f"{root}: hit_path_child.py failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["caching"]).resolve().parent != root.resolve():
        raise RuntimeError(f"{root}: ran the caching package of {result['caching']}")
    return result


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    p = parser()
    p.prog = "python -m benchmarks.hit_path"
    p.add_argument("--compare-root", type=Path, required=True, help="the older checkout")
    p.add_argument("--hits", type=int, default=20000, help="hits per endpoint per run")
    a = p.parse_args(argv)
    config = from_args(p, a)
    date = config.date or datetime.now(UTC).strftime("%Y-%m-%d")
    config = replace(config, date=date)
    trees = {"before": a.compare_root.resolve(), "after": ROOT}
    log(f"preparing database ({config.seed})")
    services.prepare_database(config)
    runs: list[dict[str, Any]] = []
    for round_ in range(config.rounds):
        order = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
        for name in order:
            result = run_child(config, trees[name], a.hits)
            runs.append({"tree": name, "round": round_, **result})
            log(f"round {round_} {name}: {result}")
    summary = {
        name: {
            endpoint: {
                unit: statistics.mean(r[endpoint][unit] for r in runs if r["tree"] == name)
                for unit in ("wall_us", "cpu_us")
            }
            for endpoint in ("list", "detail")
        }
        for name in trees
    }
    command = os.environ.get("BENCH_COMMAND") or "python -m benchmarks.hit_path"
    lines = [
        f"# Cache hit cost, {date}",
        "",
        f"Command: `{command}` — {(time.monotonic() - started) / 60:.1f} min. "
        f"{a.hits:,} hits per endpoint per run, {config.rounds} rounds, trees alternating.",
        "",
        "Trees: " + "; ".join(f"{name} `{root}`" for name, root in trees.items()) + ".",
        "",
        "| endpoint | before wall µs | after wall µs | after ÷ before | before CPU µs | "
        "after CPU µs | after ÷ before |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for endpoint in ("list", "detail"):
        b, f = summary["before"][endpoint], summary["after"][endpoint]
        lines.append(
            f"| {endpoint} | {b['wall_us']:.1f} | {f['wall_us']:.1f} | "
            f"{f['wall_us'] / b['wall_us']:.2f} | {b['cpu_us']:.1f} | {f['cpu_us']:.1f} | "
            f"{f['cpu_us'] / b['cpu_us']:.2f} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"{date}-hit-path"
    stem.with_suffix(".json").write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    log(f"report written: {stem}.md")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
