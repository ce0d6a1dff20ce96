"""``synthflow-mock serve``: HTTP on granian (a production server) plus the SIP endpoint.

State lives in one SQLite file (WAL) that every HTTP worker process and the
SIP process open, so a call prepared over HTTP is known to SIP at once.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace

from mock_server.core.config import MockConfig, to_json
from mock_server.http.wsgi import CONFIG_ENV


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, config: MockConfig) -> None:
    """Refuse to expose the admin API beyond loopback without its own token."""
    if not is_loopback(host) and not config.admin_token:
        raise SystemExit(
            f"refusing to bind {host}: beyond loopback the admin API (/_mock/*) needs --admin-token "
            "(or SYNTHFLOW_MOCK_ADMIN_TOKEN)"
        )


def serve(
    config: MockConfig,
    *,
    host: str = "127.0.0.1",
    http_port: int = 8080,
    workers: int = 2,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM. Blocks."""
    from granian import Granian
    from granian.constants import Interfaces

    check_exposure(host, config)
    tmpdir = None
    if config.store_path == ":memory:":
        tmpdir = tempfile.mkdtemp(prefix="synthflow-mock-")
        config = replace(config, store_path=os.path.join(tmpdir, "state.sqlite3"))
    os.environ[CONFIG_ENV] = to_json(config)
    try:
        banner = (f"synthflow-mock: HTTP http://{_fmt(host)}:{http_port} ({workers} worker(s))"
                        + f", store {config.store_path}")
        print(banner, file=sys.stderr, flush=True)
        if on_ready:
            on_ready(banner)
        server = Granian(
            "mock_server.http.wsgi:create_wsgi_app",
            address=host,
            port=http_port,
            interface=Interfaces.WSGI,
            workers=workers,
            factory=True,
            log_access=False,
            backlog=2048,
            # The handler is short and CPU-bound: one Python thread per worker avoids GIL
            # hand-offs; granian's Rust side keeps the connections.
            blocking_threads=1,
        )
        server.serve()
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _fmt(host: str) -> str:
    return f"[{host}]" if ":" in host else host
