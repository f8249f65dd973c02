"""Admin for authoring courses, modules and quizzes, and inspecting learner activity.

Every change made here goes through ``Model.save()``/``delete()`` so the cache
invalidation receivers see it; no action uses ``QuerySet.update``.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest

from courses.models import Course, Enrollment, Module, Quiz, QuizSubmission
from courses.serializers import MAX_ANSWERS, QUESTION_ID_MAX_LENGTH

MAX_QUESTIONS = MAX_ANSWERS
QUESTION_KEYS = {"id", "text", "options", "correctIndex"}
QUESTIONS_HELP = (
    'A JSON list of questions: [{"id": "q1", "text": "…", "options": ["a", "b"], '
    '"correctIndex": 0}, …]. Ids are unique non-empty strings, options a non-empty list of '
    f"strings, correctIndex an index into options; 1 to {MAX_QUESTIONS} questions."
)


def _question_errors(position: int, question: Any) -> list[str]:
    label = f"Question {position}"
    if not isinstance(question, dict):
        return [f"{label}: must be an object."]
    errors = []
    missing = sorted(QUESTION_KEYS - question.keys())
    if missing:
        errors.append(f"{label}: missing {', '.join(missing)}.")
    unknown = sorted(question.keys() - QUESTION_KEYS)
    if unknown:
        errors.append(f"{label}: unknown keys {', '.join(unknown)}.")
    if "id" in question and not (isinstance(question["id"], str) and question["id"].strip()):
        errors.append(f"{label}: id must be a non-empty string.")
    elif isinstance(question.get("id"), str) and len(question["id"]) > QUESTION_ID_MAX_LENGTH:
        errors.append(f"{label}: id must be at most {QUESTION_ID_MAX_LENGTH} characters.")
    if "text" in question and not (isinstance(question["text"], str) and question["text"].strip()):
        errors.append(f"{label}: text must be a non-empty string.")
    raw_options = question.get("options")
    options: list[str] = (
        raw_options
        if isinstance(raw_options, list) and all(isinstance(o, str) for o in raw_options)
        else []
    )
    if "options" in question and not options:
        errors.append(f"{label}: options must be a non-empty list of strings.")
    if "correctIndex" in question:
        index = question["correctIndex"]
        in_range = (
            isinstance(index, int)
            and not isinstance(index, bool)
            and (not options or 0 <= index < len(options))
        )
        if not in_range:
            bound = f" between 0 and {len(options) - 1}" if options else ""
            errors.append(f"{label}: correctIndex must be an integer{bound}.")
    return errors


def validate_questions(questions: Any) -> list[str]:
    """Every problem with a quiz's ``questions`` value, as messages (empty when valid)."""
    if not isinstance(questions, list):
        return ["Questions must be a JSON list."]
    if not questions:
        return ["A quiz needs at least one question."]
    if len(questions) > MAX_QUESTIONS:
        return [
            f"A quiz has at most {MAX_QUESTIONS} questions (a submission holds as many answers)."
        ]
    errors = []
    for position, question in enumerate(questions, start=1):
        errors.extend(_question_errors(position, question))
    ids = [q["id"] for q in questions if isinstance(q, dict) and isinstance(q.get("id"), str)]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        errors.append(f"Duplicate question ids: {', '.join(duplicates)}.")
    return errors


class QuestionsField(forms.JSONField):
    """JSON edited as indented text, so long question lists stay readable."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2)


class QuizAdminForm(forms.ModelForm):
    questions = QuestionsField(
        widget=forms.Textarea(attrs={"rows": 20, "cols": 100, "style": "font-family: monospace"}),
        help_text=QUESTIONS_HELP,
    )

    class Meta:
        model = Quiz
        fields = ["module", "questions"]

    def clean_questions(self) -> Any:
        questions = self.cleaned_data["questions"]
        errors = validate_questions(questions)
        if errors:
            raise forms.ValidationError(errors)
        return questions


class ModuleInline(admin.TabularInline):
    model = Module
    fields = ["order", "title", "description"]
    ordering = ["order"]
    extra = 1
    show_change_link = True


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    list_display = ["title", "difficulty", "is_active", "created_at", "updated_at"]
    list_filter = ["difficulty", "is_active"]
    search_fields = ["title", "description", "content_hash"]
    readonly_fields = ["id", "created_at", "updated_at"]
    fields = [
        "id",
        "title",
        "description",
        "difficulty",
        "content_hash",
        "is_active",
        "created_at",
        "updated_at",
    ]
    inlines = [ModuleInline]
    actions = ["activate", "deactivate"]
    date_hierarchy = "created_at"

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Course], value: bool) -> int:
        changed = 0
        for course in queryset.filter(is_active=not value):
            course.is_active = value
            course.save(update_fields=["is_active", "updated_at"])
            changed += 1
        return changed

    @admin.action(description="Activate selected courses")
    def activate(self, request: HttpRequest, queryset: QuerySet[Course]) -> None:
        changed = self._set_active(request, queryset, True)
        self.message_user(request, f"Activated {changed} course(s).", messages.SUCCESS)

    @admin.action(description="Deactivate selected courses (hidden from learners)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Course]) -> None:
        changed = self._set_active(request, queryset, False)
        self.message_user(request, f"Deactivated {changed} course(s).", messages.SUCCESS)


class QuizInline(admin.StackedInline):
    model = Quiz
    form = QuizAdminForm
    fields = ["questions"]
    max_num = 1
    extra = 0
    show_change_link = True


@admin.register(Module)
class ModuleAdmin(admin.ModelAdmin):
    list_display = ["title", "course", "order", "has_quiz"]
    list_filter = ["course__difficulty"]
    list_select_related = ["course", "quiz"]
    search_fields = ["title", "course__title"]
    ordering = ["course__title", "order"]
    autocomplete_fields = ["course"]
    fields = ["course", "order", "title", "description"]
    inlines = [QuizInline]

    @admin.display(boolean=True, description="quiz")
    def has_quiz(self, module: Module) -> bool:
        return hasattr(module, "quiz")


@admin.register(Quiz)
class QuizAdmin(admin.ModelAdmin):
    form = QuizAdminForm
    list_display = ["__str__", "module_title", "course_title", "question_count"]
    list_select_related = ["module__course"]
    search_fields = ["module__title", "module__course__title"]
    autocomplete_fields = ["module"]

    @admin.display(description="module", ordering="module__title")
    def module_title(self, quiz: Quiz) -> str:
        return quiz.module.title

    @admin.display(description="course", ordering="module__course__title")
    def course_title(self, quiz: Quiz) -> str:
        return quiz.module.course.title

    @admin.display(description="questions")
    def question_count(self, quiz: Quiz) -> int:
        return len(quiz.questions) if isinstance(quiz.questions, list) else 0


class ReadMostlyAdmin(admin.ModelAdmin):
    """Learner activity is created through the API: staff may view and delete, not edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Enrollment)
class EnrollmentAdmin(ReadMostlyAdmin):
    list_display = ["user", "course", "enrolled_at", "completed_at"]
    list_filter = ["course__difficulty", ("completed_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user", "course"]
    search_fields = ["user__username", "course__title"]
    date_hierarchy = "enrolled_at"


@admin.register(QuizSubmission)
class QuizSubmissionAdmin(ReadMostlyAdmin):
    list_display = [
        "user",
        "quiz",
        "score",
        "total_questions",
        "percentage",
        "passed",
        "submitted_at",
    ]
    list_filter = ["passed"]
    list_select_related = ["user", "quiz"]
    search_fields = ["user__username", "quiz__module__title", "quiz__module__course__title"]
    date_hierarchy = "submitted_at"
