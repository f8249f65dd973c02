"""Sessions, CSRF, auth and messages run for the admin only (``BROWSER_PATH_PREFIXES``)."""

import pytest
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_admin_login_still_enforces_csrf_and_uses_sessions():
    staff = UserFactory(is_staff=True, is_superuser=True)
    staff.set_password("s3cret-pass-word")
    staff.save()
    browser = Client(enforce_csrf_checks=True)
    form = {"username": staff.username, "password": "s3cret-pass-word", "next": "/admin/"}

    assert browser.post("/admin/login/", form).status_code == 403  # no CSRF token

    page = browser.get("/admin/login/")
    assert page.status_code == 200
    token = page.cookies["csrftoken"].value
    logged_in = browser.post("/admin/login/", {**form, "csrfmiddlewaretoken": token})
    assert logged_in.status_code == 302
    assert "sessionid" in logged_in.cookies
    assert browser.get("/admin/").status_code == 200


def test_api_and_health_responses_carry_no_session_or_csrf_state(client):
    for path in ("/api/v1/courses", "/health/live", "/api/v1/users/me"):
        response = client.get(path)
        assert not response.cookies, path
        assert "Cookie" not in response.get("Vary", ""), path
    # A cookie-authenticated admin session gives no access to the API: bearer tokens only.
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    assert client.get("/api/v1/users/me").status_code == 401
    # An API POST with neither token nor CSRF is refused for authentication, not CSRF.
    assert client.post("/api/v1/credentials/mint", {}).status_code == 401
