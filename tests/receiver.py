"""A real HTTP server on loopback standing in for the integrator's backend: it records every request
and answers each path as the test scripts it (status, JSON body, delay)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._answers: dict[str, list[tuple[int, Any, float]]] = {}
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                with receiver._cond:
                    receiver.received.append(Received(self.command, self.path, {k.lower(): v for k, v in
                                                                                self.headers.items()}, body,
                                                      time.time()))
                    receiver._cond.notify_all()
                    script = receiver._answers.get(path) or [(200, {}, 0.0)]
                    status, answer, delay = script.pop(0) if len(script) > 1 else script[0]
                if delay:
                    time.sleep(delay)
                data = json.dumps(answer).encode() if answer is not None else b""
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the mock gave up waiting (its timeout) and closed the connection

            do_POST = do_GET = do_PUT = do_PATCH = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def answer(self, path: str, *script: tuple[int, Any, float]) -> None:
        """Answers for ``path`` in order; the last one repeats."""
        with self._cond:
            self._answers[path] = list(script)

    def wait_for(self, count: int, path: str | None = None, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self.received if path is None or r.path.split("?", 1)[0] == path]
                if len(got) >= count or time.monotonic() >= deadline:
                    return got
                self._cond.wait(max(0.01, deadline - time.monotonic()))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
