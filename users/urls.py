from django.urls import path

from chainlearn.fastpath import hot_read
from users import views

urlpatterns = [
    path("auth/register", views.RegisterView.as_view(), name="auth-register"),
    path("auth/token", views.TokenView.as_view(), name="auth-token"),
    path("auth/logout", views.LogoutView.as_view(), name="auth-logout"),
    path("users/me", views.MeView.as_view(), name="users-me"),
    path("users/me/progress", hot_read(views.ProgressView), name="users-me-progress"),
]
