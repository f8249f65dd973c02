"""A tiny threaded TCP proxy on loopback, for cutting a service off from its database.

``TcpProxy(("127.0.0.1", 5432)).start()`` listens on a free loopback port and forwards each
connection to the target. ``cut()`` closes every live connection in both directions and stops
listening, so new connections are refused at once (ECONNREFUSED, no connect timeout);
``restore()`` listens again on the same port. Only loopback addresses are accepted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading

from tests.redis_server import free_port

CHUNK = 65536


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class TcpProxy:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        if not (_loopback(host) and _loopback(target[0])):
            raise ValueError("TcpProxy only runs between loopback addresses")
        self.host = host
        self.port = free_port()
        self.target = target
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def live_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    @property
    def is_cut(self) -> bool:
        return self._listener is None

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self._listener = listener
        thread = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    restore = start

    def cut(self) -> None:
        """Refuse new connections and drop every live one (both ends see EOF/reset)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            self._close(pair)

    def stop(self) -> None:
        self.cut()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _addr = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    self._close(pair)
                    return
                self._pairs.add(pair)
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()

    def _pump(
        self, pair: tuple[socket.socket, socket.socket], src: socket.socket, dst: socket.socket
    ) -> None:
        try:
            while data := src.recv(CHUNK):
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._pairs.discard(pair)
        self._close(pair)

    @staticmethod
    def _close(pair: tuple[socket.socket, socket.socket]) -> None:
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
