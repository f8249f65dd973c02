"""Rate limits shared by every worker process through Redis (fixed windows).

When Redis is unreachable the limiter fails open: the request goes through, and the
failure is logged and counted (``rate_limit_fail_open_total``), so a cache outage never
takes the API down.
"""

from __future__ import annotations

import logging
import math

from django.conf import settings
from prometheus_client import Counter
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from caching import keys
from caching.connection import CacheUnavailable, guarded
from caching.scripts import Script

logger = logging.getLogger("chainlearn.throttling")

FAIL_OPEN = Counter(
    "rate_limit_fail_open_total",
    "Requests let through because Redis was unreachable.",
    ["scope"],
)
LIMITED = Counter("rate_limited_total", "Requests refused with 429.", ["scope"])

# INCR a fixed-window counter, starting its window on the first hit. One round trip.
# KEYS: counter. ARGV: window ms. Returns {count, ms left in the window}.
COUNT_HIT = Script("""
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
""")


def count_hit(key: str, window_ms: int) -> tuple[int, int]:
    """Count one request in ``key``'s window; returns (requests so far, ms until reset)."""
    count, left = guarded("ratelimit", "count", lambda c: COUNT_HIT(c, [key], [window_ms]))
    return int(count), int(left)


class RedisWindowThrottle(BaseThrottle):
    scope = ""

    def __init__(self) -> None:
        self.retry_after: float | None = None

    def identity(self, request: Request) -> str:
        raise NotImplementedError

    def allow_request(self, request: Request, view: APIView) -> bool:
        limit, window = settings.RATE_LIMITS[self.scope]
        key = keys.rate_limit_key(self.scope, self.identity(request))
        try:
            count, left_ms = count_hit(key, window * 1000)
        except CacheUnavailable:
            FAIL_OPEN.labels(self.scope).inc()
            logger.warning("rate limit %s skipped: Redis unavailable", self.scope)
            return True
        if count <= limit:
            return True
        LIMITED.labels(self.scope).inc()
        self.retry_after = max(1, math.ceil(left_ms / 1000))
        return False

    def wait(self) -> float | None:
        return self.retry_after


class AuthRateThrottle(RedisWindowThrottle):
    """Login, registration and logout: per client IP."""

    scope = "auth"

    def identity(self, request: Request) -> str:
        return self.get_ident(request)


class ClaimRateThrottle(RedisWindowThrottle):
    """Reward claims: per authenticated user (falls back to the client IP)."""

    scope = "claims"

    def identity(self, request: Request) -> str:
        user = request.user
        return f"user:{user.pk}" if user.is_authenticated else f"ip:{self.get_ident(request)}"
