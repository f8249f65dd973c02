"""A private redis-server for fault tests: stop it, pause it, start it again. Also private
Sentinel and Redis Cluster setups built from such servers."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

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
    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        self.extra = extra
        self.dir = tempfile.mkdtemp(prefix="cl-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        binary = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server not found: install it (the CI script does)")
        self.binary = binary

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
                and len(sentinel.sentinel_sentinels(self.SERVICE)) == 2  # type: ignore[arg-type]
                for sentinel in self._sentinel_clients()
            )

        wait_for(ready, "the Sentinel setup did not come up", timeout)

    def wait_promoted(self, server: RedisServer, timeout: float = 30.0) -> float:
        """Seconds until every Sentinel names ``server`` the master and it says so."""
        client = redis.Redis(port=server.port, socket_timeout=1)

        def promoted() -> bool:
            named = {
                int(sentinel.sentinel_get_master_addr_by_name(self.SERVICE)[1])  # type: ignore[index]
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


# A cluster node listens on its port and on port + 10000 (the cluster bus). Both are taken
# below Linux's ephemeral range (32768-60999) when possible: there, the tests' many client
# connections could be holding the port by the time a node starts or restarts on it. Ports
# 12000-13999 (bus 22000-23999) are clear of every port the project's scripts use
# (.ci/services.sh: clusters on 11xxx/21xxx and 17400/27400, Sentinels and servers on
# 25xxx-28xxx) and of 14000-14005, where a cluster for development may run.
CLUSTER_PORTS = range(12000, 14000)
CLUSTER_BUS_OFFSET = 10000
CLUSTER_SLOTS = 16384


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port(taken: Collection[int] = ()) -> int:
    """A port for a cluster node, free together with its bus port (port + 10000, so the
    port is at most 55535) and clear of the ports and bus ports in ``taken``. From
    ``CLUSTER_PORTS``, starting at random so that concurrent test processes seldom want the
    same; else any free port whose bus port is free."""
    used = {p for port in taken for p in (port, port + CLUSTER_BUS_OFFSET)}

    def fits(port: int) -> bool:
        bus = port + CLUSTER_BUS_OFFSET
        return (
            bus <= 65535
            and port not in used
            and bus not in used
            and bindable(port)
            and bindable(bus)
        )

    start = random.randrange(len(CLUSTER_PORTS))
    for i in range(len(CLUSTER_PORTS)):
        port = CLUSTER_PORTS[(start + i) % len(CLUSTER_PORTS)]
        if fits(port):
            return port
    for _ in range(100):
        port = free_port()
        if fits(port):
            return port
    raise RuntimeError("no free port with a free cluster bus port")


@dataclass(frozen=True)
class ClusterNodeView:
    """One line of CLUSTER NODES: a node as the node asked sees it."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str  # "-" for a master
    slots: tuple[tuple[int, int], ...]  # first and last slot of each range it serves

    @classmethod
    def parse(cls, line: str) -> ClusterNodeView:
        fields = line.split()
        address = fields[1].split("@", 1)[0]  # ip:port@bus-port[,hostname]
        ranges = []
        for item in fields[8:]:
            if item.startswith("["):  # a slot moving in or out: the ranges say who serves it
                continue
            first, _, last = item.partition("-")
            ranges.append((int(first), int(last or first)))
        return cls(
            fields[0],
            int(address.rsplit(":", 1)[1]),
            frozenset(fields[2].split(",")),
            fields[3],
            tuple(ranges),
        )

    def serves(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


class ClusterSetup:
    """A private Redis Cluster: three masters and a replica of each (``redis-cli --cluster
    create`` pairs them), every node a ``RedisServer`` a test can kill, pause or start
    again. The node timeout is short so that a dead master's replica takes over within
    seconds. Roles change under failovers: ask ``masters()`` and ``replica_of()``, never
    the order of ``nodes``. Replicas replicate as their own ACL user, so a test can cut a
    master's replication (``cut_replication``) and make a write reach that master only."""

    MASTERS = 3
    REPLICATION_USER = SentinelSetup.REPLICATION_USER

    def __init__(self, node_timeout_ms: int = 1000) -> None:
        self.node_timeout_ms = node_timeout_ms
        ports: list[int] = []
        for _ in range(2 * self.MASTERS):
            ports.append(free_cluster_port(ports))
        self.nodes = [
            RedisServer(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",  # in the node's own directory
                "--cluster-node-timeout",
                str(node_timeout_ms),
                # A master syncs a new replica at once, not after 5 s waiting for more.
                "--repl-diskless-sync-delay",
                "0",
                # The other masters keep serving while one is down (README: Redis Cluster).
                "--cluster-require-full-coverage",
                "no",
                "--user",
                self.REPLICATION_USER[0],
                "on",
                f">{self.REPLICATION_USER[1]}",
                "~*",
                "&*",
                "+@all",
                "--masteruser",
                self.REPLICATION_USER[0],
                "--masterauth",
                self.REPLICATION_USER[1],
                port=port,
            )
            for port in ports
        ]
        self.dir = tempfile.mkdtemp(prefix="cl-cluster-")
        self.reshards: list[subprocess.Popen[bytes]] = []
        self._reshard_logs: dict[int, str] = {}
        self._clients: dict[int, redis.Redis] = {}

    def addresses(self) -> str:
        """Every node as ``host:port,...``: the value for ``CACHE_REDIS_NODES``."""
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> None:
        """Start the nodes, form the cluster and wait until it is ready. If any of it fails,
        everything started is stopped: no fixture teardown runs after a failed setup."""
        try:
            for node in self.nodes:
                node.start()
            self._cli(
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            )
            self.wait_ready()
        except BaseException:
            self.cleanup()
            raise

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Until every node (all must be running) says the cluster is ok with every slot
        served, knows all the others and agrees on the slots' masters, and every replica's
        link to its master is up."""

        def ready() -> bool:
            replicas = 0
            for node in self.nodes:
                info = self._cluster_info(node)
                if not self._ok(info) or int(info["cluster_known_nodes"]) != len(self.nodes):
                    return False
                replication = self._client(node).info("replication")
                if replication["role"] == "slave":
                    if replication.get("master_link_status") != "up":
                        return False
                    replicas += 1
            return replicas == self.MASTERS and self._agreed()

        return wait_for(_answered(ready), "the Redis Cluster did not come up", timeout)

    def masters(self) -> list[RedisServer]:
        """The running nodes that are masters now, by their own word (ROLE; a paused node
        does not answer: resume it first)."""
        return [node for node in self._running() if self._role(node)[0] == "master"]

    def replica_of(self, master: RedisServer) -> RedisServer:
        """The running node replicating ``master`` (by its ROLE, which names the master
        even while that is down, until the replica is promoted)."""
        for node in self._running():
            role = self._role(node)
            if role[0] == "slave" and int(role[2]) == master.port:
                return node
        raise LookupError(f"no running replica of {master.port}")

    def cut_replication(self, master: RedisServer) -> None:
        """Disable the replication user on ``master`` and drop its replica's link: from
        here on its writes reach the replica no more (the replica cannot log in again)."""
        client = self._client(master)
        client.acl_setuser(self.REPLICATION_USER[0], enabled=False)
        client.client_kill_filter(user=self.REPLICATION_USER[0])

    def master_of_slot(self, slot: int) -> RedisServer:
        """The master serving ``slot`` in the cluster's configuration, as the first running
        node has it (``redis.crc.key_slot(key_bytes)`` gives a key's slot)."""
        for view in self._view(self._running()[0]):
            if "master" in view.flags and view.serves(slot):
                return self._server(view.port)
        raise LookupError(f"no master serves slot {slot}")

    def node_id(self, node: RedisServer) -> str:
        return str(self._client(node).execute_command("CLUSTER", "MYID"))

    def wait_promoted(self, replica: RedisServer, timeout: float = 30.0) -> float:
        """Seconds until ``replica`` says it is a master and every running node agrees: it
        is a master in their CLUSTER NODES, and their cluster is ok, every slot served."""
        replica_id = self.node_id(replica)

        def promoted() -> bool:
            if self._role(replica)[0] != "master":
                return False
            for node in self._running():
                if not self._ok(self._cluster_info(node)):
                    return False
                if not any(
                    view.id == replica_id and "master" in view.flags for view in self._view(node)
                ):
                    return False
            return True

        return wait_for(_answered(promoted), f"{replica.port} was not promoted", timeout)

    def wait_agreed(self, timeout: float = 30.0) -> float:
        """Until every running node has the same masters serving the same slots, and the
        cluster ok (after a reshard, say: no node redirects a key elsewhere)."""

        def agreed() -> bool:
            ok = all(self._ok(self._cluster_info(node)) for node in self._running())
            return ok and self._agreed()

        return wait_for(_answered(agreed), "the cluster's nodes did not agree", timeout)

    def start_reshard(
        self, source: RedisServer, target: RedisServer, slots: int
    ) -> subprocess.Popen[bytes]:
        """Start moving ``slots`` slots and their keys from master ``source`` to master
        ``target`` (``redis-cli --cluster reshard``), in the background, so that a test can
        put load on the cluster meanwhile; ``finish_reshard`` waits for it."""
        command = [
            self._cli_binary(),
            "--cluster",
            "reshard",
            f"127.0.0.1:{source.port}",
            "--cluster-from",
            self.node_id(source),
            "--cluster-to",
            self.node_id(target),
            "--cluster-slots",
            str(slots),
            "--cluster-yes",
        ]
        # Its output (a line per key batch moved) goes to a file, not to a pipe that could
        # fill up; finish_reshard shows it if the reshard failed.
        log = os.path.join(self.dir, f"reshard-{len(self.reshards)}.log")
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self.reshards.append(proc)
        self._reshard_logs[proc.pid] = log
        return proc

    def finish_reshard(self, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
        """Wait for a reshard from ``start_reshard`` and for every node to agree on the new
        slot owners; ``RuntimeError`` with redis-cli's output if it failed."""
        status = proc.wait(timeout=timeout)
        if status:
            with open(self._reshard_logs[proc.pid], errors="replace") as log:
                output = log.read()
            raise RuntimeError(f"redis-cli --cluster reshard exited {status}:\n{output[-3000:]}")
        self.wait_agreed()

    def reshard(
        self, source: RedisServer, target: RedisServer, slots: int, timeout: float = 120.0
    ) -> None:
        """``start_reshard`` and ``finish_reshard``: the slots moved and every node agreeing."""
        self.finish_reshard(self.start_reshard(source, target, slots), timeout)

    def cleanup(self) -> None:
        for proc in self.reshards:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for node in self.nodes:
            node.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _running(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.proc is not None]

    def _server(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def _client(self, node: RedisServer) -> redis.Redis:
        """A client of that one node (it follows no redirection)."""
        if node.port not in self._clients:
            self._clients[node.port] = redis.Redis(
                port=node.port, socket_timeout=1, decode_responses=True
            )
        return self._clients[node.port]

    def _role(self, node: RedisServer) -> list[Any]:
        return list(self._client(node).execute_command("ROLE"))

    def _cluster_info(self, node: RedisServer) -> dict[str, str]:
        text = self._client(node).execute_command("CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def _view(self, node: RedisServer) -> list[ClusterNodeView]:
        text = self._client(node).execute_command("CLUSTER", "NODES")
        return [ClusterNodeView.parse(line) for line in text.splitlines() if line.strip()]

    def _agreed(self) -> bool:
        """Whether the running nodes see the same masters serving the same slots."""
        views = {
            frozenset(
                (view.id, view.slots)
                for view in self._view(node)
                if "master" in view.flags and view.slots
            )
            for node in self._running()
        }
        return len(views) == 1

    @staticmethod
    def _ok(info: dict[str, str]) -> bool:
        return info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == str(
            CLUSTER_SLOTS
        )

    def _cli_binary(self) -> str:
        """redis-cli beside the redis-server in use, else the one on PATH."""
        beside = os.path.join(os.path.dirname(self.nodes[0].binary), "redis-cli")
        found = beside if os.access(beside, os.X_OK) else shutil.which("redis-cli")
        if not found:
            raise RuntimeError("redis-cli not found: install redis-server (the CI script does)")
        return found

    def _cli(self, *args: str) -> None:
        done = subprocess.run(
            [self._cli_binary(), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode:
            raise RuntimeError(
                f"redis-cli {' '.join(args[:2])} exited {done.returncode}:\n"
                f"{(done.stdout + done.stderr)[-3000:]}"
            )


def _answered(condition: Callable[[], bool]) -> Callable[[], bool]:
    """``condition``, false while a node does not answer (down, paused or loading): polled
    until it holds or the wait times out."""

    def check() -> bool:
        try:
            return condition()
        except redis.RedisError:
            return False

    return check
