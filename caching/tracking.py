"""The invalidation streams: Redis telling this process which keys changed.

Each request thread has its own RESP3 connection running ``CLIENT TRACKING ON BCAST`` on
the key prefixes the in-process tier depends on (``caching.local``). Redis pushes the name
of every key under them that any client changes onto every such connection, in the order
it applied the changes, and whoever reads a connection applies what it reads to the
shared tier.

``Streams.sync`` is the serving barrier: the calling thread sends ``PING`` on its own
connection and reads up to the reply, applying the pushes before it, so every change
Redis applied before the ping has been applied here. No other thread takes part (no
hand-off, no lock held across the round trip); the ping is a few bytes each way.

A connection that fails or does not answer in time is closed; the thread does not serve
from the tier until it has a new one. Opening a connection empties the tier: changes made
before it existed reached only the other connections, which may not have read them yet.
A daemon thread reads the connections of idle threads now and then, so their pushes do
not pile up in Redis.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import hiredis
from redis.exceptions import RedisError

from caching.metrics import STREAM_RECONNECTS, STREAM_SYNC_SECONDS

if TYPE_CHECKING:
    from caching.local import LocalTier

logger = logging.getLogger("caching")

_INVALIDATE = b"invalidate"
_PING = b"*1\r\n$4\r\nPING\r\n"


def command(*parts: str | int | bytes) -> bytes:
    """One command in the RESP wire format."""
    encoded = [p if isinstance(p, bytes) else str(p).encode() for p in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)


def prefixes_covering(prefixes: Sequence[str]) -> list[str]:
    """``prefixes`` without those another one already covers (Redis refuses overlaps)."""
    kept: list[str] = []
    for prefix in sorted(set(prefixes)):
        if not any(prefix.startswith(shorter) for shorter in kept):
            kept.append(prefix)
    return kept


class Stream:
    """One thread's invalidation stream (see the module)."""

    def __init__(
        self,
        address: Callable[[], Mapping[str, Any]],
        prefixes: Sequence[str],
        tier: LocalTier,
        *,
        timeout: float,
        retry: float,
    ) -> None:
        self.address = address
        self.prefixes = prefixes
        self.tier = tier
        self.timeout = timeout
        self.retry = retry
        self.lock = threading.Lock()  # the owner thread, or the daemon on an idle stream
        self.used_at = time.monotonic()
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader()
        self._retry_at = 0.0
        self._opened = 0

    def sync(self) -> bool:
        with self.lock:
            self.used_at = started = time.monotonic()
            if self._sock is None and not self._connect():
                return False
            assert self._sock is not None
            try:
                self._sock.sendall(_PING)
                self._read(self._sock, started + self.timeout)
            except (OSError, hiredis.ProtocolError, ValueError) as exc:
                logger.warning("cache invalidation stream: %s", exc or type(exc).__name__)
                self.close()
                return False
        STREAM_SYNC_SECONDS.observe(time.monotonic() - started)
        return True

    def drain(self, idle: float) -> None:
        """Apply what has arrived, if the owner has not used the stream for ``idle`` s."""
        if time.monotonic() - self.used_at < idle or not self.lock.acquire(blocking=False):
            return
        try:
            if self._sock is not None:
                self._read(self._sock, None)
        except (OSError, hiredis.ProtocolError, ValueError):
            self.close()
        finally:
            self.lock.release()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _read(self, sock: socket.socket, deadline: float | None) -> None:
        """Apply replies up to a ping's (by ``deadline``: else ``TimeoutError``), or, with
        no deadline, those that have arrived. The socket blocks with kernel timeouts
        (``open_tracking``), so a read is one system call."""
        while True:
            reply = self._reader.gets()
            if reply is False:
                try:
                    data = sock.recv(65536, 0 if deadline else socket.MSG_DONTWAIT)
                except BlockingIOError:
                    if deadline is None:
                        return
                    raise TimeoutError(f"no reply in {self.timeout} s") from None
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"no reply in {self.timeout} s")
                if not data:
                    raise ConnectionError("closed by Redis")
                self._reader.feed(data)
            elif isinstance(reply, list) and reply and reply[0] == _INVALIDATE:
                if reply[1] is None:  # FLUSHALL / FLUSHDB
                    self.tier.reset()
                else:
                    self.tier.invalidate([key.decode() for key in reply[1]])
            elif isinstance(reply, hiredis.ReplyError):
                raise ValueError(str(reply))
            elif deadline is not None:
                return  # the ping's reply

    def _connect(self) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            return False
        try:
            where = self.address()
            self._sock, self._reader = open_tracking(where, self.prefixes, self.timeout)
        except (OSError, RedisError, hiredis.ProtocolError, ValueError) as exc:
            logger.warning("cache invalidation stream: cannot connect: %s", exc)
            self._retry_at = now + self.retry
            return False
        self.tier.reset()
        self._opened += 1
        if self._opened > 1:
            STREAM_RECONNECTS.inc()
        return True


