"""The Redis store beside the embedded SQLite store (issue #13): the same work through each.

    .venv/bin/python bench/store_compare.py              # store operations, then HTTP with wrk (about 1 minute)
    .venv/bin/python bench/store_compare.py ops          # one of: ops http

``ops``: the store's own operations, one process, no HTTP: a prepare's write (a call and its
journal entry), the SIP writer's batch (per call: 4 lifecycle events and 6 SIP journal rows, 50
calls a batch), and the reads the SIP endpoint and ``GET /v2/calls/<id>`` make. ``http``:
``synthflow-mock serve --no-sip`` with each store under ``wrk -c16`` for 10 s (zero latency),
with the CPU of the mock's processes and of redis-server per request.

Starts its own redis-server (Debian package redis-server) on a free loopback port.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_runtime import Server, cpu_us_per_request, wrk
from bench.sip_bench import find_pid, ticks
from mock_server.core import calls
from mock_server.core.calls import CallEvent
from mock_server.core.exchange import Write
from mock_server.core.store import open_store, sip_journal_row
from mock_server.testing import redis_server

BODY = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "m1", "workspace_id": "w1",
        "custom_variables": {"name": "erfan"}}
INVITE = ("INVITE sip:+15551234567@127.0.0.1:32681 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n"
          "From: <sip:+15075785607@127.0.0.1>;tag=1\r\nTo: <sip:+15551234567@127.0.0.1>\r\nCall-ID: 1@x\r\n"
          "CSeq: 1 INVITE\r\nX-EI: S.x;\r\nContent-Length: 0\r\n\r\n")


def timed(label: str, count: int, step: Callable[[int], None]) -> str:
    t0 = time.perf_counter()
    for n in range(count):
        step(n)
    us = (time.perf_counter() - t0) / count * 1e6
    return f"{label} {us:.0f} us ({1e6 / us:,.0f}/s)"


def ops_for(path: str, label: str) -> str:
    store = open_store(path)
    ids = [f"call-{n:06d}" for n in range(4000)]
    made = [calls.new_call(BODY, i, 1_700_000_000_000) for i in ids]
    entry = {"time": time.time(), "kind": "http", "path": "/v2/prepare_inbound", "status": 200}

    def prepare(n: int) -> None:
        store.write([Write({**entry, "call_id": ids[n]}, made[n])])

    def sip_batch(n: int) -> None:
        batch = ids[n * 50:(n + 1) * 50]
        rows = [sip_journal_row(time.time(), c, INVITE, "in", "udp", "a", "b", "INVITE x", "1@x", "accepted", None)
                for c in batch for _ in range(6)]
        events = [CallEvent(c, 1, e, s) for c in batch
                  for e, s in (("invite", "ringing"), ("answered", "in-progress"), ("ack", None), ("bye", "completed"))]
        store.apply(rows, events)

    parts = [timed("prepare write", 4000, prepare),
             timed("SIP batch of 50 calls", 80, sip_batch),
             timed("status_and_plan", 4000, lambda n: store.status_and_plan(ids[n])),
             timed("get_call", 4000, lambda n: store.get_call(ids[n]))]
    store.close()
    return f"{label}: " + "; ".join(parts)


def ops(url: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = ops_for(os.path.join(tmp, "state.sqlite3"), "SQLite file")
    return [sqlite, ops_for(f"{url}?prefix=bench-ops-{os.getpid()}", "Redis")]


def http(url: str) -> list[str]:
    out = []
    redis_pid = find_pid(f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}")
    for label, flags in (("SQLite file", ()), ("Redis", ("--store", f"{url}?prefix=bench-http-{os.getpid()}"))):
        server = Server(*flags)
        try:
            r0 = ticks(redis_pid) if redis_pid else 0
            result, cpu = cpu_us_per_request(server, lambda s=server: wrk(s.url, 16, 10))
            redis_us = ((ticks(redis_pid) - r0) / os.sysconf("SC_CLK_TCK") / max(1.0, result["requests"]) * 1e6
                        if redis_pid else 0)
        finally:
            server.stop()
        extra = f" + redis-server {redis_us:.0f} us" if label == "Redis" else ""
        out.append(f"HTTP prepare_inbound, {label}, wrk -c16 10s: {result['rps']:.0f} req/s, "
                   f"p99 {result['p99_ms']:.1f} ms, mock {cpu:.0f} us CPU/req{extra}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", default=["ops", "http"], help="ops, http (default: both)")
    args = parser.parse_args()
    with redis_server() as url:
        for part in args.parts:
            for line in {"ops": ops, "http": http}[part](url):
                print(line, flush=True)


if __name__ == "__main__":
    main()
