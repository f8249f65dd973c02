"""gunicorn settings and server hooks (``gunicorn -c python:chainlearn.gunicorn_conf``).

``when_ready`` warms the cache once when the service starts (caching.md, Warming), in the
master before workers fork; it closes its database and Redis connections so no worker
inherits them. ``post_worker_init`` loads the URLconf (every view) and freezes what is
loaded out of the garbage collector's reach. ``child_exit`` tells prometheus_client's
multiprocess mode that a worker's live gauges are gone.
"""

from __future__ import annotations

import os
from typing import Any

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = 30
graceful_timeout = 10
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"


def when_ready(server: Any) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import connections

    if not (settings.CACHE_ENABLED and settings.CACHE_WARM_ON_START):
        return
    from caching.connection import disconnect
    from caching.warming import warm_quietly

    stored = warm_quietly()
    server.log.info("cache warmed on start: %s", stored)
    connections.close_all()
    disconnect()


def post_worker_init(worker: Any) -> None:
    """Import every view now, then ``gc.freeze()`` the ~100,000 objects loaded so far.

    They live as long as the worker; left in the collected generations, every full
    collection walks them all: about 50 ms with every request thread of the worker
    stopped, which set the p99 of the cached reads in the benchmark.
    """
    import gc

    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports the URLconf and every view)
    gc.collect()
    gc.freeze()
    import sys

    if os.environ.get("GIL_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["GIL_SWITCH_INTERVAL"]))


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