class Streams:
    """A process's streams: one per thread that reads, made on its first ``sync``."""

    def __init__(
        self,
        address: Callable[[], Mapping[str, Any]],
        prefixes: Sequence[str],
        tier: LocalTier,
        *,
        timeout: float,
        retry: float = 0.2,
        idle: float = 1.0,
    ) -> None:
        self.timeout = timeout
        self.address = address  # asked on each (re)connection: the master may have moved
        self.prefixes = prefixes_covering(prefixes)
        self.tier = tier
        self.retry = retry
        self.idle = idle
        self._mine = threading.local()
        self._all: weakref.WeakSet[Stream] = weakref.WeakSet()
        self._stopped = threading.Event()
        self._drainer: threading.Thread | None = None
        self._lock = threading.Lock()

    def sync(self) -> bool:
        """Once this returns True, every change Redis applied before the call has been
        applied to the tier; False if this thread's stream is down or took longer than
        ``timeout`` seconds."""
        stream: Stream | None = getattr(self._mine, "stream", None)
        if stream is None:
            stream = self._mine.stream = self._new_stream()
        return stream.sync()

    def stop(self) -> None:
        self._stopped.set()
        for stream in list(self._all):
            with stream.lock:
                stream.close()

    def _new_stream(self) -> Stream:
        stream = Stream(
            self.address, self.prefixes, self.tier, timeout=self.timeout, retry=self.retry
        )
        with self._lock:
            self._all.add(stream)
            if self._drainer is None:
                self._drainer = threading.Thread(
                    target=self._drain, name="cache-invalidations", daemon=True
                )
                self._drainer.start()
        return stream

    def _drain(self) -> None:
        while not self._stopped.wait(self.idle):
            for stream in list(self._all):
                stream.drain(self.idle)


def open_tracking(
    address: Mapping[str, Any], prefixes: Sequence[str], timeout: float
) -> tuple[socket.socket, hiredis.Reader]:
    """A RESP3 connection with ``CLIENT TRACKING ON BCAST`` on ``prefixes``, left blocking
    with kernel send and receive timeouts of ``timeout`` seconds."""
    connect_timeout = float(address.get("socket_connect_timeout") or 1.0)
    if address.get("path"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(connect_timeout)
        sock.connect(address["path"])
    else:
        sock = socket.create_connection(
            (address.get("host", "localhost"), int(address.get("port", 6379))),
            timeout=connect_timeout,
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = hiredis.Reader()
    hello: list[str | int] = ["HELLO", 3]
    if address.get("password"):
        hello += ["AUTH", address.get("username") or "default", address["password"]]
    tracking: list[str] = ["CLIENT", "TRACKING", "ON", "BCAST"]
    for prefix in prefixes:
        tracking += ["PREFIX", prefix]
    try:
        sock.sendall(command(*hello) + command(*tracking))
        for _ in range(2):
            while (reply := reader.gets()) is False:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed by Redis")
                reader.feed(data)
            if isinstance(reply, hiredis.ReplyError):
                raise ValueError(str(reply))
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    seconds = int(timeout)
    limit = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
    return sock, reader
