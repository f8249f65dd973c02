"""factory-boy factories for every model."""

from __future__ import annotations

import secrets
from typing import Any

import factory
from factory.django import DjangoModelFactory

from courses.models import Course, Difficulty, Enrollment, Module, Quiz, QuizSubmission
from credentials.models import Credential
from rewards.models import Reward
from users.models import ApiToken, User

PASSWORD = "correct-horse-battery"


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"learner{n}")
    display_name = factory.LazyAttribute(lambda u: u.username.title())
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(obj: User, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            obj.save(update_fields=["password"])


def make_questions(count: int = 5) -> list[dict[str, Any]]:
    """``count`` questions whose correct answer is always option index 1."""
    return [
        {
            "id": f"q{i}",
            "text": f"Question {i}?",
            "options": ["a", "b", "c", "d"],
            "correctIndex": 1,
        }
        for i in range(1, count + 1)
    ]


class CourseFactory(DjangoModelFactory):
    class Meta:
        model = Course

    title = factory.Sequence(lambda n: f"Course {n}")
    description = "A course."
    difficulty = Difficulty.BEGINNER
    content_hash = None
    is_active = True


class ModuleFactory(DjangoModelFactory):
    class Meta:
        model = Module

    course = factory.SubFactory(CourseFactory)
    title = factory.Sequence(lambda n: f"Module {n}")
    order = factory.Sequence(lambda n: n + 1)


class QuizFactory(DjangoModelFactory):
    class Meta:
        model = Quiz

    module = factory.SubFactory(ModuleFactory)
    questions = factory.LazyFunction(make_questions)


def course_with_modules(modules: int = 3, **course_fields: Any) -> Course:
    """A course with ``modules`` modules, each with a 5-question quiz."""
    course = CourseFactory(**course_fields)
    for order in range(1, modules + 1):
        QuizFactory(module=ModuleFactory(course=course, order=order))
    return course


class EnrollmentFactory(DjangoModelFactory):
    class Meta:
        model = Enrollment

    user = factory.SubFactory(UserFactory)
    course = factory.SubFactory(CourseFactory)


class QuizSubmissionFactory(DjangoModelFactory):
    class Meta:
        model = QuizSubmission

    quiz = factory.SubFactory(QuizFactory)
    user = factory.SubFactory(UserFactory)
    answers = factory.LazyFunction(list)
    score = 5
    total_questions = 5
    percentage = factory.LazyAttribute(lambda s: round(100 * s.score / s.total_questions))
    passed = factory.LazyAttribute(lambda s: s.percentage >= 70)


class RewardFactory(DjangoModelFactory):
    class Meta:
        model = Reward

    submission = factory.SubFactory(QuizSubmissionFactory)
    user = factory.LazyAttribute(lambda r: r.submission.user)
    amount = 10


class CredentialFactory(DjangoModelFactory):
    class Meta:
        model = Credential

    user = factory.SubFactory(UserFactory)
    course = factory.SubFactory(CourseFactory)
    score = 90
    asset_code = factory.LazyFunction(lambda: "CL" + secrets.token_hex(4).upper())


def token_for(user: User) -> str:
    return ApiToken.issue(user)


def learner_with_history(course: Course, learner: User | None = None) -> User:
    """A learner enrolled in ``course`` with a claimed reward (module 1) and a credential."""
    learner = learner or UserFactory()
    EnrollmentFactory(user=learner, course=course)
    quiz = course.modules.get(order=1).quiz
    RewardFactory(submission=QuizSubmissionFactory(user=learner, quiz=quiz))
    CredentialFactory(user=learner, course=course)
    return learner
