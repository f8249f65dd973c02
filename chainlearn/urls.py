from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from caching.metrics_view import metrics
from chainlearn import health
from chainlearn.api import error_body

api_v1: list[URLPattern | URLResolver] = [
    path("", include("users.urls")),
    path("", include("courses.urls")),
    path("", include("rewards.urls")),
    path("", include("credentials.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
]

if settings.SERVE_STATIC:
    # The admin's CSS/JS from STATIC_ROOT (collectstatic), for a single-box deployment
    # without a separate static file server.
    urlpatterns.append(
        re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT})
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body(404, "NOT_FOUND", "Route not found"), status=404)


def server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body(500, "INTERNAL_ERROR", "Internal server error"), status=500)


handler404 = not_found
handler500 = server_error
