"""Child process entry: granian serving the Flask app (``python -m mock_server.http.granian_main HOST PORT N``)."""

from __future__ import annotations

import sys

from granian import Granian
from granian.constants import Interfaces

from mock_server.supervisor import die_with_parent


def main(host: str, port: int, workers: int, threads: int = 1) -> None:
    die_with_parent()
    Granian(
        "mock_server.http.wsgi:create_wsgi_app",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        factory=True,
        log_access=False,
        websockets=False,
        backlog=2048,
        # The handler is short and CPU-bound: one Python thread per worker is fastest (no GIL churn).
        # Slow and timeout outcomes sleep in that thread, so --http-threads raises it for them.
        blocking_threads=threads,
        workers_kill_timeout=3,
    ).serve()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 1)
