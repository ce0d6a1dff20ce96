"""What one instance must own before it says ``ready``: its ports and its store.

Each clash is refused in one line that names the port or file and what to do, and
exits with status 2. Nothing here is left half-claimed: a failed check releases
what the earlier ones took.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sqlite3

from mock_server.core.store import Store, open_store
from mock_server.redis_store.urls import describe


class Clash(Exception):
    """A port or a store this instance cannot have; the CLI prints it as one line and exits 2."""

    def __init__(self, message: str) -> None:
        super().__init__(f"synthflow-mock: {message}")


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind_http(host: str, port: int, workers: int = 1) -> list[socket.socket]:
    """The HTTP listening sockets, one per worker, bound here and kept for the instance's life.

    One worker: a plain socket. Several: one socket each in a SO_REUSEPORT group, so the kernel spreads
    connections evenly over the workers. (One socket shared by all lets whichever worker wakes first
    accept a burst of connections: 16 opened together went 15/1 or 16/0, and a keep-alive load test then
    loads one worker.) The port is first taken with a plain bind, which fails if anything holds it, so a
    second instance is refused instead of silently joining the group and taking part of the traffic.
    """
    family = _family(host)
    try:
        if workers > 1:  # does anyone hold the port? (a plain bind fails beside any listener, grouped or not)
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
                port = probe.getsockname()[1]
        sockets = [socket.create_server((host, port), family=family, backlog=2048, reuse_port=workers > 1)
                   for _ in range(workers)]
    except OSError as exc:
        raise Clash(f"cannot listen on HTTP {_fmt(host, port)}: {os.strerror(exc.errno or 0)}; is another server "
                    "using it? Choose another port with --http-port") from None
    for sock in sockets:
        sock.set_inheritable(True)
    return sockets


def check_sip_ports(host: str, port: int, tls_port: int | None) -> None:
    """Bind what the SIP process will bind (UDP and TCP on the SIP port, TCP on the TLS port) and let go.

    The SIP process binds again a moment later; if something takes a port in between, it says so
    in one line too (``sip/runner.py``)."""
    wanted = [("udp", socket.SOCK_DGRAM, port, "--sip-port"), ("tcp", socket.SOCK_STREAM, port, "--sip-port")]
    if tls_port is not None:
        wanted.append(("tls", socket.SOCK_STREAM, tls_port, "--sip-tls-port"))
    for name, kind, number, flag in wanted:
        with socket.socket(_family(host), kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
            try:
                sock.bind((host, number))
                if kind == socket.SOCK_STREAM:
                    sock.listen(1)
            except OSError as exc:
                raise Clash(f"cannot listen on SIP {name} {_fmt(host, number)}: {os.strerror(exc.errno or 0)}; is "
                            f"another SIP server using it? Choose another port with {flag}") from None


def claim_store(path: str) -> int:
    """Take the store for this instance: an exclusive lock held for its lifetime. Returns the lock's fd."""
    lock_path = path + ".instance"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise Clash(f"cannot use the store {path}: {exc.strerror}; choose another --store") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise Clash(f"the store {path} is served by another synthflow-mock (pid {holder}); give this instance "
                    "its own --store, or stop the other one") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def check_redis(url: str) -> None:
    """Reach the Redis store once: a server that is down or refuses the password fails now, by name."""
    try:
        store = open_store(url)
        try:
            store.ping()
            store.counters()
        finally:
            store.close()
    except Exception as exc:  # redis.RedisError and its causes (refused, DNS, auth, wrong protocol)
        raise Clash(f"cannot use the Redis store {describe(url)}: {type(exc).__name__}: {exc}; is redis-server "
                    "running there?") from None


def check_store(path: str) -> None:
    """Open the store once: a file that is not a SQLite database, or a damaged one, fails now, by name."""
    try:
        store = Store(path)
        try:
            store.counters()
            store.journal(limit=1)
            store.list_calls(limit=1)
        finally:
            store.close()
    except sqlite3.DatabaseError as exc:
        raise Clash(f"the store {path} is not a usable SQLite database ({exc}); move it away or choose another "
                    "--store") from None
    except OSError as exc:
        raise Clash(f"cannot open the store {path}: {exc.strerror or exc}; choose another --store") from None
