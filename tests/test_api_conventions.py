"""Contract conventions that every endpoint shares."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_unknown_route_is_404_envelope(api):
    response = api.get("/api/v1/nope")
    assert response.status_code == 404
    assert response.json() == {
        "statusCode": 404,
        "error": "NOT_FOUND",
        "message": "Route not found",
    }


def test_unversioned_api_path_redirects_keeping_query(api):
    response = api.get("/api/courses?page=2&limit=5")
    assert response.status_code == 301
    assert response["Location"] == "/api/v1/courses?page=2&limit=5"


def test_health_live(api):
    response = api.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_oversized_body_is_413_and_changes_nothing(api):
    response = api.post(
        "/api/v1/auth/register", data="x" * 200_000, content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json()["error"] == "PAYLOAD_TOO_LARGE"
