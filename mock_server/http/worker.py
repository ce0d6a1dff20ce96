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
import sys

from mock_server.core.backend import Backend
from mock_server.core.config import MockConfig, config_from_env
from mock_server.http.app import create_app
from mock_server.http.front import Front, FrontSettings
from mock_server.server.loops import new_event_loop


def front_settings(config: MockConfig) -> FrontSettings:
    return FrontSettings(header_timeout_s=config.http_header_timeout_s, body_timeout_s=config.http_body_timeout_s,
                         idle_timeout_s=config.http_idle_timeout_s, max_body_bytes=config.max_body_bytes)


async def serve_on(sock: socket.socket, config: MockConfig, stop: asyncio.Event) -> None:
    """Serve HTTP on a bound socket until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    backend = Backend(config)
    front = Front(create_app(backend=backend), backend, front_settings(config), loop)
    server = await loop.create_server(front.protocol, sock=sock, backlog=2048)
    try:
        await stop.wait()
    finally:
        server.close()
        front.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)
        backend.store.close()


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
        loop.run_until_complete(serve_on(sock, config_from_env(), stop))
    finally:
        loop.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
