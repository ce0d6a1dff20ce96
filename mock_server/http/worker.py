"""One HTTP worker process: the Flask app behind the async front (``front.py``).

``python -m mock_server.http.worker FD``: the supervisor binds the listening socket
once and hands its file descriptor to every worker, so N workers share one port
and no other process can join it. The configuration comes from ``CONFIG_ENV``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable

from mock_server.core.backend import Backend
from mock_server.core.config import MockConfig, config_from_env
from mock_server.http.app import create_app
from mock_server.http.front import Front, FrontSettings
from mock_server.server.collector import quiet_collections
from mock_server.server.console import Console
from mock_server.server.console import from_config as console_for
from mock_server.server.loops import new_event_loop


def tls_context(config: MockConfig) -> ssl.SSLContext | None:
    """HTTPS for the API when a certificate is configured."""
    if not config.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def front_settings(config: MockConfig) -> FrontSettings:
    return FrontSettings(header_timeout_s=config.http_header_timeout_s, body_timeout_s=config.http_body_timeout_s,
                         idle_timeout_s=config.http_idle_timeout_s, max_body_bytes=config.max_body_bytes,
                         max_header_bytes=config.http_max_header_bytes)


async def serve_on(sock: socket.socket, config: MockConfig, stop: asyncio.Event,
                   on_ready: Callable[[Backend], None] | None = None, console: Console | None = None, *,
                   own_process: bool = False) -> None:
    """Serve HTTP on a bound socket until ``stop`` is set (``own_process``: the process is the worker's alone,
    so it may take over the garbage collector's schedule)."""
    loop = asyncio.get_running_loop()
    backend = Backend(config)
    backend.store.checkpoint_in_background()
    front = Front(create_app(backend=backend), backend, front_settings(config), loop, console=console)
    server = await loop.create_server(front.protocol, sock=sock, backlog=2048, ssl=tls_context(config))
    if on_ready is not None:
        on_ready(backend)
    try:
        with quiet_collections(loop, lambda: front.requests, config.gc_full_s if own_process else 0):
            await stop.wait()
    finally:
        server.close()
        front.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)
        backend.store.close()


class FrontThread:
    """The front on a free loopback port, in a daemon thread beside a test (``.url``, ``.backend``)."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.loop = new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="synthflow-mock-http", daemon=True)
        self._ready = threading.Event()
        self.backend: Backend | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(serve_on(self.sock, self.config, self._stop, on_ready=self._started))

    def _started(self, backend: Backend) -> None:
        self.backend = backend
        self._ready.set()

    def start(self) -> FrontThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the HTTP front did not start")
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.loop.close()


def main(fd: int) -> None:
    from mock_server.server.supervisor import die_with_parent

    die_with_parent()
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    loop = new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        config = config_from_env()
        loop.run_until_complete(serve_on(sock, config, stop, console=console_for(config), own_process=True))
    finally:
        loop.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
