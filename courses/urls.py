from __future__ import annotations

from django.urls import URLPattern, path

from chainlearn.fastpath import hot_read
from courses import views

urlpatterns: list[URLPattern] = [
    path("courses", hot_read(views.CourseListView), name="course-list"),
    path("courses/<str:course_id>", hot_read(views.CourseDetailView), name="course-detail"),
    path("courses/<str:course_id>/enroll", views.CourseEnrollView.as_view(), name="course-enroll"),
    path("quizzes/<str:quiz_id>", views.QuizDetailView.as_view(), name="quiz-detail"),
    path("quizzes/<str:quiz_id>/submit", views.QuizSubmitView.as_view(), name="quiz-submit"),
]
