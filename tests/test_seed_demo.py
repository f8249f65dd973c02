"""``manage.py seed_demo``: deterministic, consistent demo data, and safe to rerun."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from courses.models import Course, Enrollment, Module, Quiz, QuizSubmission
from courses.seeding import BASE_TIME
from credentials.models import Credential
from rewards.models import Reward
from users.models import ApiToken, User, hash_token

pytestmark = pytest.mark.django_db(transaction=True)

SMALL = ["--courses", "8", "--users", "25", "--enrollments", "80", "--submissions", "140"]
ASSET_CODE = re.compile(r"^CL[0-9A-F]{8}$")
TABLES = (User, Course, Module, Quiz, Enrollment, QuizSubmission, Reward, Credential)


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def row_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in TABLES}


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every seeded row's key fields (passwords and tokens are random by design)."""
    return {
        "courses": sorted(
            Course.objects.values_list(
                "id",
                "title",
                "description",
                "difficulty",
                "is_active",
                "content_hash",
                "created_at",
                "updated_at",
            )
        ),
        "modules": sorted(Module.objects.values_list("id", "course_id", "order", "title")),
        "quizzes": sorted(Quiz.objects.values_list("id", "module_id", "questions")),
        "users": sorted(
            User.objects.values_list(
                "id",
                "username",
                "display_name",
                "stellar_address",
                "pace",
                "language",
                "credits",
                "is_staff",
                "created_at",
            )
        ),
        "enrollments": sorted(
            Enrollment.objects.values_list(
                "id", "user_id", "course_id", "enrolled_at", "completed_at"
            )
        ),
        "submissions": sorted(
            QuizSubmission.objects.values_list(
                "id",
                "quiz_id",
                "user_id",
                "answers",
                "score",
                "percentage",
                "passed",
                "submitted_at",
            )
        ),
        "rewards": sorted(
            Reward.objects.values_list("id", "submission_id", "user_id", "amount", "claimed_at")
        ),
        "credentials": sorted(
            Credential.objects.values_list(
                "id",
                "user_id",
                "course_id",
                "score",
                "asset_code",
                "issued_at",
                "revoked",
                "revoked_at",
            )
        ),
    }


def printed_password(output: str, username: str) -> str:
    match = re.search(rf"username: {username}\s+password: (\S+)", output)
    assert match, output
    return match.group(1)


def test_same_seed_gives_identical_rows_and_requested_counts() -> None:
    # given a first seed
    seed(*SMALL, "--seed", "7")
    first = snapshot()

    # when the same arguments seed again from scratch
    seed(*SMALL, "--seed", "7", "--reset")

    # then every row is identical, primary keys included
    assert snapshot() == first
    learners = User.objects.exclude(username__in=["demo", "admin"])
    assert Course.objects.count() == 8
    assert learners.count() == 25
    assert Enrollment.objects.filter(user__in=learners).count() == 80
    assert QuizSubmission.objects.filter(user__in=learners).count() == 140


def test_another_seed_gives_other_data() -> None:
    seed(*SMALL, "--seed", "7")
    first = snapshot()

    seed(*SMALL, "--seed", "8", "--reset")

    second = snapshot()
    assert {row[0] for row in second["courses"]}.isdisjoint(row[0] for row in first["courses"])
    assert [row[1] for row in second["courses"]] != [row[1] for row in first["courses"]]


