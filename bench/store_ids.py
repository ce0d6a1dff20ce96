"""What the shape of call ids costs the store: ids whose last group is the time against wholly random ones.

    .venv/bin/python bench/store_ids.py [--prefill 64000] [--runs 9]

For each kind of id, a fresh file store (in /dev/shm when there is room, as ``serve`` puts it) is filled
with ``--prefill`` prepared calls, so the journal is at its bound and evicting, as in a long load test.
Then ``--runs`` runs of 100 group commits of 8 prepares each are timed (CPU of the process, SQLite's own
checkpoints included) and the least and median CPU per stored request are printed, and then the WAL bytes
100 more group commits wrote, with checkpoints off: how many pages each prepare dirtied.

Unseeded ids carry the time in their last group (``calls.IdSource``), so their index entries go to one
end of each index. Seeded ids (``--seed``) are wholly random, as every id was before: each prepare then
writes a random page of the calls index and of the journal index, and each eviction another.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

from mock_server.core.backend import Backend
from mock_server.core.config import MockConfig
from mock_server.core.exchange import Request, Write
from mock_server.server.scratch import scratch_parent

BODY = (b'{"from_number":"+15075785607","to_number":"+15551234567","model_id":"m1","workspace_id":"w1",'
        b'"custom_variables":{"name":"erfan"}}')
HEADERS = {"authorization": "Bearer test", "content-type": "application/json", "host": "127.0.0.1:8000",
           "content-length": str(len(BODY)), "user-agent": "hey/0.0.1"}
BATCH = 8
"""Requests per group commit: what one worker's loop turn carries at 2,000 req/s (bench/RESULTS.md)."""


def prepared(backend: Backend, count: int) -> list[Write]:
    """The store writes of ``count`` prepare_inbound requests, answered but not yet committed."""
    writes: list[Write] = []
    for _ in range(count):
        request = Request("POST", "/v2/prepare_inbound", dict(HEADERS), BODY, remote="127.0.0.1", writes=[])
        backend.handle(request)
        writes.extend(request.writes or [])
    return writes


def measure(seed: int | None, prefill: int, runs: int) -> tuple[list[float], float]:
    """CPU µs per stored prepare in each run, and the WAL bytes each one wrote (a count, not a timing:
    the same on a busy machine as on an idle one)."""
    directory = tempfile.mkdtemp(prefix="store-ids-", dir=scratch_parent(2 * 2**30))
    path = os.path.join(directory, "state.sqlite3")
    backend = Backend(MockConfig(store_path=path, seed=seed))
    store = backend.store
    try:
        for _ in range(prefill // BATCH):
            store.write(prepared(backend, BATCH))
        per_write = []
        for _ in range(runs):
            groups = [prepared(backend, BATCH) for _ in range(100)]
            started = time.process_time()
            for group in groups:
                store.write(group)
            per_write.append((time.process_time() - started) / (100 * BATCH) * 1e6)
        groups = [prepared(backend, BATCH) for _ in range(100)]
        conn = store._connection()  # the bench reads the WAL's growth with checkpoints off
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        for group in groups:
            store.write(group)
        wal_bytes = os.path.getsize(path + "-wal") / (100 * BATCH)
        return per_write, wal_bytes
    finally:
        store.close()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefill", type=int, default=64_000, help="calls stored before timing (default 64000)")
    parser.add_argument("--runs", type=int, default=9, help="timed runs per kind of id (default 9)")
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} nproc={os.cpu_count()} prefill={args.prefill}")
    for name, seed in (("time in the last group (default)", None), ("wholly random (--seed)", 1)):
        costs, wal_bytes = measure(seed, args.prefill, args.runs)
        print(f"{name}: least {min(costs):.1f} us, median {statistics.median(costs):.1f} us of CPU and "
              f"{wal_bytes / 1024:.1f} KiB of WAL per stored prepare (group commits of {BATCH})")


if __name__ == "__main__":
    main()
