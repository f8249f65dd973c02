from django.urls import path

from users.views import AuthViewSet, MeViewSet

urlpatterns = [
    path("auth/register", AuthViewSet.as_view({"post": "register"}), name="auth-register"),
    path("auth/token", AuthViewSet.as_view({"post": "token"}), name="auth-token"),
    path("auth/logout", AuthViewSet.as_view({"post": "logout"}), name="auth-logout"),
    path("users/me", MeViewSet.as_view({"get": "me", "put": "update_me"}), name="users-me"),
    path("users/me/progress", MeViewSet.as_view({"get": "progress"}), name="users-me-progress"),
]
