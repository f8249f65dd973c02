"""The README's curl session for the learner journey, run as written (extracted from
README.md, so the README cannot drift) against a live gunicorn serving seed_demo's data, as
a new user runs it after ``.ci/serve``: every step's response and status."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from courses.models import Course, Quiz
from tests.live_server import ROOT
from tests.served import Served

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MARKER = "<!-- readme-tour:"
SMALL_DEMO = ["--courses", "12", "--users", "10", "--enrollments", "30", "--submissions", "40"]
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>[^ ?"]+)[^"]*" (?P<status>\d{3}) ')


def readme_tour() -> str:
    """The ```sh block that follows the tour marker in README.md."""
    readme = (ROOT / "README.md").read_text()
    after = readme[readme.index(MARKER) :]
    match = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
    assert match, "no ```sh block after the tour marker"
    return match.group(1)


@pytest.fixture
def access_log(tmp_path: Path) -> Path:
    return tmp_path / "access.log"


@pytest.fixture
def server(access_log: Path) -> Iterator[Served]:
    srv = Served(GUNICORN_ACCESS_LOG=str(access_log))
    srv.start()
    yield srv
    srv.stop()


def test_readme_learner_journey_runs_as_written(server, access_log):
    # given the demo data .ci/serve seeds (small), whose newest course is the tour course
    call_command("seed_demo", *SMALL_DEMO, stdout=StringIO())
    active = Course.objects.filter(is_active=True).order_by("-created_at")
    newest = active.first()
    assert newest is not None
    course = str(newest.pk)
    quizzes = [
        str(pk)
        for pk in Quiz.objects.filter(module__course=newest)
        .order_by("module__order")
        .values_list("pk", flat=True)
    ]
    assert len(quizzes) >= 3

    # when the README's block runs in a shell, pointed at this server
    script = readme_tour()
    assert "Content-Type: application/json" in script
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "API": f"{server.base_url}/api/v1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    # then each step printed its success
    failed = [body for body in printed if body.get("success") is not True]
    assert failed == [], result.stdout
    register, listing, enroll, *per_quiz, history, mint, credentials = printed
    assert register["success"] is True
    assert register["data"]["token"]
    assert register["data"]["user"]["username"].startswith("ada-")
    assert [c["id"] for c in listing["data"]] == [str(c.pk) for c in active[:3]]
    assert listing["pagination"] == {"page": 1, "limit": 3, "total": active.count()}
    assert enroll == {"success": True, "message": "Enrolled successfully"}
    assert len(per_quiz) == 3 * len(quizzes)
    submissions = []
    for index, quiz_id in enumerate(quizzes):
        quiz, submitted, claim = per_quiz[3 * index : 3 * index + 3]
        assert quiz["data"]["id"] == quiz_id
        assert len(quiz["data"]["questions"]) == 5
        assert "correctIndex" not in quiz["data"]["questions"][0]
        assert submitted["data"]["score"] == 5
        assert submitted["data"]["passed"] is True
        assert submitted["data"]["rewardAvailable"] is True
        assert claim["data"]["submissionId"] == submitted["data"]["id"]
        assert claim["data"]["amount"] == settings.REWARD_AMOUNT
        submissions.append(submitted["data"]["id"])
    assert [item["id"] for item in history["data"]] == submissions[::-1]
    assert {item["courseTitle"] for item in history["data"]} == {newest.title}
    assert set(mint["data"]) == {"credentialId", "assetCode", "message"}
    assert [(c["id"], c["courseId"]) for c in credentials["data"]] == [
        (mint["data"]["credentialId"], course)
    ]

    # and the service answered each request with the contract's status
    server.stop()
    logged = [
        (m["method"], m["path"], int(m["status"]))
        for m in map(ACCESS_LINE.search, access_log.read_text().splitlines())
        if m and m["path"] != "/health/live"
    ]
    api = "/api/v1"
    expected = [
        ("POST", f"{api}/auth/register", 201),
        ("GET", f"{api}/courses", 200),
        ("GET", f"{api}/courses", 200),
        ("POST", f"{api}/courses/{course}/enroll", 201),
        ("GET", f"{api}/courses/{course}", 200),
    ]
    for quiz_id in quizzes:
        expected += [
            ("GET", f"{api}/quizzes/{quiz_id}", 200),
            ("POST", f"{api}/quizzes/{quiz_id}/submit", 200),
            ("POST", f"{api}/rewards/claim", 200),
        ]
    expected += [
        ("GET", f"{api}/rewards/history", 200),
        ("POST", f"{api}/credentials/mint", 201),
        ("GET", f"{api}/credentials", 200),
    ]
    assert logged == expected
