"""How long group commits take once the calls bound is reached, by eviction step.

    .venv/bin/python bench/store_eviction.py                 # steps of 32 (the default), 256, 1,024, 6,250
    .venv/bin/python bench/store_eviction.py --steps 32 --commits 4000

Writes ``--commits`` group commits of 50 prepares each into a SQLite file store with the default bound
of 100,000 calls, the way an HTTP worker does under load, and prints the median, p99 and slowest commit
and the total time of the commits after the bound is reached, for each cap on the rows one eviction may
delete (``_Bound.MAX_STEP``; 6,250 is a sixteenth of the bound, the old behaviour).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid

from mock_server.core import calls
from mock_server.core.exchange import Write
from mock_server.core.store import Store, _Bound

BODY = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "m1", "workspace_id": "w1",
        "custom_variables": {"name": "erfan"}}
LIMIT, GROUP = 100_000, 50


def run(step: int, commits: int) -> str:
    _Bound.MAX_STEP = step
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(os.path.join(tmp, "state.sqlite3"), calls_limit=LIMIT)
        took: list[float] = []
        for _ in range(commits):
            writes = [Write({"time": time.time(), "kind": "http", "path": "/v2/prepare_inbound", "method": "POST",
                             "status": 200}, calls.new_call(BODY, str(uuid.uuid4()), 0)) for _ in range(GROUP)]
            started = time.perf_counter()
            store.write(writes)
            took.append((time.perf_counter() - started) * 1000)
        store.close()
    full = took[LIMIT // GROUP:]
    ordered = sorted(full)
    return (f"step {step:>5}: after the bound, commit of {GROUP} median {statistics.median(full):.2f} ms, "
            f"p99 {ordered[int(len(ordered) * 0.99)]:.2f} ms, slowest {ordered[-1]:.1f} ms, "
            f"total {sum(full) / 1000:.2f} s for {len(full) * GROUP} calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 256, 1024, LIMIT // 16])
    parser.add_argument("--commits", type=int, default=3000)
    args = parser.parse_args()
    default = _Bound.MAX_STEP
    try:
        for step in args.steps:
            print(run(step, args.commits), flush=True)
    finally:
        _Bound.MAX_STEP = default


if __name__ == "__main__":
    main()
