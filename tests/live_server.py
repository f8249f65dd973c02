"""Start the service the way the README does (gunicorn with its config module) against the
test database and the test Redis, for multi-process tests."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from tests.redis_server import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent


class Gunicorn:
    def __init__(self, workers: int = 2, threads: int = 4, **env: str) -> None:
        self.port = free_port()
        self.workers = workers
        self.threads = threads
        self.extra_env = env
        self.metrics_dir = tempfile.mkdtemp(prefix="cl-prom-")
        self.metrics_token = "metrics-token-for-tests"
        self.proc: subprocess.Popen[bytes] | None = None
        # Open for the server's lifetime; kept on disk for reading after a failure.
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="cl-gunicorn-", suffix=".log", delete=False
        )

    def env(self) -> dict[str, str]:
        db = connection.settings_dict
        env = dict(os.environ)
        env.update(
            DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            REDIS_URL=settings.CACHES["default"]["LOCATION"],
            DEBUG="false",
            SECRET_KEY="test-secret-key-not-the-default",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            METRICS_TOKEN=self.metrics_token,
            PROMETHEUS_MULTIPROC_DIR=self.metrics_dir,
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            WEB_WORKERS=str(self.workers),
            WEB_THREADS=str(self.threads),
            CACHE_WARM_ON_START="false",
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:chainlearn.gunicorn_conf",
                "chainlearn.wsgi",
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, open_=True, timeout=30)
        # every worker must be up before a test counts anything
        for _ in range(200):
            if self.worker_count() >= self.workers:
                return
            self.get("/health/live")
        raise RuntimeError(f"gunicorn workers did not start; see {self.log.name}")

    def worker_count(self) -> int:
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return len(out.stdout.split())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None
            wait_port(self.port, open_=False)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            payload = json.dumps(body) if body is not None else None
            hdrs = {"Content-Type": "application/json"} if payload else {}
            hdrs.update(headers or {})
            conn.request(method, path, body=payload, headers=hdrs)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get(self, path: str, **headers: str) -> tuple[int, bytes]:
        return self.request("GET", path, headers)

    def metrics(self) -> str:
        status, body = self.get("/metrics", Authorization=f"Bearer {self.metrics_token}")
        assert status == 200, body
        return body.decode()
