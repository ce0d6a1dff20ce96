"""CPU per prepare_inbound through one worker's whole HTTP path, without sockets: the front (parsing,
group commit, writing the answer), the Flask app, the core and the SQLite store.

    .venv/bin/python bench/http_front_inprocess.py

16 connections with an in-memory transport each send one request per round; each round ends with the
loop turn that commits the group and writes the answers, as under ``wrk -c16``. 15 runs of 60 rounds;
prints the process time per request (min and median). Steadier than a wrk run on a shared machine (the
minimum filters out other tenants), so it is the one to compare before and after a change to the front.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
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


def main() -> None:
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    backend = Backend(MockConfig(store_path=os.path.join(tempfile.mkdtemp(), "state.sqlite3")))
    front = Front(create_app(backend=backend), backend, FrontSettings(), loop)
    transports = [MemoryTransport() for _ in range(CONNECTIONS)]
    connections = [front.protocol() for _ in transports]
    for conn, transport in zip(connections, transports, strict=True):
        conn.connection_made(transport)

    async def turn() -> None:
        await asyncio.sleep(0)

    def rounds(count: int) -> None:
        for _ in range(count):
            for conn in connections:
                conn.data_received(REQUEST)
            loop.run_until_complete(turn())

    rounds(100)
    runs = []
    for _ in range(RUNS):
        t0 = time.process_time()
        rounds(ROUNDS)
        runs.append((time.process_time() - t0) / (ROUNDS * CONNECTIONS) * 1e6)
    answered = sum(t.answers for t in transports)
    expected = (100 + RUNS * ROUNDS) * CONNECTIONS
    assert answered == expected, f"{answered} answers for {expected} requests"
    print(f"prepare_inbound through the front, Flask, core and store: min {min(runs):.0f} us, "
          f"median {statistics.median(runs):.0f} us of CPU per request")
    front.close()
    backend.store.close()


if __name__ == "__main__":
    main()
