"""Commands, warming and the metrics endpoint, in-process (the multi-worker checks live in
test_cache_gunicorn.py)."""

import re
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from caching import keys
from caching.stats import counts_from_text
from caching.tasks import cache_warm
from tests.factories import CourseFactory, course_with_modules
from tests.helpers import key_count, redis_keys

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def entry_keys(redis_client, namespace):
    return redis_keys(redis_client, keys.entry_pattern(namespace))


@pytest.fixture
def catalogue():
    active = [course_with_modules(1, difficulty=d) for d in ("beginner", "advanced", "advanced")]
    CourseFactory(is_active=False)
    return active


def test_cache_warm_fills_list_filters_and_every_active_detail(
    catalogue, redis_client, api, django_assert_num_queries
):
    output = run("cache_warm")
    assert "courses:list: 4 entries filled" in output
    assert "courses:detail: 3 entries filled" in output
    assert len(entry_keys(redis_client, "courses:list")) == 4
    assert len(entry_keys(redis_client, "courses:detail")) == 3
    with django_assert_num_queries(0):
        api.get("/api/v1/courses?difficulty=advanced")
        api.get(f"/api/v1/courses/{catalogue[0].id}")


def test_warming_twice_is_harmless_and_stores_nothing_new(catalogue, redis_client):
    first = cache_warm.apply().get()
    before = {k: redis_client.get(k) for k in entry_keys(redis_client, "courses:detail")}
    second = cache_warm.apply().get()
    assert first == {"courses:list": 4, "courses:detail": 3}
    assert second == {"courses:list": 0, "courses:detail": 0}
    assert {k: redis_client.get(k) for k in entry_keys(redis_client, "courses:detail")} == before


def test_cache_warm_namespace_option_and_unknown_namespace(catalogue, redis_client):
    assert "courses:detail: 3" in run("cache_warm", "--namespace", "courses:detail")
    assert entry_keys(redis_client, "courses:list") == []
    with pytest.raises(CommandError, match="choose one of"):
        run("cache_warm", "--namespace", "users:progress")
    with pytest.raises(CommandError, match="choose one of"):
        run("cache_flush", "--namespace", "nope")


def test_cache_flush_then_reads_miss(catalogue, api, django_assert_num_queries):
    api.get("/api/v1/courses")
    with django_assert_num_queries(0):
        api.get("/api/v1/courses")
    output = run("cache_flush", "--namespace", "courses:list", "--no-warm")
    assert "courses:list: flushed" in output
    with django_assert_num_queries(3):  # count version, count, page
        api.get("/api/v1/courses")


def test_cache_flush_all_rewarms_shared_entries(
    catalogue, api, redis_client, django_assert_num_queries
):
    api.get("/api/v1/courses")
    output = run("cache_flush", "--all")
    for namespace in (
        "courses:list",
        "courses:detail",
        "users:progress",
        "rewards:history",
        "credentials:list",
    ):
        assert f"{namespace}: flushed" in output
    assert "courses:list: 4 entries re-warmed" in output
    with django_assert_num_queries(0):
        api.get("/api/v1/courses")
    assert key_count(redis_client) > 0  # never FLUSHDB


def stats_rows(*args):
    output = run("cache_stats", *args)
    header, *lines = output.splitlines()
    names = header.split()[1:]
    return {line.split()[0]: dict(zip(names, line.split()[1:], strict=True)) for line in lines}


def test_cache_stats_numbers_match_the_requests(catalogue, api):
    before = stats_rows()
    for _ in range(3):
        api.get("/api/v1/courses")  # 1 miss, 2 hits
    api.get(f"/api/v1/courses/{catalogue[0].id}")  # 1 miss
    after = stats_rows()

    def grew(namespace, column):
        return int(after[namespace][column]) - int(before[namespace][column])

    assert (grew("courses:list", "hits"), grew("courses:list", "misses")) == (2, 1)
    assert (grew("courses:detail", "hits"), grew("courses:detail", "misses")) == (0, 1)
    assert (grew("users:progress", "hits"), grew("users:progress", "misses")) == (0, 0)
    assert after["courses:list"]["keys"] == "1"  # one live key
    assert after["courses:list"]["outdated"] == "0"
    assert int(after["courses:list"]["bytes"]) > 0


