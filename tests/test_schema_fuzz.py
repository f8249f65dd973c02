"""Contract fuzzing: schemathesis drives every operation of the app's own /api/v1/schema/
with schema-valid and schema-violating requests, anonymous and with a real bearer token.

Every response must be no 5xx, have a documented status code and content type, and match
the documented schema (success envelopes and error envelopes alike). Generation is
derandomized with a fixed example budget, so a run is repeatable. Path and body ids are
drawn half from random UUIDs and half from real rows, so success paths are exercised too.
All failures are collected and reported together (operation, case, expected vs actual).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import (
    PASSWORD,
    CredentialFactory,
    EnrollmentFactory,
    QuizSubmissionFactory,
    RewardFactory,
    UserFactory,
    course_with_modules,
    token_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
LOGOUT = "POST /api/v1/auth/logout"
EXPECTED_OPERATIONS = {
    "POST /api/v1/auth/register",
    "POST /api/v1/auth/token",
    "POST /api/v1/auth/logout",
    "GET /api/v1/users/me",
    "PUT /api/v1/users/me",
    "GET /api/v1/users/me/progress",
    "GET /api/v1/courses",
    "GET /api/v1/courses/{course_id}",
    "POST /api/v1/courses/{course_id}/enroll",
    "GET /api/v1/quizzes/{quiz_id}",
    "POST /api/v1/quizzes/{quiz_id}/submit",
    "POST /api/v1/rewards/claim",
    "GET /api/v1/rewards/history",
    "POST /api/v1/credentials/mint",
    "GET /api/v1/credentials",
}


@pytest.fixture(autouse=True)
def no_rate_limits(settings: Any) -> None:
    """Hundreds of logins from one address would only meet the (documented) 429."""
    settings.RATE_LIMITS = {scope: (100_000, 60) for scope in settings.RATE_LIMITS}


@pytest.fixture
def world() -> dict[str, Any]:
    """A learner with something of everything, plus rows of another learner and inactive ones."""
    learner = UserFactory()
    started = course_with_modules(3, title="Fuzz started")  # one quiz left unanswered
    EnrollmentFactory(user=learner, course=started)
    quizzes = [m.quiz for m in started.modules.order_by("order")]
    passed = QuizSubmissionFactory(user=learner, quiz=quizzes[0])
    completed = course_with_modules(1, title="Fuzz completed")
    EnrollmentFactory(user=learner, course=completed, completed_at=timezone.now())
    claimed = QuizSubmissionFactory(user=learner, quiz=completed.modules.get().quiz)
    RewardFactory(submission=claimed)
    minted = course_with_modules(1, title="Fuzz minted")
    EnrollmentFactory(user=learner, course=minted, completed_at=timezone.now())
    CredentialFactory(user=learner, course=minted)
    open_course = course_with_modules(1, title="Fuzz open", difficulty="advanced")
    inactive = course_with_modules(1, title="Fuzz inactive", is_active=False)
    other = UserFactory()
    failed = QuizSubmissionFactory(user=learner, quiz=quizzes[1], score=1)
    foreign = QuizSubmissionFactory(user=other, quiz=open_course.modules.get().quiz)
    course_ids = [str(c.id) for c in (started, completed, minted, open_course, inactive)]
    quiz_ids = [str(q.id) for q in quizzes] + [
        str(c.modules.first().quiz.id) for c in (completed, open_course, inactive)
    ]
    submission_ids = [str(s.id) for s in (passed, claimed, failed, foreign)]
    return {
        "learner": learner,
        "course_id": course_ids,
        "quiz_id": quiz_ids,
        "courseId": course_ids,
        "submissionId": submission_ids,
        "username": [learner.username],
        "password": [PASSWORD],
    }


def load_schema(world: dict[str, Any], *, learner: Any | None, real_ids: bool) -> Any:
    """The served schema, bound to the WSGI app, with hooks that shape generated requests.

    With a ``learner`` every request carries their bearer token (logout gets a fresh token
    each time, so it cannot log the rest of the run out). With ``real_ids`` (positive data
    only: a negative case must stay invalid) ids are drawn half from real rows.
    """
    from chainlearn.wsgi import application

    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
    token = token_for(learner) if learner else None

    @schema.hook
    def map_headers(context: Any, headers: dict[str, Any] | None) -> dict[str, Any] | None:
        if token is None:
            return headers
        bearer = token
        if context.operation is not None and context.operation.label == LOGOUT:
            bearer = token_for(learner)
        return {**(headers or {}), "Authorization": f"Bearer {bearer}"}

    if not real_ids:
        return schema

    def mix(name: str, generated: Any) -> Any:
        if name not in world:
            return st.just(generated)
        return st.one_of(st.just(generated), st.sampled_from(world[name]))

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
        if not path_parameters:
            return st.just(path_parameters)
        return st.fixed_dictionaries({n: mix(n, v) for n, v in path_parameters.items()})

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        if not isinstance(body, dict):
            return st.just(body)
        return st.fixed_dictionaries({n: mix(n, v) for n, v in body.items()})

    return schema


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 40:
        return f"{value[:20]}…({len(value)} chars)"
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_short(v) for v in value[:10]]
    return value


def describe(case: Any, response: Any, failure: Failure) -> str:
    body = _short(case.body) if isinstance(case.body, dict | list | str | int | float) else None
    request = json.dumps(
        {
            "path": case.formatted_path,
            "query": case.query,
            "headers": {k: v for k, v in (case.headers or {}).items() if k != "Authorization"},
            "body": body,
        },
        default=str,
    )[:400]
    return (
        f"{failure.title}: {failure.message.strip()[:600]}\n"
        f"    request: {case.method} {request}\n"
        f"    response: {response.status_code} {response.text[:300]}"
    )


def fuzz(
    world: dict[str, Any], learner: Any | None
) -> tuple[dict[tuple[str, str], str], dict[str, int]]:
    """Run every operation in both generation modes; collect each distinct failure once."""
    failures: dict[tuple[str, str], str] = {}
    statuses: dict[str, int] = {}

    def runner(operation: Any, mode: GenerationMode) -> Callable[[], None]:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call()
            code = f"{operation.label} {response.status_code}"
            statuses[code] = statuses.get(code, 0) + 1
            try:
                case.validate_response(response, checks=CHECKS)
            except (FailureGroup, Failure) as exc:
                found = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
                for failure in found:
                    key = (operation.label, f"{failure.title} [{mode.value}]")
                    failures.setdefault(key, describe(case, response, failure))

        return run

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        schema = load_schema(world, learner=learner, real_ids=mode == GenerationMode.POSITIVE)
        for result in schema.get_all_operations():
            runner(result.ok(), mode)()
    return failures, statuses


def report(failures: dict[tuple[str, str], str]) -> str:
    lines = [f"{len(failures)} distinct contract failures:"]
    for (label, title), text in sorted(failures.items()):
        lines.append(f"- {label} — {title}\n    {text}")
    return "\n".join(lines)


def test_schema_lists_every_operation(world):
    schema = load_schema(world, learner=None, real_ids=False)
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert labels == EXPECTED_OPERATIONS


@pytest.mark.parametrize("who", ["anonymous", "authenticated"])
def test_every_operation_honours_the_contract(world, who):
    failures, statuses = fuzz(world, world["learner"] if who == "authenticated" else None)
    assert not failures, report(failures)
    assert not [code for code in statuses if code.split()[-1].startswith("5")]
    assert sum(statuses.values()) >= len(EXPECTED_OPERATIONS) * 2 * 10
    if who == "authenticated":
        # The real ids and token reached the success paths, not only 4xx.
        for label in (
            "POST /api/v1/auth/token",
            "POST /api/v1/rewards/claim",
            "POST /api/v1/quizzes/{quiz_id}/submit",
            "GET /api/v1/courses/{course_id}",
            "GET /api/v1/quizzes/{quiz_id}",
            "GET /api/v1/users/me/progress",
            "POST /api/v1/courses/{course_id}/enroll",
        ):
            assert any(c.startswith(label + " 2") for c in statuses), (label, statuses)


def test_oversized_bodies_answer_a_documented_413(world):
    """api.md: bodies over 100 KB answer 413 — on every operation that takes a body, and the
    schema must say so (status and error envelope), as it does for every other error."""
    schema = load_schema(world, learner=world["learner"], real_ids=False)
    oversized = {"padding": "x" * (100 * 1024)}
    failures: dict[tuple[str, str], str] = {}
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() not in ("POST", "PUT"):
            continue
        path_parameters = {
            name: world[name][0] for name in ("course_id", "quiz_id") if name in operation.path
        }
        case = operation.Case(
            path_parameters=path_parameters,
            headers={"Authorization": f"Bearer {token_for(world['learner'])}"},
            body=oversized,
            media_type="application/json",
        )
        response = case.call()
        assert response.status_code == 413, (operation.label, response.text[:200])
        checked += 1
        try:
            case.validate_response(
                response, checks=[status_code_conformance, response_schema_conformance]
            )
        except (FailureGroup, Failure) as exc:
            found = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
            for failure in found:
                failures.setdefault(
                    (operation.label, failure.title), describe(case, response, failure)
                )
    assert checked == 8
    assert not failures, report(failures)
