"""Deterministic demo data for ChainLearn (the logic behind ``manage.py seed_demo``).

Everything comes from ``random.Random`` streams derived from one seed and from a fixed
base timestamp, so the same seed and sizes write the same rows, primary keys included.
Each phase (catalog, learners, enrollments, progress, demo learner) has its own stream,
so changing one size leaves the other phases' draws alone where it can.

The whole plan is computed in memory first (users' ``credits`` depend on the rewards
planned for them), then written with ``bulk_create`` in batches, parents first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import connection, models, transaction

from courses.models import Course, Difficulty, Enrollment, Module, Quiz, QuizSubmission
from credentials.models import Credential
from rewards.models import Reward
from users.models import ApiToken, User

# Timestamps are offsets before this instant, so reruns never depend on the wall clock.
BASE_TIME = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
BATCH_SIZE = 5000
DEMO_USERNAME = "demo"
ADMIN_USERNAME = "admin"
QUESTION_IDS = ("q1", "q2", "q3", "q4", "q5")
OPTIONS_PER_QUESTION = 4
PASS_PERCENTAGE = 70

DAY = 86400.0
INACTIVE_SHARE = 0.10
REWARD_CLAIM_SHARE = 0.70
CREDENTIAL_SHARE = 0.65
REVOKED_SHARE = 0.06
FINISHER_BOOST = 0.07
DEMO_COURSE_COUNT = 6

M = TypeVar("M", bound=models.Model)


@dataclass(frozen=True)
class SeedSize:
    """How much to generate; the demo learner and the admin come on top of these."""

    courses: int = 60
    users: int = 300
    enrollments: int = 2000
    submissions: int = 3000


@dataclass
class SeedReport:
    """Rows written per table, plus notes (e.g. a size capped to what is possible)."""

    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- vocabulary

TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Stellar Blockchain", ("accounts", "trustlines", "assets", "anchors", "consensus")),
    ("Soroban Smart Contracts", ("contract storage", "authorization", "events", "resource limits")),
    ("Python Programming", ("generators", "virtual environments", "type hints", "exceptions")),
    ("Web Development", ("HTTP caching", "forms", "accessibility", "responsive layouts")),
    ("Data Structures", ("hash tables", "binary trees", "heaps", "graphs", "amortized analysis")),
    ("SQL and Databases", ("indexes", "joins", "transactions", "normalization", "query plans")),
    ("Cryptography", ("hash functions", "digital signatures", "key management", "randomness")),
    ("Personal Finance", ("budgeting", "compound interest", "emergency funds", "diversification")),
    ("Machine Learning", ("training data", "overfitting", "feature scaling", "evaluation metrics")),
    ("Cloud Infrastructure", ("load balancers", "autoscaling", "object storage", "monitoring")),
    ("Cybersecurity", ("phishing", "least privilege", "patching", "incident response")),
    ("UX Design", ("user research", "wireframes", "usability testing", "design systems")),
    ("Project Management", ("scope", "risk registers", "estimation", "retrospectives")),
    ("Digital Marketing", ("search optimization", "email campaigns", "analytics", "A/B testing")),
    ("Rust Programming", ("ownership", "borrowing", "traits", "error handling", "cargo")),
    ("JavaScript", ("promises", "closures", "modules", "the event loop", "DOM events")),
    ("Data Analysis", ("data cleaning", "pivot tables", "visualisation", "sampling")),
    ("Decentralized Finance", ("liquidity pools", "stablecoins", "oracles", "collateral")),
    ("Mobile App Development", ("app lifecycle", "offline storage", "push notifications")),
    ("DevOps", ("continuous integration", "containers", "deployment pipelines", "observability")),
    ("Statistics", ("probability", "confidence intervals", "hypothesis tests", "regression")),
    ("Entrepreneurship", ("customer discovery", "pricing", "pitching", "unit economics")),
    ("Technical Writing", ("audience", "document structure", "examples", "API reference docs")),
    ("Linux Administration", ("permissions", "processes", "systemd services", "shell scripting")),
    ("Networking Fundamentals", ("IP addressing", "DNS", "TCP", "TLS", "routing")),
    ("Open Source Collaboration", ("pull requests", "code review", "licences", "issue triage")),
)

TITLE_TEMPLATES: dict[str, tuple[str, ...]] = {
    Difficulty.BEGINNER: (
        "Introduction to {t}",
        "{t} for Beginners",
        "{t} Fundamentals",
        "Getting Started with {t}",
        "{t} 101",
        "First Steps in {t}",
    ),
    Difficulty.INTERMEDIATE: (
        "Practical {t}",
        "{t} in Practice",
        "Intermediate {t}",
        "Building with {t}",
        "{t}: Patterns and Practices",
        "Applied {t}",
    ),
    Difficulty.ADVANCED: (
        "Advanced {t}",
        "Mastering {t}",
        "{t} in Depth",
        "{t} at Scale",
        "{t}: Internals and Performance",
        "Expert {t}",
    ),
}
TITLE_SUFFIXES = (
    "Hands-on Labs",
    "Case Studies",
    "Project Edition",
    "Bootcamp",
    "Workshop",
    "Self-paced",
    "for Teams",
    "Weekend Sprint",
)
DESCRIPTION_OPENINGS: dict[str, tuple[str, ...]] = {
    Difficulty.BEGINNER: (
        "A gentle introduction to {t} for learners with no prior experience.",
        "Learn the core ideas of {t} step by step, from the very beginning.",
        "Start from zero and build a solid foundation in {t}.",
    ),
    Difficulty.INTERMEDIATE: (
        "Build on the basics of {t} with practical, realistic exercises.",
        "For learners who know the basics of {t} and want to apply them.",
        "Turn what you know about {t} into working habits.",
    ),
    Difficulty.ADVANCED: (
        "A deep dive into {t} for experienced practitioners.",
        "Push past the usual tutorials and study {t} in detail.",
        "For professionals who want to master the hard parts of {t}.",
    ),
}
DESCRIPTION_MIDDLES = (
    "You will work through {a} and {b} in short, focused lessons.",
    "Each module ends with a quiz so you can check your grasp of {a} and {b}.",
    "Worked examples cover {a}, {b} and the mistakes people make with them.",
    "Real-world scenarios show when {a} matters and how {b} fits in.",
)
DESCRIPTION_CLOSINGS = (
    "Expect to spend about {h} hours in total.",
    "Pass every module quiz to earn a ChainLearn credential.",
    "Includes {n} modules and a final review.",
    "Earn credits for each quiz you pass.",
)
MODULE_TEMPLATES = (
    "Understanding {c}",
    "Working with {c}",
    "{C} in Practice",
    "Common Pitfalls with {c}",
    "{C}: A Closer Look",
    "Hands-on: {C}",
)
QUESTION_TEMPLATES = (
    "Which statement about {c} is accurate?",
    "What is the main reason to care about {c} in {t}?",
    "When should you reach for {c}?",
    "Which of these is a common mistake with {c}?",
    "What does {c} help you achieve?",
    "Which practice makes {c} easier to get right?",
    "How would you explain {c} to a colleague?",
)
OPTION_POOL = (
    "It reduces duplicated work",
    "It makes failures visible early",
    "It replaces the need for testing",
    "It only matters for very large teams",
    "It trades memory for speed",
    "It guarantees correctness on its own",
    "It keeps related data together",
    "It should be avoided in new projects",
    "It lets you change one part without breaking others",
    "It makes costs predictable",
    "It removes every security risk",
    "It is mainly a naming convention",
    "It gives users faster feedback",
    "It must be configured once and never revisited",
    "It helps you measure before you optimize",
    "It works the same way in every tool",
)
FIRST_NAMES = (
    "Amara", "Kofi", "Lucia", "Mateo", "Priya", "Arjun", "Mei", "Hiro", "Sofia", "Liam",
    "Noor", "Omar", "Zanele", "Thabo", "Elena", "Ivan", "Chloe", "Lucas", "Fatima", "Yusuf",
    "Aisha", "Diego", "Camila", "Ana", "Jonas", "Freya", "Nia", "Kwame", "Sara", "Tomas",
    "Linh", "Minh", "Grace", "Daniel", "Ines", "Rafael", "Ada", "Emeka", "Leila", "Hana",
)  # fmt: skip
LAST_NAMES = (
    "Okafor", "Mensah", "Garcia", "Rossi", "Sharma", "Patel", "Chen", "Tanaka", "Silva",
    "Murphy", "Haddad", "Khan", "Dlamini", "Nkosi", "Petrova", "Ivanov", "Martin", "Dubois",
    "Yilmaz", "Ahmed", "Bello", "Lopez", "Santos", "Costa", "Schmidt", "Larsen", "Njoroge",
    "Owusu", "Cohen", "Novak", "Nguyen", "Tran", "Walker", "Kim", "Moreau", "Alves",
    "Adeyemi", "Eze", "Rahimi", "Sato",
)  # fmt: skip
BACKGROUNDS = (
    "Software developer curious about web3",
    "Computer science student",
    "Product manager at a fintech startup",
    "Accountant exploring digital assets",
    "Former teacher changing careers",
    "Graphic designer learning to code",
    "Data analyst",
    "Self-taught hobbyist",
    "Small business owner",
    "",
    "",
)
LEARNING_GOALS = (
    "Build and ship my first smart contract",
    "Get a junior developer job this year",
    "Understand how blockchains actually work",
    "Automate the boring parts of my job",
    "Earn a credential for my CV",
    "Keep my skills current",
    "",
    "",
)
PACES = (User.Pace.SLOW, User.Pace.MEDIUM, User.Pace.FAST)
PACE_WEIGHTS = (25, 50, 25)
LANGUAGES = ("en", "es", "fr", "pt", "de", "sw", "hi", "yo", "zh")
LANGUAGE_WEIGHTS = (60, 10, 7, 7, 4, 4, 4, 2, 2)
DIFFICULTIES = (Difficulty.BEGINNER, Difficulty.INTERMEDIATE, Difficulty.ADVANCED)
DIFFICULTY_WEIGHTS = (45, 35, 20)


# --------------------------------------------------------------------------------- plan


@dataclass
class _CoursePlan:
    course: Course
    quiz_ids: list[uuid.UUID]
    correct: list[tuple[int, ...]]
    created: float


@dataclass
class _SubmissionPlan:
    id: uuid.UUID
    quiz_id: uuid.UUID
    user: int
    selected: tuple[int, ...]
    score: int
    at: float


@dataclass
class _Plan:
    courses: list[_CoursePlan] = field(default_factory=list)
    modules: list[Module] = field(default_factory=list)
    quizzes: list[Quiz] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    skills: list[float] = field(default_factory=list)
    user_created: list[float] = field(default_factory=list)
    # (id, user index, course index, enrolled offset, completed offset or None)
    enrollments: list[tuple[uuid.UUID, int, int, float, float | None]] = field(default_factory=list)
    submissions: list[_SubmissionPlan] = field(default_factory=list)
    # (id, submission id, user index, claimed offset)
    rewards: list[tuple[uuid.UUID, uuid.UUID, int, float]] = field(default_factory=list)
    # (id, user index, course index, score, asset code, issued offset, revoked offset or None)
    credentials: list[tuple[uuid.UUID, int, int, int, str, float, float | None]] = field(
        default_factory=list
    )
    asset_codes: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _at(offset: float) -> datetime:
    return BASE_TIME + timedelta(seconds=offset)


def _after(rng: random.Random, start: float, low: float, high: float) -> float:
    """A moment between ``start`` and the base time, a fraction low..high of the way."""
    return start + (0.0 - start) * rng.uniform(low, high)


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _stellar_address(rng: random.Random) -> str:
    """A well-formed Stellar account id (StrKey: version byte, 32 bytes, CRC16-XModem)."""
    payload = bytes([6 << 3]) + rng.getrandbits(256).to_bytes(32, "big")
    checksum = binascii.crc_hqx(payload, 0).to_bytes(2, "little")
    return base64.b32encode(payload + checksum).decode()


def _plan_catalog(plan: _Plan, rng: random.Random, count: int) -> None:
    for _ in range(count):
        topic, concepts = rng.choice(TOPICS)
        difficulty = rng.choices(DIFFICULTIES, weights=DIFFICULTY_WEIGHTS)[0]
        title = rng.choice(TITLE_TEMPLATES[difficulty]).format(t=topic)
        if rng.random() < 0.35:
            title = f"{title}: {rng.choice(TITLE_SUFFIXES)}"
        module_count = rng.randint(3, 8)
        a, b = rng.sample(concepts, 2)
        description = " ".join(
            (
                rng.choice(DESCRIPTION_OPENINGS[difficulty]).format(t=topic),
                rng.choice(DESCRIPTION_MIDDLES).format(a=a, b=b),
                rng.choice(DESCRIPTION_CLOSINGS).format(h=module_count * 2, n=module_count),
            )
        )
        created = -rng.uniform(14, 365) * DAY
        updated = _after(rng, created, 0.0, 0.05)
        course = Course(
            id=_uuid(rng),
            title=title,
            description=description,
            difficulty=difficulty,
            is_active=rng.random() >= INACTIVE_SHARE,
            created_at=_at(created),
            updated_at=_at(updated),
        )
        content: dict[str, Any] = {"title": title, "description": description, "modules": []}
        course_plan = _CoursePlan(course=course, quiz_ids=[], correct=[], created=created)
        middle = [rng.choice(concepts) for _ in range(module_count - 2)]
        for order in range(1, module_count + 1):
            if order == 1:
                concept = concepts[0]
                module_title = f"Getting Started with {topic}"
            elif order == module_count:
                concept = rng.choice(concepts)
                module_title = rng.choice(("Review and Next Steps", "Capstone Project"))
            else:
                concept = middle[order - 2]
                module_title = rng.choice(MODULE_TEMPLATES).format(
                    c=concept, C=_capitalized(concept)
                )
            module = Module(
                id=_uuid(rng),
                course_id=course.id,
                title=module_title,
                description=f"Covers {concept} through a worked example and a short quiz.",
                order=order,
            )
            questions: list[dict[str, Any]] = []
            correct: list[int] = []
            texts = rng.sample(QUESTION_TEMPLATES, len(QUESTION_IDS))
            for qid, text in zip(QUESTION_IDS, texts, strict=True):
                options = rng.sample(OPTION_POOL, OPTIONS_PER_QUESTION)
                correct.append(rng.randrange(OPTIONS_PER_QUESTION))
                questions.append(
                    {
                        "id": qid,
                        "text": text.format(c=concept, t=topic),
                        "options": options,
                        "correctIndex": correct[-1],
                    }
                )
            quiz = Quiz(id=_uuid(rng), module_id=module.id, questions=questions)
            plan.modules.append(module)
            plan.quizzes.append(quiz)
            course_plan.quiz_ids.append(quiz.id)
            course_plan.correct.append(tuple(correct))
            content["modules"].append({"title": module_title, "questions": questions})
        course.content_hash = _content_hash(content)
        plan.courses.append(course_plan)
    _plan_tour_course(plan)


def _content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _plan_tour_course(plan: _Plan) -> None:
    """Make the newest active course the README's tour course: the right answer to each of
    its questions is the first option, which is what the README's curl session submits, so
    a new user can pass its quizzes, claim the rewards and mint its credential.
    """
    active = [c for c in plan.courses if c.course.is_active]
    if not active:
        return
    tour = max(active, key=lambda c: c.created)
    quizzes = {quiz.module_id: quiz for quiz in plan.quizzes}
    content: dict[str, Any] = {
        "title": tour.course.title,
        "description": tour.course.description,
        "modules": [],
    }
    for module in sorted(
        (m for m in plan.modules if m.course_id == tour.course.id), key=lambda m: m.order
    ):
        questions = quizzes[module.id].questions
        for question in questions:
            question["correctIndex"] = 0
        content["modules"].append({"title": module.title, "questions": questions})
    tour.correct = [(0,) * len(QUESTION_IDS) for _ in tour.quiz_ids]
    tour.course.content_hash = _content_hash(content)


def _plan_learners(plan: _Plan, rng: random.Random, count: int, password_hash: str) -> None:
    taken = {DEMO_USERNAME, ADMIN_USERNAME}
    for _ in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        username = f"{first.lower()}.{last.lower()}{rng.randrange(10, 100)}"
        while username in taken:
            username = f"{first.lower()}.{last.lower()}{rng.randrange(100, 100000)}"
        taken.add(username)
        created = -rng.uniform(1, 420) * DAY
        plan.users.append(
            User(
                id=_uuid(rng),
                username=username,
                password=password_hash,
                first_name=first,
                last_name=last,
                email=f"{username}@example.com",
                display_name=f"{first} {last}",
                background=rng.choice(BACKGROUNDS),
                learning_goal=rng.choice(LEARNING_GOALS),
                pace=rng.choices(PACES, weights=PACE_WEIGHTS)[0],
                language=rng.choices(LANGUAGES, weights=LANGUAGE_WEIGHTS)[0],
                stellar_address=_stellar_address(rng) if rng.random() < 0.35 else None,
                date_joined=_at(created),
                created_at=_at(created),
                updated_at=_at(_after(rng, created, 0.0, 0.3)),
            )
        )
        # Chance of answering any one question right; most learners pass most quizzes.
        plan.skills.append(0.55 + 0.4 * rng.betavariate(4.0, 1.5))
        plan.user_created.append(created)


def _cumulative(weights: Iterable[float]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def _plan_enrollment_pairs(
    rng: random.Random, users: int, courses: list[_CoursePlan], wanted: int
) -> list[tuple[int, int]]:
    """``wanted`` distinct (user, course) index pairs; busy learners and popular courses
    draw more enrollments. Falls back to a shuffle of the free pairs when nearly full."""
    n_courses = len(courses)
    user_cum = _cumulative(min(rng.paretovariate(1.6), 25.0) for _ in range(users))
    course_cum = _cumulative(
        rng.lognormvariate(0.0, 0.9) * (1.0 if c.course.is_active else 0.3) for c in courses
    )
    seen: set[int] = set()
    order: list[int] = []
    user_range, course_range = range(users), range(n_courses)
    while len(order) < wanted:
        need = wanted - len(order)
        draws = need + need // 4 + 8
        picked_users = rng.choices(user_range, cum_weights=user_cum, k=draws)
        picked_courses = rng.choices(course_range, cum_weights=course_cum, k=draws)
        added = 0
        for u, c in zip(picked_users, picked_courses, strict=True):
            key = u * n_courses + c
            if key not in seen:
                seen.add(key)
                order.append(key)
                added += 1
                if added == need:
                    break
        if added < need and added < max(1, need // 20):
            free = [key for key in range(users * n_courses) if key not in seen]
            order.extend(rng.sample(free, wanted - len(order)))
    return [divmod(key, n_courses) for key in order]


def _plan_attempt_counts(rng: random.Random, module_counts: list[int], wanted: int) -> list[int]:
    """How many modules (in order) each enrollment attempted, summing to ``wanted``.

    About a third of the submissions go to finishers, who attempted every module; the
    rest follow a U-shaped Beta draw over 0..M-1 (many barely started). Random single
    steps then make the total exact.
    """
    capacity = sum(module_counts)
    if wanted >= capacity:
        return list(module_counts)
    ratio = wanted / capacity
    finisher_share = min(0.35 * ratio, 0.5)
    rest = (ratio - finisher_share) / (1.0 - finisher_share)
    a = 0.7
    b = a * (1.0 - rest) / max(rest, 0.01)
    counts = [
        m if rng.random() < finisher_share else int(rng.betavariate(a, b) * m)
        for m in module_counts
    ]
    diff = wanted - sum(counts)
    step = 1 if diff > 0 else -1
    pool = [
        i
        for i, (k, m) in enumerate(zip(counts, module_counts, strict=True))
        if (k < m if step > 0 else k > 0)
    ]
    for _ in range(abs(diff)):
        j = rng.randrange(len(pool))
        i = pool[j]
        counts[i] += step
        if counts[i] == (module_counts[i] if step > 0 else 0):
            pool[j] = pool[-1]
            pool.pop()
    return counts


def _answers(rng: random.Random, correct: tuple[int, ...], skill: float) -> tuple[int, ...]:
    selected = []
    for right in correct:
        if rng.random() < skill:
            selected.append(right)
        else:
            selected.append((right + rng.randrange(1, OPTIONS_PER_QUESTION)) % OPTIONS_PER_QUESTION)
    return tuple(selected)


def _score(selected: tuple[int, ...], correct: tuple[int, ...]) -> int:
    return sum(1 for s, c in zip(selected, correct, strict=True) if s == c)


def _percentage(score: int) -> int:
    return round(100 * score / len(QUESTION_IDS))


def _asset_code(plan: _Plan, rng: random.Random) -> str:
    code = f"CL{rng.getrandbits(32):08X}"
    while code in plan.asset_codes:
        code = f"CL{rng.getrandbits(32):08X}"
    plan.asset_codes.add(code)
    return code


def _plan_journey(
    plan: _Plan,
    rng: random.Random,
    *,
    user: int,
    course: int,
    enrolled: float,
    selections: Sequence[tuple[int, ...]],
    claim: Callable[[], bool],
    credential: Callable[[], bool],
    revoke: Callable[[], bool],
) -> None:
    """One enrollment with its submissions (module order), rewards and credential."""
    course_plan = plan.courses[course]
    at = enrolled
    percentages: list[int] = []
    all_passed = True
    for index, selected in enumerate(selections):
        at = _after(rng, at, 0.01, 0.25)
        score = _score(selected, course_plan.correct[index])
        percentage = _percentage(score)
        passed = percentage >= PASS_PERCENTAGE
        all_passed = all_passed and passed
        percentages.append(percentage)
        submission = _SubmissionPlan(
            _uuid(rng), course_plan.quiz_ids[index], user, selected, score, at
        )
        plan.submissions.append(submission)
        if passed and claim():
            plan.rewards.append((_uuid(rng), submission.id, user, _after(rng, at, 0.0005, 0.05)))
    completed = all_passed and len(selections) == len(course_plan.quiz_ids)
    plan.enrollments.append((_uuid(rng), user, course, enrolled, at if completed else None))
    if completed and credential():
        issued = _after(rng, at, 0.001, 0.1)
        revoked = _after(rng, issued, 0.05, 0.9) if revoke() else None
        score = round(sum(percentages) / len(percentages))
        code = _asset_code(plan, rng)
        plan.credentials.append((_uuid(rng), user, course, score, code, issued, revoked))


def _plan_progress(plan: _Plan, rng: random.Random, enrollments: int, submissions: int) -> None:
    n_users, courses = len(plan.users), plan.courses
    capacity = n_users * len(courses)
    if enrollments > capacity:
        plan.notes.append(
            f"enrollments capped at {capacity} ({n_users} learners x {len(courses)} courses)"
        )
        enrollments = capacity
    pairs = _plan_enrollment_pairs(rng, n_users, courses, enrollments)
    module_counts = [len(courses[c].quiz_ids) for _, c in pairs]
    if submissions > sum(module_counts):
        plan.notes.append(f"submissions capped at {sum(module_counts)} (every module attempted)")
    attempts = _plan_attempt_counts(rng, module_counts, submissions)
    for (user, course), attempted in zip(pairs, attempts, strict=True):
        start = max(courses[course].created, plan.user_created[user])
        enrolled = start + (0.0 - start) * rng.random() ** 1.3
        # Learners who work through every module tend to be the ones passing them.
        skill = plan.skills[user] + (
            FINISHER_BOOST if attempted == len(courses[course].quiz_ids) else 0
        )
        selections = [_answers(rng, courses[course].correct[i], skill) for i in range(attempted)]
        _plan_journey(
            plan,
            rng,
            user=user,
            course=course,
            enrolled=enrolled,
            selections=selections,
            claim=lambda: rng.random() < REWARD_CLAIM_SHARE,
            credential=lambda: rng.random() < CREDENTIAL_SHARE,
            revoke=lambda: rng.random() < REVOKED_SHARE,
        )


def _always() -> bool:
    return True


def _never() -> bool:
    return False


def _plan_staff_and_demo(
    plan: _Plan, rng: random.Random, *, demo_password: str, admin_password: str
) -> None:
    """Add the demo learner and the admin; the demo gets a story worth clicking through.

    Of up to six active courses: three completed (credentials minted for two, the third
    left to mint), two half done, one just enrolled. Every passed quiz but the latest
    is claimed, so a reward is waiting to be claimed too.
    """
    demo_created = -400 * DAY
    demo = User(
        id=_uuid(rng),
        username=DEMO_USERNAME,
        password=make_password(demo_password),
        first_name="Demo",
        last_name="Learner",
        email="demo@example.com",
        display_name="Demo Learner",
        background="Exploring ChainLearn",
        learning_goal="Finish a course and earn a credential",
        date_joined=_at(demo_created),
        created_at=_at(demo_created),
        updated_at=_at(demo_created),
    )
    admin = User(
        id=_uuid(rng),
        username=ADMIN_USERNAME,
        password=make_password(admin_password),
        email="admin@example.com",
        display_name="Administrator",
        is_staff=True,
        is_superuser=True,
        date_joined=_at(-420 * DAY),
        created_at=_at(-420 * DAY),
        updated_at=_at(-420 * DAY),
    )
    demo_index = len(plan.users)
    plan.users.extend([demo, admin])
    plan.skills.extend([1.0, 0.0])
    plan.user_created.extend([demo_created, -420 * DAY])

    active = [i for i, c in enumerate(plan.courses) if c.course.is_active]
    chosen = rng.sample(active, min(DEMO_COURSE_COUNT, len(active)))
    stories = ("mint", "mint", "completed", "half", "half", "enrolled")
    first_demo_reward = len(plan.rewards)
    for position, (course, story) in enumerate(zip(chosen, stories, strict=False)):
        correct = plan.courses[course].correct
        if story in {"mint", "completed"}:
            attempted = len(correct)
        elif story == "half":
            attempted = max(1, len(correct) // 2)
        else:
            attempted = 0
        selections = []
        for index in range(attempted):
            right = list(correct[index])
            misses = rng.choice((0, 0, 1))
            # The second half-done course has one failed quiz, so it can never complete.
            if position == 4 and index == attempted - 1:
                misses = 3
            for q in rng.sample(range(len(right)), misses):
                right[q] = (right[q] + 1) % OPTIONS_PER_QUESTION
            selections.append(tuple(right))
        enrolled = plan.courses[course].created + rng.uniform(0.05, 0.4) * (
            -plan.courses[course].created
        )
        _plan_journey(
            plan,
            rng,
            user=demo_index,
            course=course,
            enrolled=enrolled,
            selections=selections,
            claim=_always,
            credential=_always if story == "mint" else _never,
            revoke=_never,
        )
    demo_rewards = plan.rewards[first_demo_reward:]
    if demo_rewards:
        latest = max(demo_rewards, key=lambda r: r[3])
        plan.rewards.remove(latest)


# -------------------------------------------------------------------------------- write


@contextmanager
def _explicit_timestamps(model_classes: Iterable[type[models.Model]]) -> Iterator[None]:
    """Let ``bulk_create`` keep the planned timestamps instead of stamping ``now()``.

    ``auto_now``/``auto_now_add`` overwrite any value in ``pre_save``; demo data needs
    history spread over a year, so those flags are off for the duration (this process
    only: a management command, single-threaded).
    """
    saved: list[tuple[models.DateTimeField, bool, bool]] = []
    for model in model_classes:
        for f in model._meta.concrete_fields:
            if isinstance(f, models.DateTimeField) and (f.auto_now or f.auto_now_add):
                saved.append((f, f.auto_now, f.auto_now_add))
                f.auto_now = f.auto_now_add = False
    try:
        yield
    finally:
        for f, auto_now, auto_now_add in saved:
            f.auto_now, f.auto_now_add = auto_now, auto_now_add


def _insert(model: type[M], rows: Iterable[M]) -> int:
    """``bulk_create`` in batches of ``BATCH_SIZE``, building each batch lazily."""
    written = 0
    batch: list[M] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH_SIZE:
            model._default_manager.bulk_create(batch, batch_size=BATCH_SIZE)
            written += len(batch)
            batch = []
    if batch:
        model._default_manager.bulk_create(batch, batch_size=BATCH_SIZE)
        written += len(batch)
    return written


def _write(plan: _Plan) -> dict[str, int]:
    amount = settings.REWARD_AMOUNT
    credits = [0] * len(plan.users)
    for _, _, owner, _ in plan.rewards:
        credits[owner] += amount
    for user, total in zip(plan.users, credits, strict=True):
        user.credits = total
    users = plan.users
    courses = [c.course for c in plan.courses]
    counts = {
        "courses": _insert(Course, courses),
        "modules": _insert(Module, plan.modules),
        "quizzes": _insert(Quiz, plan.quizzes),
        "users": _insert(User, users),
    }
    counts["enrollments"] = _insert(
        Enrollment,
        (
            Enrollment(
                id=eid,
                user_id=users[u].id,
                course_id=courses[c].id,
                enrolled_at=_at(enrolled),
                completed_at=None if completed is None else _at(completed),
            )
            for eid, u, c, enrolled, completed in plan.enrollments
        ),
    )
    total = len(QUESTION_IDS)
    counts["submissions"] = _insert(
        QuizSubmission,
        (
            QuizSubmission(
                id=s.id,
                quiz_id=s.quiz_id,
                user_id=users[s.user].id,
                answers=[
                    {"questionId": qid, "selectedIndex": sel}
                    for qid, sel in zip(QUESTION_IDS, s.selected, strict=True)
                ],
                score=s.score,
                total_questions=total,
                percentage=_percentage(s.score),
                passed=_percentage(s.score) >= PASS_PERCENTAGE,
                submitted_at=_at(s.at),
            )
            for s in plan.submissions
        ),
    )
    counts["rewards"] = _insert(
        Reward,
        (
            Reward(
                id=rid,
                submission_id=sid,
                user_id=users[u].id,
                amount=amount,
                status=Reward.Status.CLAIMED,
                claimed_at=_at(claimed),
            )
            for rid, sid, u, claimed in plan.rewards
        ),
    )
    counts["credentials"] = _insert(
        Credential,
        (
            Credential(
                id=cid,
                user_id=users[u].id,
                course_id=courses[c].id,
                score=score,
                asset_code=code,
                issued_at=_at(issued),
                revoked=revoked is not None,
                revoked_at=None if revoked is None else _at(revoked),
            )
            for cid, u, c, score, code, issued, revoked in plan.credentials
        ),
    )
    return counts


# ------------------------------------------------------------------------------ public


def domain_models() -> list[type[models.Model]]:
    """The models whose tables demo data fills (and ``--reset`` empties)."""
    return [User, ApiToken, Course, Module, Quiz, Enrollment, QuizSubmission, Reward, Credential]


def demo_data_exists() -> bool:
    """True when any domain table holds a row (seeding would mix with real data)."""
    return any(model._default_manager.exists() for model in domain_models())


def demo_data_reset() -> None:
    """Empty every domain table with one ``TRUNCATE … CASCADE``.

    CASCADE also empties tables that point at them (Django's admin log, user group and
    permission links). Demo use only: every user, including superusers, is gone.
    """
    tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in domain_models())
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE TABLE {tables} CASCADE")


def demo_data_seed(
    *,
    size: SeedSize,
    seed: int,
    demo_password: str,
    admin_password: str,
    learner_password: str | None = None,
    reset: bool = False,
) -> SeedReport:
    """Write a deterministic demo data set in one transaction and return the row counts.

    ``learner_password`` (hashed once, shared by every generated learner) is ``None`` for
    an unusable password: generated learners cannot log in, ``demo`` and ``admin`` can.
    With ``reset`` the domain tables are emptied first, in the same transaction.
    """
    learner_hash = make_password(learner_password)
    plan = _Plan()
    _plan_catalog(plan, random.Random(f"{seed}:catalog"), size.courses)
    _plan_learners(plan, random.Random(f"{seed}:learners"), size.users, learner_hash)
    _plan_progress(plan, random.Random(f"{seed}:progress"), size.enrollments, size.submissions)
    _plan_staff_and_demo(
        plan,
        random.Random(f"{seed}:demo"),
        demo_password=demo_password,
        admin_password=admin_password,
    )
    written = (Course, Module, Quiz, User, Enrollment, QuizSubmission, Reward, Credential)
    with transaction.atomic(), _explicit_timestamps(written):
        if reset:
            demo_data_reset()
        counts = _write(plan)
    counts["inactive courses"] = sum(1 for c in plan.courses if not c.course.is_active)
    counts["completed enrollments"] = sum(1 for e in plan.enrollments if e[4] is not None)
    counts["revoked credentials"] = sum(1 for c in plan.credentials if c[6] is not None)
    return SeedReport(counts=counts, notes=plan.notes)


def demo_token_issue() -> str | None:
    """A fresh bearer token for the demo learner, or ``None`` if there is no such user."""
    demo = User.objects.filter(username=DEMO_USERNAME).first()
    return None if demo is None else ApiToken.issue(demo)
