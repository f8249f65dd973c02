from __future__ import annotations

from django.urls import URLPattern, path

from courses.views import CourseViewSet, QuizViewSet

urlpatterns: list[URLPattern] = [
    path("courses", CourseViewSet.as_view({"get": "list"}), name="course-list"),
    path(
        "courses/<str:course_id>",
        CourseViewSet.as_view({"get": "retrieve"}),
        name="course-detail",
    ),
    path(
        "courses/<str:course_id>/enroll",
        CourseViewSet.as_view({"post": "enroll"}),
        name="course-enroll",
    ),
    path("quizzes/<str:quiz_id>", QuizViewSet.as_view({"get": "retrieve"}), name="quiz-detail"),
    path(
        "quizzes/<str:quiz_id>/submit", QuizViewSet.as_view({"post": "submit"}), name="quiz-submit"
    ),
]
