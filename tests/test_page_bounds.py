"""`page` and `limit`: the 400's message and the OpenAPI schema state the real bounds."""

from __future__ import annotations

import pytest

from tests.helpers import assert_error, assert_success

pytestmark = pytest.mark.django_db

PAGE_MESSAGE = "Must be an integer between 1 and 999999."
LIMIT_MESSAGE = "Must be an integer between 1 and 50."
PAGED = ["/api/v1/courses", "/api/v1/rewards/history"]


@pytest.mark.parametrize("path", PAGED)
@pytest.mark.parametrize(
    ("query", "details"),
    [
        ({"page": "1000000"}, {"page": [PAGE_MESSAGE]}),
        ({"page": "0"}, {"page": [PAGE_MESSAGE]}),
        ({"page": "-1"}, {"page": [PAGE_MESSAGE]}),
        ({"page": "two"}, {"page": [PAGE_MESSAGE]}),
        ({"limit": "51"}, {"limit": [LIMIT_MESSAGE]}),
        ({"limit": "0"}, {"limit": [LIMIT_MESSAGE]}),
        ({"page": "0", "limit": "99"}, {"page": [PAGE_MESSAGE], "limit": [LIMIT_MESSAGE]}),
    ],
)
def test_out_of_bounds_message_states_the_bounds(auth_api, path, query, details):
    body = assert_error(auth_api.get(path, query), 400, "VALIDATION_ERROR")

    assert body["details"] == details


@pytest.mark.parametrize("path", PAGED)
def test_the_stated_bounds_are_accepted(auth_api, path):
    response = auth_api.get(path, {"page": "999999", "limit": "50"})

    assert assert_success(response) == []
    assert response.json()["pagination"] == {"page": 999999, "limit": 50, "total": 0}


def test_schema_states_the_bounds_of_every_page_and_limit_parameter(api):
    # when the OpenAPI document is fetched
    schema = api.get("/api/v1/schema/", {"format": "json"}).json()

    # then each paginated operation documents page and limit with their real bounds
    found = {}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and parameter["name"] in ("page", "limit"):
                    found[(path, method, parameter["name"])] = parameter
    assert set(found) == {
        (path, "get", name)
        for path in ("/api/v1/courses", "/api/v1/rewards/history")
        for name in ("page", "limit")
    }
    for (_, _, name), parameter in found.items():
        expected = {"page": (1, 999999, 1), "limit": (1, 50, 20)}[name]
        schema_of = parameter["schema"]
        assert (schema_of["minimum"], schema_of["maximum"], schema_of["default"]) == expected
        assert f"1-{expected[1]}" in parameter["description"]
    pagination = schema["components"]["schemas"]["EnvelopePagination"]["properties"]
    assert (pagination["page"]["minimum"], pagination["page"]["maximum"]) == (1, 999999)
    assert (pagination["limit"]["minimum"], pagination["limit"]["maximum"]) == (1, 50)
