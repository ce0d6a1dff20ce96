"""CPU per prepare_inbound through one worker's whole HTTP path, without sockets: the front (parsing,
group commit, writing the answer), the Flask app, the core and the SQLite store.

    .venv/bin/python bench/http_front_inprocess.py

16 connections with an in-memory transport each send one request per round; each round ends with the
loop turn that commits the group and writes the answers, as under ``wrk -c16``. 15 runs of 60 rounds;
prints the process time per request (min and median). Steadier than a wrk run on a shared machine (the
minimum filters out other tenants), so it is the one to compare before and after a change to the front.

    .venv/bin/python bench/http_front_inprocess.py --beside ../shared/bench/flask_app.py

also serves that module's ``app`` (the bare Flask anchor: parse, check the token, build the call, jsonify;
no store) through the same front, alternating runs with the mock's, and prints what the mock costs above
it: issue #11's "about 30 µs above a bare Flask handler".
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mock_server.core.backend import Backend
from mock_server.core.config import MockConfig
from mock_server.http.app import create_app
from mock_server.http.front import Front, FrontSettings
from mock_server.server.loops import new_event_loop

BODY = (b'{"from_number":"+15075785607","to_number":"+15551234567","model_id":"m1","workspace_id":"w1",'
        b'"custom_variables":{"name":"erfan"}}')
REQUEST = (b"POST /v2/prepare_inbound HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAuthorization: Bearer test\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
CONNECTIONS = 16
ROUNDS, RUNS = 60, 15
"""15 runs of 960 requests: the minimum of many short runs is the steadiest figure on a shared machine."""


class MemoryTransport(asyncio.Transport):
    """Keeps what the front writes; counts answers."""

    def __init__(self) -> None:
        super().__init__()
        self.answers = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.answers += data.startswith(b"HTTP/1.1 200")

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


class Harness:
    """One front over ``app``, its 16 in-memory connections, and a loop to turn."""

    def __init__(self, app: Callable[..., Iterable[bytes]] | None) -> None:
        self.loop = new_event_loop()
        self.backend = Backend(MockConfig(store_path=os.path.join(tempfile.mkdtemp(), "state.sqlite3")))
        self.front = Front(app or create_app(backend=self.backend), self.backend, FrontSettings(), self.loop)
        self.transports = [MemoryTransport() for _ in range(CONNECTIONS)]
        self.connections = [self.front.protocol() for _ in self.transports]
        for conn, transport in zip(self.connections, self.transports, strict=True):
            conn.connection_made(transport)
        self.sent = 0

    def rounds(self, count: int) -> float:
        """Send ``count`` rounds; the process time per request, in µs."""
        asyncio.set_event_loop(self.loop)
        t0 = time.process_time()
        for _ in range(count):
            for conn in self.connections:
                conn.data_received(REQUEST)
            self.loop.run_until_complete(asyncio.sleep(0))
        self.sent += count * CONNECTIONS
        return (time.process_time() - t0) / (count * CONNECTIONS) * 1e6

    def close(self) -> None:
        answered = sum(t.answers for t in self.transports)
        assert answered == self.sent, f"{answered} answers for {self.sent} requests"
        self.front.close()
        self.backend.store.close()
        self.loop.close()


def flask_app_from(path: Path) -> Callable[..., Iterable[bytes]]:
    spec = importlib.util.spec_from_file_location("bare_flask_anchor", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beside", type=Path, help="a module whose Flask `app` to measure through the same front")
    args = parser.parse_args()
    harnesses = {"mock": Harness(None)}
    if args.beside:
        harnesses["bare Flask"] = Harness(flask_app_from(args.beside))
    for harness in harnesses.values():
        harness.rounds(100)
    runs: dict[str, list[float]] = {name: [] for name in harnesses}
    for _ in range(RUNS):
        for name, harness in harnesses.items():  # alternating, so other tenants of the machine hit both alike
            runs[name].append(harness.rounds(ROUNDS))
    for harness in harnesses.values():
        harness.close()
    for name, times in runs.items():
        what = "the front, Flask, core and store" if name == "mock" else f"the front and {args.beside.name}'s app"
        print(f"{name}: prepare_inbound through {what}: min {min(times):.0f} us, "
              f"median {statistics.median(times):.0f} us of CPU per request")
    if args.beside:
        mock, bare = runs["mock"], runs["bare Flask"]
        print(f"the mock above bare Flask: {min(mock) - min(bare):.0f} us (least against least), "
              f"{statistics.median(mock) - statistics.median(bare):.0f} us (median against median)")


if __name__ == "__main__":
    main()
