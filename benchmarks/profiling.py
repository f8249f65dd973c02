"""py-spy profiles of the gunicorn workers while wrk drives one endpoint.

The two workers serve the same load, so each gets one view: the first is sampled with
``--gil`` (only the thread holding the GIL: where CPU goes, the resource two cores run out
of), the second with ``--idle`` (every request thread, waiting included: where a request's
wall time goes, e.g. PostgreSQL or Redis round trips). ``--nonblocking`` so sampling never
pauses a worker (a paused worker would trip the cache's 50 ms Redis timeout). Only stacks
under gunicorn's ``handle_request`` are summarized, by layer and by function.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.config import Config
from benchmarks.load import wrk

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*):(?P<line>\d+)\)$")
LAYERS = (
    ("PostgreSQL (psycopg, socket wait included)", ("psycopg/", "psycopg_binary", "psycopg_c")),
    ("Redis client (socket wait included)", ("redis/", "django_redis/")),
    ("project cache layer", ("caching/",)),
    ("JSON encode/decode", ("json/",)),
    ("Prometheus metrics", ("prometheus_client/", "django_prometheus/")),
    ("Django ORM / SQL compiler", ("django/db/",)),
    ("DRF", ("rest_framework/",)),
    ("Django request/response, middleware", ("django/",)),
    ("gunicorn", ("gunicorn/",)),
    (
        "project views/selectors/auth",
        ("courses/", "users/", "rewards/", "credentials/", "chainlearn/"),
    ),
)


def pyspy() -> str:
    return str(Path(sys.executable).with_name("py-spy"))


def _read(path: Path) -> Counter[str]:
    stacks: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks[stack] += int(count)
    return stacks


def record(config: Config, server: Any, lua: Path, out_dir: Path, name: str) -> dict[str, Any]:
    """Profile the workers for ``config.profile_seconds`` under load; returns summaries."""
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds = config.profile_seconds
    pids = server.worker_pids()
    views = [("cpu", "--gil"), ("wall", "--idle")][: len(pids)]
    files = {view: out_dir / f"{name}.{view}.collapsed.txt" for view, _ in views}
    errors: dict[str, Path] = {view: config.work_dir / f"py-spy-{view}.err" for view, _ in views}
    procs = []
    for pid, (view, flag) in zip(pids, views, strict=False):
        command = [
            pyspy(), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
            flag, "--nonblocking", "--format", "raw", "--output", str(files[view]),
        ]  # fmt: skip
        with open(errors[view], "wb") as err:
            procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err))
    result: dict[str, Any] = {}
    load = threading.Thread(
        target=lambda: result.update(wrk(config, server.base_url, lua, seconds=seconds + 2)),
        daemon=True,
    )
    load.start()
    for proc in procs:
        proc.wait(timeout=seconds + 60)
    load.join(timeout=seconds + 60)
    summary: dict[str, Any] = {"rps_while_profiled": result.get("rps")}
    for view, path in files.items():
        summary[view] = summarize(_read(path))
        if not summary[view]["samples_in_requests"]:
            summary[view]["error"] = errors[view].read_text(errors="replace")[-300:]
        packed = path.with_name(path.name + ".gz")
        if path.exists():
            packed.write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
        summary[view]["file"] = packed.name
    return summary


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for raw in stack.split(";"):
        match = FRAME.match(raw.strip())
        if match:
            out.append((match["func"], match["file"]))
        else:
            out.append((raw.strip(), ""))
    return out


def _layer(path: str) -> str:
    for layer, needles in LAYERS:
        if any(n in path for n in needles):
            return layer
    return "other (stdlib, threading)"


def summarize(stacks: Counter[str]) -> dict[str, Any]:
    in_request: Counter[str] = Counter()
    leaf_layers: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for stack, count in stacks.items():
        frames = _frames(stack)
        starts = [i for i, (f, _) in enumerate(frames) if f.endswith("handle_request")]
        if not starts:
            continue
        total += count
        start = starts[0]
        request_frames = frames[start:]
        # Layer of the innermost frame that is not stdlib, so a socket wait is charged to the
        # client library that waits.
        layer = "other (stdlib, threading)"
        for _, path in reversed(request_frames):
            candidate = _layer(path)
            if not candidate.startswith("other"):
                layer = candidate
                break
        leaf_layers[layer] += count
        seen = set()
        for func, path in request_frames:
            short = f"{func} ({_short(path)})"
            if short not in seen:
                seen.add(short)
                inclusive[short] += count
        in_request[stack] += count
    share = (lambda n: round(100 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples_in_requests": total,
        "layers": [(layer, share(n)) for layer, n in leaf_layers.most_common()],
        "inclusive": [(f, share(n)) for f, n in inclusive.most_common(25)],
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path