def test_default_size_keeps_every_domain_invariant() -> None:
    # given the default demo data set
    output = seed()
    assert "Bearer token for demo" in output

    courses = {c.id: c for c in Course.objects.all()}
    quizzes = {q.id: q for q in Quiz.objects.select_related("module")}
    quiz_course = {qid: q.module.course_id for qid, q in quizzes.items()}
    course_quizzes: dict[Any, set[Any]] = defaultdict(set)
    for qid, cid in quiz_course.items():
        course_quizzes[cid].add(qid)
    submissions = list(QuizSubmission.objects.all())
    enrollments = list(Enrollment.objects.all())
    enrolled = {(e.user_id, e.course_id) for e in enrollments}

    # catalog: three difficulties, ~10% inactive, history over the past year
    assert len(courses) == 60
    assert {c.difficulty for c in courses.values()} == {"beginner", "intermediate", "advanced"}
    inactive = sum(1 for c in courses.values() if not c.is_active)
    assert 1 <= inactive <= 12
    created = sorted(c.created_at for c in courses.values())
    assert created[-1] < BASE_TIME
    assert created[-1] - created[0] > timedelta(days=180)

    # 3 to 8 modules ordered 1..n, each with a well-formed five-question quiz
    for cid in courses:
        orders = sorted(Module.objects.filter(course_id=cid).values_list("order", flat=True))
        assert 3 <= len(orders) <= 8
        assert orders == list(range(1, len(orders) + 1))
        assert len(course_quizzes[cid]) == len(orders)
    for quiz in quizzes.values():
        assert [q["id"] for q in quiz.questions] == ["q1", "q2", "q3", "q4", "q5"]
        for question in quiz.questions:
            assert len(question["options"]) == 4
            assert 0 <= question["correctIndex"] < 4
            assert question["text"]

    # submissions: by enrolled learners, graded consistently from their answers
    assert {s.passed for s in submissions} == {True, False}
    for s in submissions:
        assert (s.user_id, quiz_course[s.quiz_id]) in enrolled
        correct = {q["id"]: q["correctIndex"] for q in quizzes[s.quiz_id].questions}
        graded = sum(1 for a in s.answers if correct[a["questionId"]] == a["selectedIndex"])
        assert s.score == graded
        assert s.total_questions == 5
        assert s.percentage == round(100 * s.score / s.total_questions)
        assert s.passed == (s.percentage >= 70)

    # completed_at is set exactly when every module's quiz of the course is passed
    passed_by: dict[Any, set[Any]] = defaultdict(set)
    for s in submissions:
        if s.passed:
            passed_by[s.user_id].add(s.quiz_id)
    for e in enrollments:
        all_passed = course_quizzes[e.course_id] <= passed_by[e.user_id]
        assert (e.completed_at is not None) == all_passed, e
        if e.completed_at is not None:
            assert e.enrolled_at < e.completed_at < BASE_TIME
    completed = {(e.user_id, e.course_id) for e in enrollments if e.completed_at}
    assert 0 < len(completed) < len(enrollments)

    # rewards: only for passed submissions, the owner's, at the configured amount;
    # credits are exactly the sum of each user's rewards
    by_id = {s.id: s for s in submissions}
    rewards = list(Reward.objects.all())
    passed_count = sum(1 for s in submissions if s.passed)
    assert passed_count * 0.4 < len(rewards) < passed_count
    reward_sum: dict[Any, int] = defaultdict(int)
    for r in rewards:
        assert by_id[r.submission_id].passed
        assert r.user_id == by_id[r.submission_id].user_id
        assert r.amount == settings.REWARD_AMOUNT
        assert r.tx_hash is None
        assert r.claimed_at >= by_id[r.submission_id].submitted_at
        reward_sum[r.user_id] += r.amount
    for user_id, credits in User.objects.values_list("id", "credits"):
        assert credits == reward_sum[user_id]

    # credentials: for completed enrollments only, unique well-formed codes, mean score
    credentials = list(Credential.objects.all())
    codes = [c.asset_code for c in credentials]
    assert credentials
    assert len(set(codes)) == len(codes)
    assert all(ASSET_CODE.match(code) for code in codes)
    assert len(credentials) < len(completed)
    assert any(c.revoked for c in credentials)
    assert any(not c.revoked for c in credentials)
    for c in credentials:
        assert (c.user_id, c.course_id) in completed
        percentages = [
            s.percentage
            for s in submissions
            if s.user_id == c.user_id and quiz_course[s.quiz_id] == c.course_id
        ]
        assert c.score == round(sum(percentages) / len(percentages))
        assert (c.revoked_at is not None) == c.revoked


