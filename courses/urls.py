from __future__ import annotations

from django.urls import URLPattern, path

from courses import views

urlpatterns: list[URLPattern] = [
    path("courses", views.CourseListView.as_view(), name="course-list"),
    path("courses/<str:course_id>", views.CourseDetailView.as_view(), name="course-detail"),
    path("courses/<str:course_id>/enroll", views.CourseEnrollView.as_view(), name="course-enroll"),
    path("quizzes/<str:quiz_id>", views.QuizDetailView.as_view(), name="quiz-detail"),
    path("quizzes/<str:quiz_id>/submit", views.QuizSubmitView.as_view(), name="quiz-submit"),
]
