"""``bash .ci/manage <command>``: management commands against the running service, from a
fresh clone, with only what ``.ci/serve`` leaves in the state directory.

The clone holds the committed tree (as CI's checkout does), so this tests ``.ci/manage`` and
``.ci/services.sh`` as committed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import course_with_modules
from tests.live_server import ROOT
from tests.served import Served

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SECRET_KEY = "secret-of-this-service"


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    target = tmp_path / "chainlearn"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    return target


@pytest.fixture
def server() -> Iterator[Served]:
    srv = Served(SECRET_KEY=SECRET_KEY)
    srv.start()
    yield srv
    srv.stop()


def bare_env(state_dir: Path) -> dict[str, str]:
    """A login shell's environment: no Django settings, no venv on PATH. ``VENV`` points
    at the environment ``.ci/serve`` would have made in the clone (this test run's)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "STATE_DIR": str(state_dir),
        "VENV": sys.prefix,
    }


def manage(clone: Path, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(clone / ".ci/manage"), *args],
        env=bare_env(state_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_service_env_as_serve_does(clone: Path, state_dir: Path, server: Served) -> None:
    """``.ci/serve`` calls ``write_service_env`` with the environment the service runs in."""
    env = {**server.env(), "STATE_DIR": str(state_dir)}
    subprocess.run(
        ["bash", "-c", "set -euo pipefail; source .ci/services.sh; write_service_env"],
        cwd=clone,
        env=env,
        check=True,
    )


def test_cache_stats_and_a_query_run_against_the_running_service(clone, server, tmp_path):
    # given a running service that has served the course list twice (one miss, one hit)
    for i in range(3):
        course_with_modules(1, title=f"Course {i}")
    for _ in range(2):
        status, _body = server.get("/api/v1/courses")
        assert status == 200
    # and the settings file .ci/serve leaves in its state directory
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    write_service_env_as_serve_does(clone, state_dir, server)
    written = (state_dir / "service.env").read_text()
    assert "export DEBUG=false" in written and "export SECRET_KEY=" in written
    assert "PATH=" not in written  # only what the settings read
    assert (state_dir / "service.env").stat().st_mode & 0o077 == 0

    # when cache_stats runs through .ci/manage in a fresh clone, from a bare shell
    stats = manage(clone, state_dir, "cache_stats")

    # then it reads the service's Redis: the list's miss and hit are counted
    assert stats.returncode == 0, stats.stderr
    lines = stats.stdout.splitlines()
    header = lines[0].split()
    row = next(line.split() for line in lines if line.startswith("courses:list"))
    assert int(row[header.index("hits")]) >= 1
    assert int(row[header.index("misses")]) >= 1

    # and a query runs in the service's database, with DEBUG=false and its SECRET_KEY
    shell = manage(
        clone,
        state_dir,
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; from courses.models import Course; "
        "print(Course.objects.count(), settings.DEBUG, settings.SECRET_KEY)",
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.split() == ["3", "False", SECRET_KEY]


def test_without_a_started_service_it_says_what_to_do(clone, tmp_path):
    result = manage(clone, tmp_path / "never-served", "cache_stats")

    assert result.returncode == 1
    assert "start the service with 'bash .ci/serve' first" in result.stderr
    assert result.stdout == ""
