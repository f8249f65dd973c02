"""/api/v1/docs/ in a real headless browser (Debian's chromium, driven by Playwright) with
every request beyond loopback refused: Swagger UI must come from the service itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Route, sync_playwright

from tests.served import Served, collect_static

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"  # installed by .ci/services.sh (install_browser)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    srv = Served(static_root=collect_static(tmp_path_factory.mktemp("static")))
    srv.start()
    yield srv
    srv.stop()


def test_docs_render_every_operation_with_no_request_beyond_loopback(server):
    # given the operations the service's own OpenAPI document lists
    status, body = server.get("/api/v1/schema/?format=json")
    assert status == 200
    operations = {
        (method, path)
        for path, item in json.loads(body)["paths"].items()
        for method in item
        if method in METHODS
    }
    assert ("get", "/api/v1/courses") in operations

    requested: list[str] = []
    refused: list[str] = []

    def loopback_only(route: Route) -> None:
        url = route.request.url
        requested.append(url)
        if urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            refused.append(url)
            route.abort("internetdisconnected")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page()
            page.route("**/*", loopback_only)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # when the docs page is opened
            page.goto(f"{server.base_url}/api/v1/docs/")
            page.wait_for_load_state("networkidle")
            assert refused == [], "the docs page asked for more than loopback"
            courses = page.locator(
                '.opblock-get .opblock-summary-path[data-path="/api/v1/courses"]'
            )
            courses.wait_for(timeout=30_000)

            # then every operation is rendered as a block with its method and path
            rendered = page.eval_on_selector_all(
                ".opblock",
                """blocks => blocks.map(block => [
                        block.querySelector('.opblock-summary-method').textContent.toLowerCase(),
                        block.querySelector('.opblock-summary-path').dataset.path,
                    ])""",
            )
            assert sorted(tuple(op) for op in rendered) == sorted(operations)

            # and the UI works: opening the course list shows its documented parameters
            courses.click()
            parameters = page.locator(".opblock-get.is-open .parameters .parameter__name")
            parameters.first.wait_for(timeout=10_000)
            names = {text.split()[0] for text in parameters.all_inner_texts()}
            assert {"page", "limit", "difficulty"} <= names
            assert errors == []
        finally:
            browser.close()

    # and nothing beyond loopback was asked for; Swagger UI came from the service itself
    assert refused == []
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in url for url in requested)
    assert f"{server.base_url}/api/v1/schema/" in requested


def test_swagger_ui_assets_are_served_by_the_service(server):
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        status, body = server.get(f"/static/drf_spectacular_sidecar/swagger-ui-dist/{asset}")

        assert status == 200, asset
        assert len(body) > 1000
