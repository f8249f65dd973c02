"""Shared fixtures: a real PostgreSQL (pytest-django) and the real Redis .ci/run starts.

Every test starts from an empty cache: the test Redis database is emptied before each
test (tests own that database; the product code never flushes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from tests.factories import UserFactory, token_for
from users.models import User


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    from django.conf import settings

    from caching import connection, keys, refresh, topology
    from caching.scripts import CLAIM

    connection.reset_breakers()  # first: no epoch bump of the last test lands after the flush
    client = get_redis_connection("default")
    client.flushdb()  # on a cluster, on every master
    if settings.CACHE_REDIS_MODE != topology.STANDALONE:
        for shard in keys.EVERY_SHARD:  # as the connections made before the flush did
            client.execute_command("EVAL", CLAIM, 2, keys.master_key(shard), keys.epoch_key(shard))
    yield
    refresh.stop()  # background reloads done, their database connections closed


@pytest.fixture
def redis_client() -> Any:
    return get_redis_connection("default")


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def user() -> User:
    return UserFactory()


@pytest.fixture
def auth_api(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    return client


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    return client


@pytest.fixture
def use_redis(settings: Any) -> Iterator[Any]:
    """Point the caching layer at another Redis URL (a private server or a closed port), or
    at the master of private Sentinels (``mode="sentinel"`` and their settings)."""
    from caching import connection, topology

    def point(url: str, mode: str = topology.STANDALONE, **env: str) -> None:
        options = settings.CACHES["default"]["OPTIONS"]
        shared = {k: v for k, v in options.items() if k not in topology.MODE_OPTIONS}
        where = topology.caches(mode, shared, {"REDIS_URL": url, **env})
        settings.CACHES = {**settings.CACHES, "default": {**settings.CACHES["default"], **where}}
        settings.CACHE_REDIS_MODE = mode
        settings.CACHE_INVALIDATION_PATIENCE_MS = topology.invalidation_patience_ms(mode)
        connection.reset_client()
        connection.reset_breakers()

    yield point
    connection.reset_client()
    connection.reset_breakers()


@pytest.fixture
def private_redis(use_redis: Any) -> Iterator[Any]:
    from tests.redis_server import RedisServer

    server = RedisServer()
    server.start()
    use_redis(server.url)
    yield server
    server.cleanup()


@pytest.fixture
def without_l1(settings: Any) -> None:
    """The Redis tier alone, for tests that pin a read's Redis round trips: the in-process
    tier in front would answer a repeated read with none (tests/test_cache_local.py)."""
    settings.CACHE_L1 = False


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Hashing is not under test; the default hasher costs ~0.2 s per user created."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def private_sentinels(use_redis: Any) -> Iterator[Any]:
    """A private master, replica and three Sentinels, and the caching layer on them."""
    from tests.redis_server import SentinelSetup

    setup = SentinelSetup()
    setup.start()
    use_redis(
        "",
        "sentinel",
        CACHE_REDIS_SENTINELS=setup.addresses,
        CACHE_REDIS_SERVICE=setup.SERVICE,
    )
    yield setup
    setup.cleanup()


@pytest.fixture
def private_cluster(use_redis: Any, settings: Any) -> Iterator[Any]:
    """A private Redis Cluster (3 masters, 3 replicas), and the caching layer on it."""
    from tests.redis_server import ClusterSetup

    setup = ClusterSetup()
    setup.start()
    settings.CACHE_L1 = False  # one server's invalidation stream (caching.topology)
    use_redis("", "cluster", CACHE_REDIS_NODES=setup.addresses())
    yield setup
    setup.cleanup()