def test_demo_learner_has_a_story_and_admin_is_staff() -> None:
    seed()

    demo = User.objects.get(username="demo")
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    assert not demo.is_staff
    demo_enrollments = Enrollment.objects.filter(user=demo)
    assert demo_enrollments.filter(completed_at__isnull=False).count() == 3
    assert demo_enrollments.filter(completed_at__isnull=True).count() == 3
    assert Credential.objects.filter(user=demo, revoked=False).count() == 2
    assert demo.credits == settings.REWARD_AMOUNT * Reward.objects.filter(user=demo).count() > 0
    unclaimed = QuizSubmission.objects.filter(user=demo, passed=True, reward__isnull=True)
    assert unclaimed.count() == 1
    assert QuizSubmission.objects.filter(user=demo, passed=False).exists()
    assert not Enrollment.objects.filter(user=admin).exists()
    assert demo_enrollments.filter(course__is_active=False).count() == 0


def test_refuses_to_seed_over_existing_data_without_reset() -> None:
    seed(*SMALL)
    before = snapshot()

    with pytest.raises(CommandError, match="--reset"):
        seed(*SMALL, "--seed", "9")

    assert snapshot() == before


def test_refuses_when_only_a_user_exists() -> None:
    User.objects.create_user(username="someone", password="x-long-password")

    with pytest.raises(CommandError, match="--reset"):
        seed(*SMALL)

    assert row_counts() == {**dict.fromkeys(row_counts(), 0), "User": 1}


def test_if_empty_seeds_an_empty_database_and_keeps_existing_data() -> None:
    # given an empty database, --if-empty seeds it
    seed(*SMALL, "--if-empty")
    before = snapshot()
    assert before["courses"]

    # when run again, it keeps the data and only hands out a fresh working token
    output = seed(*SMALL, "--seed", "9", "--if-empty")

    assert snapshot() == before
    assert "nothing seeded" in output
    token = re.search(r"Bearer token for demo: (\S+)", output)
    assert token
    assert ApiToken.objects.get(key_hash=hash_token(token.group(1))).user.username == "demo"


def test_reset_replaces_foreign_data() -> None:
    User.objects.create_user(username="someone", password="x-long-password")

    seed(*SMALL, "--reset")

    assert not User.objects.filter(username="someone").exists()
    assert User.objects.count() == 27


def test_passwords_from_environment_authenticate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-from-env-1")
    monkeypatch.setenv("ADMIN_PASSWORD", "admin-pass-from-env-2")

    output = seed(*SMALL)

    assert authenticate(username="demo", password="demo-pass-from-env-1").username == "demo"
    admin = authenticate(username="admin", password="admin-pass-from-env-2")
    assert admin is not None and admin.is_superuser
    assert authenticate(username="demo", password="admin-pass-from-env-2") is None
    assert "demo-pass-from-env-1" not in output
    assert "(from $DEMO_PASSWORD)" in output


def test_generated_passwords_are_printed_and_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("SEED_LEARNER_PASSWORD", raising=False)

    output = seed(*SMALL)

    demo_password = printed_password(output, "demo")
    admin_password = printed_password(output, "admin")
    assert demo_password != admin_password
    assert User.objects.get(username="demo").check_password(demo_password)
    assert User.objects.get(username="admin").check_password(admin_password)
    token = re.search(r"Bearer token for demo: (\S+)", output)
    assert token
    assert ApiToken.objects.get(key_hash=hash_token(token.group(1))).user.username == "demo"
    learner = User.objects.exclude(username__in=["demo", "admin"]).first()
    assert learner is not None and not learner.has_usable_password()


def test_timestamps_are_planned_and_auto_now_is_restored() -> None:
    seed(*SMALL)

    assert Enrollment.objects.filter(enrolled_at__gte=BASE_TIME).count() == 0
    assert QuizSubmission.objects.filter(submitted_at__gte=BASE_TIME).count() == 0
    fresh = Course.objects.create(title="New", difficulty="beginner")
    assert fresh.created_at > BASE_TIME


def test_query_count_does_not_grow_with_rows() -> None:
    # given two runs of very different sizes, both within one insert batch
    with CaptureQueriesContext(connection) as small:
        seed(
            "--courses", "3", "--users", "5", "--enrollments", "8", "--submissions", "10", "--reset"
        )
    with CaptureQueriesContext(connection) as large:
        seed(
            "--courses", "40", "--users", "200", "--enrollments", "1500",
            "--submissions", "3000", "--reset",
        )  # fmt: skip

    # then no query runs per row or per batch of a table smaller than a batch
    assert len(large.captured_queries) == len(small.captured_queries)
    assert len(large.captured_queries) < 40
