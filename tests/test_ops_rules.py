"""The operating files in ops/: the Prometheus alerting rules pass promtool's check and
their unit tests, the Grafana dashboard is valid, and every metric either one queries is
one /metrics actually exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import course_with_modules
from tests.redis_server import free_port

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "ops/prometheus/cache-alerts.yml"
RULE_TESTS = ROOT / "ops/prometheus/cache-alerts.test.yml"
DASHBOARD = ROOT / "ops/grafana/cache-dashboard.json"
ALERTS = {
    "CacheHitRateLow",
    "CacheBreakerOpen",
    "CacheErrorRateHigh",
    "CacheFillSlow",
    "RateLimitFailingOpen",
}
PANELS = {
    "Hit rate per namespace",
    "Hits and misses per second",
    "Stale served and fill waits",
    "Fill time p50 / p95",
    "Cache errors per operation",
    "Circuit breaker open",
    "Invalidations by cause",
    "Rate limits failing open",
    "In-process tier reads",
    "Invalidation stream lag and reconnects",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # Installed by .ci/services.sh (install_promtool): a missing promtool fails here.
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed (.ci/services.sh install_promtool)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced, as Prometheus would get it."""
    return expr.replace("$__rate_interval", "5m").replace("$namespace", ".*")


# --- the rules ------------------------------------------------------------------------------


def test_promtool_checks_the_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout
    assert {rule["alert"] for rule in rules()} == ALERTS


def test_promtool_refuses_a_broken_rule(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "groups:\n- name: g\n  rules:\n  - alert: Broken\n"
        "    expr: sum by (namespace (rate(cache_hits_total[5m]))\n"
    )
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules_pass():
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "FAILED" not in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    cases = [
        case
        for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in group["alert_rule_test"]
    ]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    stays_quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert fires == ALERTS
    assert stays_quiet == ALERTS


def test_every_rule_has_a_severity_and_points_to_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert "## Operating it" in readme
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["annotations"]["runbook"].endswith(f'"Operating it", {rule["alert"]}')
        assert f"`{rule['alert']}`" in readme, rule["alert"]


# --- the dashboard --------------------------------------------------------------------------


def test_dashboard_is_valid_grafana_json_with_the_panels():
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {panel["title"] for panel in board["panels"]} == PANELS
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].strip(), panel["title"]


def test_dashboard_queries_are_valid_promql(tmp_path):
    # promtool parses PromQL only inside a rules file: wrap each query in a recording rule.
    as_rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": as_promql(expr)}
                    for n, expr in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(as_rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(dashboard_exprs())} rules found" in result.stdout


# --- metric names against /metrics ----------------------------------------------------------

# PromQL words that look like metric names: functions (followed by "("), keywords, and the
# label lists of by/without/on/ignoring/group_left/group_right.
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^{}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\[\]]*\]", "", expr)  # ranges and subqueries
    expr = LABEL_LIST.sub("", expr)
    names = set()
    for match in re.finditer(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def test_metric_names_finds_the_selected_metrics():
    expr = (
        'histogram_quantile(0.95, sum by (namespace, le) (rate(cache_fill_seconds_bucket{le!="x",'
        'namespace=~"a|b"}[5m]))) > 0.25 and on (namespace) max(cache_breaker_open offset 1m)'
        " unless ignoring(operation) rate(cache_errors_total[$__rate_interval]) == bool 1e3"
    )
    assert metric_names(expr) == {
        "cache_fill_seconds_bucket",
        "cache_breaker_open",
        "cache_errors_total",
    }


def exposed_series(text: str) -> dict[str, set[str]]:
    """Every series name /metrics exposes or declares, with its labels. A family declared
    with no sample yet (a labelled counter before its first increment) still names its
    series by its type: counter ``x`` is ``x_total``, histogram ``x`` is ``x_bucket``,
    ``x_count`` and ``x_sum``, gauge ``x`` is ``x``."""
    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_count", "_sum", "_created"],
        "summary": ["", "_count", "_sum", "_created"],
        "gauge": [""],
        "untyped": [""],
    }
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in suffixes[family.type]:
            series.setdefault(family.name + suffix, set())
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def scrape(api: Any, token: str) -> str:
    response = api.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    return response.content.decode()


def test_every_metric_in_the_rules_and_dashboard_is_exposed(api, settings, use_redis):
    # given every labelled series the rules use has a sample: reads (hits, misses, fills),
    # an invalidation, then Redis unreachable (errors, the limiter failing open)
    settings.METRICS_TOKEN = "m" * 32
    course = course_with_modules(1)
    for _ in range(2):
        api.get("/api/v1/courses")
        api.get(f"/api/v1/courses/{course.id}")
    call_command("cache_flush", "--namespace", "courses:list", "--no-warm", stdout=StringIO())
    use_redis(f"redis://127.0.0.1:{free_port()}/0")
    api.get("/api/v1/courses")
    api.post("/api/v1/auth/token", {"username": "nobody", "password": "x" * 12}, format="json")

    # when /metrics is scraped
    series = exposed_series(scrape(api, settings.METRICS_TOKEN))

    # then every name the rules and the dashboard select is a series it exposes, and
    # the labelled ones have the labels the rules group by
    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    used |= {name for expr in dashboard_exprs() for name in metric_names(as_promql(expr))}
    assert used, "no metric name found in the rules or the dashboard"
    assert sorted(used - series.keys()) == []
    assert {
        "cache_hits_total",
        "cache_misses_total",
        "cache_errors_total",
        "cache_invalidations_total",
        "cache_fill_seconds_bucket",
        "cache_stale_served_total",
        "cache_fill_waits_total",
        "cache_breaker_open",
        "rate_limit_fail_open_total",
    } <= used
    assert {"namespace"} <= series["cache_hits_total"]
    assert {"namespace", "operation"} <= series["cache_errors_total"]
    assert {"namespace", "cause"} <= series["cache_invalidations_total"]
    assert {"namespace", "le"} <= series["cache_fill_seconds_bucket"]
    assert {"scope"} <= series["rate_limit_fail_open_total"]


def test_a_misspelt_metric_would_not_be_exposed(api, settings):
    settings.METRICS_TOKEN = "m" * 32
    series = exposed_series(scrape(api, settings.METRICS_TOKEN))
    assert "cache_hit_total" not in series
    assert "cache_fill_seconds" not in series  # a histogram is queried by its _bucket series
    assert "cache_breaker_open_total" not in series
    assert {"cache_hit_rate", "cache_fill_seconds_bucket", "cache_errors_total"} <= series.keys()
