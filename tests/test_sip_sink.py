"""The journal writer process: batches land in order; if it dies, another takes over with nothing lost;
if its store fails, it says so and retries."""

from __future__ import annotations

import os
import signal
import time

from mock_server.core.calls import CallEvent
from mock_server.core.store import Store, sip_journal_row
from mock_server.sip.sink import ProcessSink


def row(n: int) -> tuple:
    return sip_journal_row(time.time(), None, f"OPTIONS {n}", "in", "UDP", "127.0.0.1:1", "127.0.0.1:2",
                           f"OPTIONS sip:{n}", f"c{n}", "options", None)


def test_batches_are_stored_in_order(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    sink = ProcessSink(store)
    try:
        for start in range(0, 50, 10):
            sink.send(([row(n) for n in range(start, start + 10)], [CallEvent("x", 1, "invite")]))
        sink.submit(None).result(timeout=10)
        assert [e["sip_call_id"] for e in store.journal(kinds=("sip",))] == [f"c{n}" for n in range(50)]
    finally:
        sink.close()


def test_the_writer_ignores_a_group_sigterm_and_stops_when_the_pipe_closes(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    sink = ProcessSink(store)
    sink.submit(None).result(timeout=10)  # the writer is up (its signal handlers are in place)
    os.kill(sink._process.pid, signal.SIGTERM)  # what a killpg of the SIP process's group delivers
    sink.send(([row(1)], []))
    sink.submit(None).result(timeout=10)  # still alive and writing
    assert len(store.journal(kinds=("sip",))) == 1
    t0 = time.monotonic()
    sink.close()
    assert time.monotonic() - t0 < 10 and not sink._process.is_alive()


def test_a_killed_writer_is_replaced_and_every_batch_still_lands_in_order(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    sink = ProcessSink(store)
    try:
        sink.submit(None).result(timeout=10)
        for start in range(0, 200, 10):
            sink.send(([row(n) for n in range(start, start + 10)], []))
            if start == 100:
                os.kill(sink._process.pid, signal.SIGKILL)  # mid-stream, batches in flight
        sink.submit(None).result(timeout=20)
        stored = [e["sip_call_id"] for e in store.journal(kinds=("sip",), limit=10_000)]
        assert sink.restarts == 1
        # every batch is there, in order; one the old writer stored but had not acknowledged may be there twice
        assert list(dict.fromkeys(stored)) == [f"c{n}" for n in range(200)]
    finally:
        t0 = time.monotonic()
        sink.close()
        assert time.monotonic() - t0 < 10


def test_a_failing_store_is_reported_then_retried_until_it_records(tmp_path):
    import sqlite3

    store = Store(str(tmp_path / "s.db"))
    statuses: list[str | None] = []
    sink = ProcessSink(store, on_status=statuses.append)
    try:
        sink.submit(None).result(timeout=10)
        blocker = sqlite3.connect(str(tmp_path / "s.db"))
        blocker.execute("PRAGMA busy_timeout=0")
        blocker.execute("BEGIN EXCLUSIVE")  # nobody else can write: the writer's batch fails and is retried
        sink.send(([row(1)], []))
        deadline = time.monotonic() + 30
        while sink.failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.failure is not None and "journal store failing" in sink.failure
        blocker.execute("ROLLBACK")
        sink.submit(None).result(timeout=30)
        assert sink.failure is None and statuses[0] is not None and statuses[-1] is None
        assert [e["sip_call_id"] for e in store.journal(kinds=("sip",))] == ["c1"]
        blocker.close()
    finally:
        sink.close()
