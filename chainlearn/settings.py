"""ChainLearn settings: one module, every knob from an environment variable.

Development defaults are safe for a laptop; production differs only by env values.
With ``DEBUG=false`` the service refuses to start on the default ``SECRET_KEY``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

from caching import topology

BASE_DIR = Path(__file__).resolve().parent.parent

DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def database_from_url(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # Persistent connections: a new connection per request cost ~4x throughput here.
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 600),
        # Off: the check is a SELECT 1 per request. A connection broken by a database
        # restart fails one request (503) and is then replaced, without a restart.
        "CONN_HEALTH_CHECKS": env_bool("DB_CONN_HEALTH_CHECKS", False),
        "OPTIONS": {"connect_timeout": env_int("DB_CONNECT_TIMEOUT", 3)},
        # Lets parallel test runs on one server use databases of their own.
        "TEST": {"NAME": os.environ.get("TEST_DATABASE_NAME") or None},
    }


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is false")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")

INSTALLED_APPS = [
    "django_prometheus",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "users",
    "courses",
    "rewards",
    "credentials",
    "caching",
]

# Security headers wrap everything, so short-circuited responses (301, 413) carry them too.
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chainlearn.middleware.RequestIdMiddleware",
    "chainlearn.cors.CorsMiddleware",
    "chainlearn.middleware.ApiVersionRedirectMiddleware",
    "chainlearn.middleware.BodySizeLimitMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Django's session, CSRF, auth and messages middleware, for BROWSER_PATH_PREFIXES only.
    "chainlearn.middleware.BrowserSessionMiddleware",
    "chainlearn.middleware.BrowserCsrfMiddleware",
    "chainlearn.middleware.BrowserAuthenticationMiddleware",
    "chainlearn.middleware.BrowserMessageMiddleware",
    "chainlearn.request_metrics.RequestMetricsMiddleware",
]

# Paths served to browsers with sessions (the admin); the API uses bearer tokens.
BROWSER_PATH_PREFIXES = ("/admin/",)

ROOT_URLCONF = "chainlearn.urls"
WSGI_APPLICATION = "chainlearn.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:55432/chainlearn")
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "users.User"
# Checked wherever a password is set: registration (400 with details.password), the admin,
# seed_demo.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:56379/0")
CACHE_ENABLED = env_bool("CACHE_ENABLED", True)
# A plain GET of a hot read is answered before DRF wraps the request (chainlearn/hot_reads.py);
# false sends it through the DRF viewset (same answer, two Redis round trips when signed in).
CACHE_FAST_PATH = env_bool("CACHE_FAST_PATH", True)
# The module that declares the cache managers (the invalidation matrix), and the key prefix.
CACHE_MANAGERS_MODULE = "chainlearn.caches"
CACHE_KEY_PREFIX = "chainlearn"
CACHE_L1_ENTRIES = env_int("CACHE_L1_ENTRIES", 5000)
CACHE_L1_SYNC_MS = env_int("CACHE_L1_SYNC_MS", 50)
# Cache calls sit on the request path: tight timeouts and no retries (caching.md, property 7).
CACHE_SOCKET_TIMEOUT = env_float("CACHE_SOCKET_TIMEOUT", 0.05)
# Which Redis the cache uses (caching/topology.py): "standalone" (REDIS_URL), "sentinel"
# (CACHE_REDIS_SENTINELS=host:port,..., CACHE_REDIS_SERVICE, optional CACHE_REDIS_DB,
# CACHE_REDIS_PASSWORD, CACHE_REDIS_SENTINEL_PASSWORD) or "cluster" (seed nodes
# CACHE_REDIS_NODES=host:port,..., optional CACHE_REDIS_PASSWORD).
CACHE_REDIS_MODE = os.environ.get("CACHE_REDIS_MODE", "standalone")
# The in-process tier (caching/local.py): on by default; at most CACHE_L1_ENTRIES entries
# per process; a held entry is served only once the invalidation stream has drained past
# the request, which a read waits for at most CACHE_L1_SYNC_MS before going to Redis. Not
# on a Redis Cluster: the stream is one server's (caching/topology.py).
CACHE_L1 = env_bool("CACHE_L1", CACHE_REDIS_MODE != topology.CLUSTER)
if CACHE_L1 and CACHE_REDIS_MODE == topology.CLUSTER:
    raise ImproperlyConfigured("CACHE_L1 needs one Redis server: set it false with a cluster")
# On a cluster, scripts run on each thread's own connection to the master of their slot
# (caching/scripts.py); false sends them through redis-py's cluster client (the benchmark's
# "routed" mode measures the difference).
CACHE_CLUSTER_DIRECT = env_bool("CACHE_CLUSTER_DIRECT", True)
# How long a write's invalidation keeps trying while Redis fails over (a replica being
# promoted) before it gives up and leaves the shards to an epoch bump (caching/connection.py).
CACHE_INVALIDATION_PATIENCE_MS = env_int(
    "CACHE_INVALIDATION_PATIENCE_MS", topology.invalidation_patience_ms(CACHE_REDIS_MODE)
)
# How often a process tries again to bump the epochs of the shards whose invalidation it
# lost, until Redis answers (caching/connection.py; while the node's breaker is open, once
# per cooldown); 0 leaves them to its next call to their node.
CACHE_EPOCH_REPAIR_MS = env_int("CACHE_EPOCH_REPAIR_MS", 100)
try:
    _cache_location = topology.caches(
        CACHE_REDIS_MODE,
        {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
            "SOCKET_CONNECT_TIMEOUT": CACHE_SOCKET_TIMEOUT,
            "SOCKET_TIMEOUT": CACHE_SOCKET_TIMEOUT,
            "CONNECTION_POOL_KWARGS": {"retry": Retry(NoBackoff(), 0), "max_connections": 64},
            "IGNORE_EXCEPTIONS": False,
        },
        {**os.environ, "REDIS_URL": REDIS_URL},
    )
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from exc
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "KEY_PREFIX": "chainlearn:django",
        **_cache_location,
    }
}
# Seconds each hot read stays fresh (caching.md TTL table); override with CACHE_TTL_<NS>.
CACHE_TTLS = {
    "users:principal": env_int("CACHE_TTL_USERS_PRINCIPAL", 60),
    "courses:list": env_int("CACHE_TTL_COURSES_LIST", 30),
    "courses:detail": env_int("CACHE_TTL_COURSES_DETAIL", 120),
    "users:progress": env_int("CACHE_TTL_USERS_PROGRESS", 10),
    "rewards:history": env_int("CACHE_TTL_REWARDS_HISTORY", 30),
    "credentials:list": env_int("CACHE_TTL_CREDENTIALS_LIST", 60),
}
# Entries are fresh for a random (1 - jitter) to 1 of their TTL, so entries filled
# together do not all come due at once.
CACHE_TTL_JITTER = env_float("CACHE_TTL_JITTER", 0.2)
# Seconds an expired entry may still be served while one request refreshes it.
CACHE_STALE_GRACE = env_int("CACHE_STALE_GRACE", 10)
# How long a filler holds its lease: other requests wait for its fill, and take over once
# it lapses (the filler died); none waits longer than twice this.
CACHE_LEASE_MS = env_int("CACHE_LEASE_MS", 2000)
# Threads per process that reload expired entries after the response, and how many reloads
# may wait for them before a request reloads inline (caching/refresh.py).
CACHE_REFRESH_THREADS = env_int("CACHE_REFRESH_THREADS", 1)
CACHE_REFRESH_QUEUE = env_int("CACHE_REFRESH_QUEUE", 1000)
# Circuit breaker: open after this many consecutive Redis failures, probe after cooldown.
CACHE_BREAKER_THRESHOLD = env_int("CACHE_BREAKER_THRESHOLD", 5)
CACHE_BREAKER_COOLDOWN = env_float("CACHE_BREAKER_COOLDOWN", 5.0)
CACHE_WARM_INTERVAL = env_int("CACHE_WARM_INTERVAL", 300)
CACHE_WARM_ON_START = env_bool("CACHE_WARM_ON_START", True)

# (requests, window seconds), shared across processes through Redis.
RATE_LIMITS = {
    "auth": (env_int("RATE_LIMIT_AUTH", 20), env_int("RATE_LIMIT_AUTH_WINDOW", 300)),
    "claims": (env_int("RATE_LIMIT_CLAIMS", 10), env_int("RATE_LIMIT_CLAIMS_WINDOW", 60)),
}

REWARD_AMOUNT = env_int("REWARD_AMOUNT", 10)
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:56379/1")
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    # Keeps the course list pages and every active course's detail hot (caching.md, Warming).
    "cache-warm": {
        "task": "caching.tasks.cache_warm",
        "schedule": float(CACHE_WARM_INTERVAL),
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["users.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["chainlearn.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "chainlearn.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # No global throttle: only the views that set throttle_classes (chainlearn.throttling,
    # limits in RATE_LIMITS) are rate limited.
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_THROTTLE_RATES": {},
    # Client IPs for rate limits: trust this many proxies' X-Forwarded-For entries.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ChainLearn API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # /api/v1/docs/ loads Swagger UI from this service's static files (the pinned
    # drf-spectacular-sidecar), never from a CDN: it works offline and behind firewalls.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No spec-validator badge: it would send the schema's URL to validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "chainlearn.schema.document_common_errors",
        "chainlearn.schema.document_page_bounds",
    ],
}

# Request bodies over 100 KB answer 413 (api.md).
MAX_BODY_BYTES = 100 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# Where collectstatic puts the admin's and Swagger UI's files, served at /static/ with
# SERVE_STATIC.
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
SERVE_STATIC = env_bool("SERVE_STATIC", True)

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "no-referrer"
if not DEBUG:
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)

# --- CORS (chainlearn/cors.py) ---------------------------------------------------------
# Browser origins allowed to call /api/, exact "scheme://host[:port]", comma separated.
# Empty (the default) allows none: no response carries Access-Control-Allow-Origin.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", "")
# Seconds a browser may cache a preflight answer.
CORS_PREFLIGHT_MAX_AGE = env_int("CORS_PREFLIGHT_MAX_AGE", 600)
# --- end CORS ---------------------------------------------------------------------------

LOG_LEVEL = os.environ.get("LOG_LEVEL", "WARNING")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "client_errors_as_info": {"()": "chainlearn.logfilters.ClientErrorsAsInfo"},
        # A message that repeats (a cache failure retried through a failover, a rate
        # limit skipped on every request while Redis is down) is one line per
        # LOG_REPEAT_SECONDS, and the next says how many were held back.
        "repeats_summarized": {
            "()": "chainlearn.logfilters.RepeatsSummarized",
            "interval": env_float("LOG_REPEAT_SECONDS", 10.0),
        },
    },
    # The handler's level too: records that loggers below root pass at INFO stay off the
    # console unless LOG_LEVEL asks for them.
    "handlers": {"console": {"class": "logging.StreamHandler", "level": LOG_LEVEL}},
    "loggers": {
        # A 4xx is one INFO line (no traceback), not a WARNING on the console.
        "django.request": {"filters": ["client_errors_as_info"]},
        "caching": {"filters": ["repeats_summarized"]},
        "chainlearn.throttling": {"filters": ["repeats_summarized"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}
