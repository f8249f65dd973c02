"""The service as ``.ci/serve`` runs it (gunicorn, static files collected, ``DEBUG=false``),
for the tests that look at it the way a new user does: in a browser, with curl, on its
console."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.live_server import ROOT, Gunicorn
from tests.redis_server import free_port


def live_port() -> int:
    """A free loopback port: from ``TEST_LIVE_PORTS`` ("first-last") when set, else any."""
    span = os.environ.get("TEST_LIVE_PORTS", "")
    if not span:
        return free_port()
    first, last = (int(part) for part in span.split("-"))
    for port in range(first, last + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in TEST_LIVE_PORTS={span}")


def collect_static(root: Path) -> Path:
    """``manage.py collectstatic`` into ``root``, as ``.ci/serve`` does; returns it."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, "STATIC_ROOT": str(root)},
        check=True,
    )
    return root


class Served(Gunicorn):
    """gunicorn on a ``live_port()``; ``static_root`` is served at /static/."""

    def __init__(self, static_root: Path | None = None, **env: str) -> None:
        if static_root is not None:
            env["STATIC_ROOT"] = str(static_root)
        # Plain HTTP on loopback, as .ci/serve sets it: the admin's cookies must not be
        # Secure-only.
        env.setdefault("SESSION_COOKIE_SECURE", "false")
        env.setdefault("CSRF_COOKIE_SECURE", "false")
        super().__init__(workers=1, threads=4, **env)
        self.port = live_port()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def console(self) -> str:
        """Everything the service printed on its console (gunicorn's stderr and stdout)."""
        self.log.flush()
        return Path(self.log.name).read_text()
