"""The journal writer process: batches land in order; if it dies, nothing waits for it forever."""

from __future__ import annotations

import os
import signal
import time

import pytest

from mock_server.core.calls import CallEvent
from mock_server.core.store import Store, sip_journal_row
from mock_server.sip.sink import ProcessSink, WriterGone


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


def test_a_dead_writer_fails_fast_instead_of_hanging(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    sink = ProcessSink(store)
    os.kill(sink._process.pid, signal.SIGKILL)
    sink._process.join(5)
    deadline = time.monotonic() + 5
    while sink._alive and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(WriterGone):
        sink.submit(None).result(timeout=5)
    t0 = time.monotonic()
    sink.close()
    assert time.monotonic() - t0 < 5
