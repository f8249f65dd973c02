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
    from caching import connection, refresh

    get_redis_connection("default").flushdb()
    connection.breaker.reset()
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
    """Point the caching layer at another Redis URL (a private server or a closed port)."""
    from caching import connection

    def point(url: str) -> None:
        caches = {name: dict(conf) for name, conf in settings.CACHES.items()}
        caches["default"]["LOCATION"] = url
        settings.CACHES = caches
        connection.reset_client()
        connection.breaker.reset()

    yield point
    connection.reset_client()
    connection.breaker.reset()


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
