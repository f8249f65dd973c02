"""System checks: the cache must be Redis (caching.md relies on Lua and INCR)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register


@register()
def cache_is_redis(app_configs: Any, **kwargs: Any) -> list[Warning]:
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if backend != "django_redis.cache.RedisCache":
        return [
            Warning(
                "The default cache is not django-redis; the caching layer needs Redis.",
                hint="Set CACHES['default']['BACKEND'] to django_redis.cache.RedisCache.",
                id="caching.W001",
            )
        ]
    return []
