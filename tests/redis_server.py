"""A private redis-server for fault tests: stop it, pause it, start it again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition: Callable[[], bool], what: str, timeout: float) -> float:
    """Poll ``condition`` (a server process's state: no hook tells us) until it holds;
    the seconds it took, or ``TimeoutError`` naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(what)
        time.sleep(0.02)
    return time.monotonic() - started


def wait_port(port: int, *, open_: bool, timeout: float = 10.0) -> None:
    state = "open" if open_ else "closed"
    wait_for(lambda: port_open(port) == open_, f"port {port} did not become {state}", timeout)


class RedisServer:
    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.extra = extra
        self.dir = tempfile.mkdtemp(prefix="cl-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
        if not self.binary:
            raise RuntimeError("redis-server not found: install it (the CI script does)")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_port(self.port, open_=True)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server; with ``kill``, SIGKILL: no shutdown, nothing more is sent."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
        wait_port(self.port, open_=False)

    def pause(self) -> None:
        """Freeze the server: connections hang (hit the socket timeout) and data survives."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelSetup:
    """A master, its replica and three Sentinels watching them (quorum 2), all private,
    with a short down-after so a killed master is replaced within seconds. The replica
    replicates as its own ACL user, so a test can cut replication (``cut_replication``)
    and make a write reach the master only."""

    SERVICE = "chainlearn-test"
    REPLICATION_USER = ("replication", "replication-pass-for-tests")

    def __init__(self, down_after_ms: int = 500) -> None:
        user, password = self.REPLICATION_USER
        self.master = RedisServer()
        self.replica = RedisServer(
            "--replicaof",
            "127.0.0.1",
            str(self.master.port),
            "--masteruser",
            user,
            "--masterauth",
            password,
        )
        self.down_after_ms = down_after_ms
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.dir = tempfile.mkdtemp(prefix="cl-sentinel-")

    @property
    def addresses(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def start(self) -> None:
        self.master.start()
        user, password = self.REPLICATION_USER
        master = redis.Redis(port=self.master.port)
        master.acl_setuser(
            user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
        )
        self.replica.start()
        for port in self.sentinel_ports:
            conf = os.path.join(self.dir, f"sentinel-{port}.conf")
            with open(conf, "w") as out:
                out.write(
                    f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 2\n"
                    f"sentinel down-after-milliseconds {self.SERVICE} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {self.SERVICE} 5000\n"
                )
            assert self.master.binary is not None
            self.sentinels.append(
                subprocess.Popen(
                    [self.master.binary, conf, "--sentinel"], stdout=subprocess.DEVNULL
                )
            )
        for port in self.sentinel_ports:
            wait_port(port, open_=True)
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the replica is in sync and every Sentinel knows it and the other two."""
        replica = redis.Redis(port=self.replica.port, socket_timeout=1)

        def ready() -> bool:
            if replica.info("replication").get("master_link_status") != "up":
                return False
            return all(
                sentinel.sentinel_slaves(self.SERVICE)
                and len(sentinel.sentinel_sentinels(self.SERVICE)) == 2
                for sentinel in self._sentinel_clients()
            )

        wait_for(ready, "the Sentinel setup did not come up", timeout)

    def wait_promoted(self, server: RedisServer, timeout: float = 30.0) -> float:
        """Seconds until every Sentinel names ``server`` the master and it says so."""
        client = redis.Redis(port=server.port, socket_timeout=1)

        def promoted() -> bool:
            named = {
                int(sentinel.sentinel_get_master_addr_by_name(self.SERVICE)[1])
                for sentinel in self._sentinel_clients()
            }
            return named == {server.port} and client.execute_command("ROLE")[0] == b"master"

        return wait_for(promoted, f"{server.port} was not promoted", timeout)

    def _sentinel_clients(self) -> list[redis.Redis]:
        return [redis.Redis(port=port, socket_timeout=1) for port in self.sentinel_ports]

    def cut_replication(self) -> None:
        """Disable the replica's user on the master and drop its link: from here on the
        master's writes reach the replica no more (it cannot log in again)."""
        master = redis.Redis(port=self.master.port)
        master.acl_setuser(self.REPLICATION_USER[0], enabled=False)
        master.client_kill_filter(user=self.REPLICATION_USER[0])

    def cleanup(self) -> None:
        for proc in self.sentinels:
            proc.terminate()
            proc.wait(timeout=10)
        for port in self.sentinel_ports:
            wait_port(port, open_=False)
        self.master.cleanup()
        self.replica.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)