def test_cache_stats_agrees_with_metrics(catalogue, api, settings):
    settings.METRICS_TOKEN = "t" * 32
    for _ in range(3):
        api.get("/api/v1/courses")
    text = scrape(api, HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}").content.decode()
    rows = stats_rows("--namespace", "courses:list")
    assert int(rows["courses:list"]["hits"]) == metric(text, "cache_hits_total", "courses:list")
    assert int(rows["courses:list"]["misses"]) == metric(text, "cache_misses_total", "courses:list")
    # Across hosts, the command sums each host's /metrics text.
    summed = counts_from_text([text, text])
    assert summed["courses:list"]["hits"] == 2 * metric(text, "cache_hits_total", "courses:list")


def test_cache_stats_separates_current_keys_from_outdated_ones(catalogue, api):
    api.get("/api/v1/courses")
    api.get("/api/v1/courses?difficulty=advanced")
    assert (stats_rows()["courses:list"]["keys"], stats_rows()["courses:list"]["outdated"]) == (
        "2",
        "0",
    )

    run("cache_flush", "--namespace", "courses:list", "--no-warm")
    rows = stats_rows()["courses:list"]
    assert (rows["keys"], rows["outdated"]) == ("0", "2")  # never served, wait for a fill

    api.get("/api/v1/courses")  # overwrites its entry in place
    rows = stats_rows()["courses:list"]
    assert (rows["keys"], rows["outdated"]) == ("1", "1")


def scrape(api, **headers):
    return api.get("/metrics", **headers)


def metric(text, name, namespace):
    match = re.search(
        rf'^{name}{{namespace="{re.escape(namespace)}"}} ([0-9.e+-]+)$', text, re.MULTILINE
    )
    return float(match.group(1)) if match else 0.0


def test_metrics_require_the_token(api, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    assert scrape(api).status_code == 404
    assert scrape(api, HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    response = scrape(api, HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200
    assert b"cache_hit_rate" in response.content


def test_metrics_without_token_only_from_loopback(api, settings):
    settings.METRICS_TOKEN = ""
    assert api.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404
    assert api.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200


def test_metrics_count_hits_and_misses_per_namespace(catalogue, api, settings):
    settings.METRICS_TOKEN = "t" * 20
    auth = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 20}
    before = scrape(api, **auth).content.decode()
    api.get("/api/v1/courses?limit=7")
    api.get("/api/v1/courses?limit=7")
    api.get("/api/v1/courses?limit=7")
    text = scrape(api, **auth).content.decode()
    hits = metric(text, "cache_hits_total", "courses:list") - metric(
        before, "cache_hits_total", "courses:list"
    )
    misses = metric(text, "cache_misses_total", "courses:list") - metric(
        before, "cache_misses_total", "courses:list"
    )
    assert (hits, misses) == (2, 1)
    total_hits = metric(text, "cache_hits_total", "courses:list")
    total_misses = metric(text, "cache_misses_total", "courses:list")
    assert metric(text, "cache_hit_rate", "courses:list") == pytest.approx(
        total_hits / (total_hits + total_misses)
    )
    assert "cache_fill_seconds_count" in text


def test_beat_schedule_has_the_warming_task_at_the_configured_period():
    entry = django_settings.CELERY_BEAT_SCHEDULE["cache-warm"]
    assert entry["task"] == "caching.tasks.cache_warm"
    assert entry["schedule"] == float(django_settings.CACHE_WARM_INTERVAL)
    from chainlearn.celery import app

    assert "caching.tasks.cache_warm" in app.tasks
    assert app.conf.beat_schedule["cache-warm"]["task"] == "caching.tasks.cache_warm"
    assert app.conf.broker_url != django_settings.REDIS_URL  # broker has its own Redis db
