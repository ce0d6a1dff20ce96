"""Helpers for test suites: free ports, ``synthflow-mock serve`` as a real subprocess, and a real
``redis-server`` for instances that share a Redis store.

The pytest plugin (``mock_server.pytest_plugin``) builds its live-server fixture on these.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from mock_server import xei


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP (the SIP endpoint binds both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free UDP+TCP port")


@dataclass
class LiveServer:
    process: subprocess.Popen
    http_port: int
    sip_port: int
    started_in: float
    log_path: str = ""
    """The server's console output (a file, so a busy server never blocks on an unread pipe)."""

    def output(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def sip_uri(self, number: str, call_id: str) -> str:
        """The ``<Sip>`` URI an integrator's TwiML should carry, pointed at this server's SIP port."""
        return xei.build_sip_uri(number, "127.0.0.1", self.sip_port, xei=xei.format_call_id(call_id))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        """Stop gracefully (the server removes its temporary store), then make sure nothing is left: no
        process and no log file."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stop(timeout=10)
        self.kill_group()

    def kill_group(self) -> None:
        """SIGKILL every process the server started (its own group and each child's session)."""
        for pid in [self.process.pid, *children(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        if self.log_path:
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)

    def group_alive(self) -> bool:
        """Whether the server or any process it started is still running."""
        return self.process.poll() is None or bool(_descendants_of(self.process.pid))


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


_started_pids: dict[int, set[int]] = {}


def _descendants_of(pid: int) -> list[int]:
    """Live processes whose session was started by ``pid`` or its children (children run in own sessions)."""
    alive = []
    for known in _started_pids.get(pid, set()):
        try:
            os.kill(known, 0)
            with open(f"/proc/{known}/stat") as f:
                if f.read().split(") ", 1)[1].split()[0] != "Z":
                    alive.append(known)
        except (ProcessLookupError, OSError):
            pass
    return alive


def _remember_tree(pid: int) -> None:
    seen: set[int] = set()
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child in children(current):
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    _started_pids.setdefault(pid, set()).update(seen)


def _banner_printed(log_path: str) -> bool:
    with open(log_path, "rb") as f:
        return b"synthflow-mock ready:" in f.read()


def start_server(*args: str, ready_timeout: float = 15.0) -> LiveServer:
    http_port, sip_port = free_port(), free_udp_tcp_port()
    cmd = [sys.executable, "-m", "mock_server", "serve", "--http-port", str(http_port),
           "--sip-port", str(sip_port), *args]
    t0 = time.monotonic()
    log_fd, log_path = tempfile.mkstemp(prefix="synthflow-mock-", suffix=".log")
    proc = subprocess.Popen(cmd, stdout=log_fd, stderr=subprocess.STDOUT, start_new_session=True)
    os.close(log_fd)
    deadline = t0 + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path, errors="replace") as f:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{f.read()}")
        try:
            # 401/403: it answers, and guards its admin API with a token. HTTP can answer before the SIP
            # side listens; the supervisor's banner says everything is up.
            if requests.get(f"http://127.0.0.1:{http_port}/_mock/health", timeout=0.5).status_code in (200, 401, 403) \
                    and _banner_printed(log_path):
                _remember_tree(proc.pid)
                return LiveServer(proc, http_port, sip_port, time.monotonic() - t0, log_path)
        except (requests.ConnectionError, requests.Timeout):  # the port listens before a worker accepts
            pass
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("server did not become ready")


@contextlib.contextmanager
def serve_app(app_or_url: Any) -> Iterator[str]:
    """Yield a base URL for an app: the URL itself, or a WSGI or ASGI app served on a free loopback
    port for the duration (werkzeug's threaded server for WSGI, uvicorn for ASGI)."""
    if isinstance(app_or_url, str):
        yield app_or_url
        return
    port = free_port()
    call = getattr(app_or_url, "__call__", None)  # noqa: B004 - an ASGI app is an object with an async __call__
    if inspect.iscoroutinefunction(app_or_url) or inspect.iscoroutinefunction(call):
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(app_or_url, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(5)
        return
    from werkzeug.serving import make_server

    wsgi = make_server("127.0.0.1", port, app_or_url, threaded=True)
    thread = threading.Thread(target=wsgi.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        wsgi.shutdown()
        wsgi.server_close()


@contextlib.contextmanager
def redis_server(binary: str = "redis-server", password: str | None = None, port: int | None = None) -> Iterator[str]:
    """Start ``redis-server`` on 127.0.0.1 and ``port`` (default: a free one), with no persistence; yield its
    URL (``redis://127.0.0.1:PORT/0``) and stop it afterwards. Several mocks started with ``--store URL``
    act as one."""
    import redis

    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="synthflow-mock-redis-")
    log_path = os.path.join(workdir, "redis.log")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", workdir, "--logfile", log_path]
    if password:
        args += ["--requirepass", password]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://{':' + password + '@' if password else ''}127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url, socket_timeout=0.5).ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    with open(log_path, errors="replace") as f:
                        raise RuntimeError(f"redis-server did not start: {f.read()}") from None
                time.sleep(0.02)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
