"""Quiet logs: read-only admin models offer no "add", a 403 is one line, and 4xx responses
print nothing on the service's console at the default level."""

from __future__ import annotations

import http.cookiejar
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client, RequestFactory

from tests.served import Served
from users.models import User

STAFF_PASSWORD = "quiet-logs-staff-pw"
ADD_REWARD = "/admin/rewards/reward/add/"


def read_only_models() -> list[type]:
    """The admin's models whose ``has_add_permission`` refuses even a superuser."""
    request = RequestFactory().get("/admin/")
    request.user = User(is_staff=True, is_superuser=True, is_active=True)
    return [
        model
        for model, model_admin in admin.site._registry.items()
        if not model_admin.has_add_permission(request)
    ]


def add_url(model: type) -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/add/"


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser(username="boss", password=STAFF_PASSWORD))
    return client


@pytest.mark.django_db
def test_read_only_models_show_no_add_button(staff):
    models = read_only_models()
    # the records created through the API only: rewards, credentials, tokens, learner activity
    assert {m._meta.model_name for m in models} >= {
        "reward",
        "idempotencyrecord",
        "credential",
        "apitoken",
        "enrollment",
        "quizsubmission",
    }

    index = staff.get("/admin/").content.decode()
    assert 'href="/admin/courses/course/add/"' in index  # an editable model keeps its button
    for model in models:
        listing = staff.get(f"/admin/{model._meta.app_label}/{model._meta.model_name}/")
        assert listing.status_code == 200
        assert f'href="{add_url(model)}"' not in index
        assert f'href="{add_url(model)}"' not in listing.content.decode()


@pytest.mark.django_db
def test_a_forbidden_add_page_is_one_info_line(staff, caplog):
    for model in read_only_models():
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            response = staff.get(add_url(model))

        assert response.status_code == 403
        records = [r for r in caplog.records if r.name == "django.request"]
        assert [(r.levelname, r.getMessage()) for r in records] == [
            ("INFO", f"Forbidden (Permission denied): {add_url(model)}")
        ]
        assert records[0].exc_info is None


@pytest.mark.django_db
def test_client_errors_are_info_and_server_errors_stay_errors(api, caplog, monkeypatch):
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        assert api.get("/api/v1/no-such-route").status_code == 404
        assert api.get("/api/v1/users/me").status_code == 401
        assert api.get("/api/v1/courses", {"page": "0"}).status_code == 400

    levels = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "django.request"]
    assert levels == [
        ("INFO", "Not Found: /api/v1/no-such-route"),
        ("INFO", "Unauthorized: /api/v1/users/me"),
        ("INFO", "Bad Request: /api/v1/courses"),
    ]

    # a 5xx keeps its level and its traceback
    caplog.clear()
    logger = logging.getLogger("django.request")
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.error("Internal Server Error: /x", exc_info=True, extra={"status_code": 500})
    assert [(r.levelname, r.exc_info is not None) for r in caplog.records] == [("ERROR", True)]


# --- the served process's console --------------------------------------------------------


@pytest.fixture
def served() -> Iterator[Any]:
    servers: list[Served] = []

    def start(**env: str) -> Served:
        srv = Served(**env)
        srv.start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def staff_in_service() -> None:
    """A superuser whose password hash the service's default hashers verify (cheaply)."""
    hasher = PBKDF2PasswordHasher()
    User.objects.create(
        username="boss",
        is_staff=True,
        is_superuser=True,
        password=hasher.encode(STAFF_PASSWORD, hasher.salt(), iterations=1000),
    )


def browse_as_staff(srv: Served, *paths: str) -> list[int]:
    """Log in to the admin as a browser does (CSRF cookie and form token), then GET
    ``paths``; returns their statuses."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login_url = f"{srv.base_url}/admin/login/"
    form = opener.open(login_url, timeout=30).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token, form
    body = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token.group(1),
            "username": "boss",
            "password": STAFF_PASSWORD,
            "next": "/admin/",
        }
    ).encode()
    landed = opener.open(login_url, data=body, timeout=30)
    assert landed.url == f"{srv.base_url}/admin/", "admin login failed"
    statuses = []
    for path in paths:
        try:
            statuses.append(opener.open(f"{srv.base_url}{path}", timeout=30).status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
    return statuses


def client_errors(srv: Served) -> list[int]:
    return [
        srv.get("/api/v1/no-such-route")[0],
        srv.get("/api/v1/users/me")[0],
        srv.get("/api/v1/users/me", Authorization="Bearer not-a-token")[0],
        srv.get("/api/v1/courses?page=0")[0],
        srv.request("DELETE", "/api/v1/courses")[0],
        *browse_as_staff(srv, ADD_REWARD),
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_service_console_prints_no_line_for_client_errors(served):
    staff_in_service()
    srv = served()

    statuses = client_errors(srv)

    assert statuses == [404, 401, 401, 400, 405, 403]
    srv.stop()  # every worker has written and exited
    console = srv.console()
    assert "Booting worker" in console  # the console is captured
    for noise in ("WARNING", "Traceback", "PermissionDenied", "Forbidden", "Not Found"):
        assert noise not in console, console


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_service_console_at_info_shows_a_403_as_one_line(served):
    staff_in_service()
    srv = served(LOG_LEVEL="INFO")

    statuses = browse_as_staff(srv, ADD_REWARD)

    assert statuses == [403]
    srv.stop()
    lines = srv.console().splitlines()
    assert [line for line in lines if ADD_REWARD in line] == [
        f"Forbidden (Permission denied): {ADD_REWARD}"
    ]
    assert not any("Traceback" in line or "WARNING" in line for line in lines)
