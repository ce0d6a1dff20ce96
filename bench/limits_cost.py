"""What a concurrency/CAPS limit costs a prepare: CPU per request through the core, with and without one.

    .venv/bin/python bench/limits_cost.py

A prepare whose agent has a limit takes its slot in a write transaction of its own (it cannot wait
for the group commit: the answer depends on it). Prepares with no limit take the plain path.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

from mock_server import MockConfig
from mock_server.core.backend import Backend
from mock_server.core.exchange import Request

BODY = json.dumps({"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "m"}).encode()
HEADERS = {"authorization": "Bearer t", "content-type": "application/json"}


def run(agents: dict | None, n: int = 3000) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        backend = Backend(MockConfig(store_path=os.path.join(tmp, "s.sqlite3"), agents=agents))
        per_batch = []
        for _ in range(n // 100):
            t0 = time.process_time()
            for _ in range(100):
                resp = backend.handle(Request("POST", "/v2/prepare_inbound", dict(HEADERS), BODY))
                assert resp.status == 200, resp.body
            per_batch.append((time.process_time() - t0) / 100 * 1e6)
        backend.store.close()
        return per_batch


def main() -> None:
    for name, agents in (("no limit", None),
                         ("agent concurrency + caps", {"agents": {"m": {"concurrency": 1_000_000, "caps": 100_000}}})):
        samples = run(agents)
        print(f"{name:>26}: min {min(samples):.0f} us, median {statistics.median(samples):.0f} us of CPU per prepare")


if __name__ == "__main__":
    main()
