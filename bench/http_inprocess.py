"""CPU per prepare_inbound request through the Flask app and the core, without a server or sockets.

    .venv/bin/python bench/http_inprocess.py

Calls the WSGI app directly with a file-backed store (as a worker has), 4,000 requests five
times, and prints the process time per request (min and median). Steadier than a wrk run on a
shared machine, so it is the one to compare before and after a change to the HTTP hot path.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time

from mock_server.core import backend as core
from mock_server.core.config import MockConfig
from mock_server.http.app import create_app

BODY = (b'{"from_number":"+15075785607","to_number":"+15551234567","model_id":"m1","workspace_id":"w1",'
        b'"custom_variables":{"name":"erfan"}}')


def environ() -> dict[str, object]:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/v2/prepare_inbound", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8080", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(BODY),
            "CONTENT_LENGTH": str(len(BODY)), "CONTENT_TYPE": "application/json",
            "HTTP_AUTHORIZATION": "Bearer test", "HTTP_HOST": "127.0.0.1:8080", "HTTP_USER_AGENT": "wrk",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "QUERY_STRING": ""}


def main() -> None:
    path = os.path.join(tempfile.mkdtemp(), "state.sqlite3")
    app = create_app(backend=core.Backend(MockConfig(store_path=path)))

    def start_response(*_: object) -> None:
        return None

    for _ in range(500):
        b"".join(app(environ(), start_response))
    runs = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(4000):
            b"".join(app(environ(), start_response))
        runs.append((time.process_time() - t0) / 4000 * 1e6)
    print(f"prepare_inbound through Flask + core: min {min(runs):.0f} us, median {statistics.median(runs):.0f} us "
          "of CPU per request")


if __name__ == "__main__":
    main()
