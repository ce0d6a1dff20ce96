"""The SIP recorder's status memory: a call's newest status is answered from memory until the store has it,
then forgotten, so the memory holds the calls in flight, not the last 200,000 (tests/test_sip_gc.py and
bench/sip_soak.py watch the memory as a whole)."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from mock_server.sip.recorder import Recorder


class HeldSink:
    """Batches wait in ``stored`` until the test says the store has them."""

    failure: str | None = None

    def __init__(self) -> None:
        self.stored: list[concurrent.futures.Future[None]] = []

    def send(self, batch: Any) -> None:
        raise AssertionError("a batch that set statuses must be submitted, so its storing can be awaited")

    def submit(self, batch: Any) -> concurrent.futures.Future[None]:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.stored.append(future)
        return future

    def close(self) -> None:
        pass


def recorder(sink: HeldSink) -> Recorder:
    return Recorder(sink, lambda delay, fn: None, body_limit=4096, flush_interval=0.01,
                    from_any_thread=lambda fn, *args: fn(*args))


def test_a_status_is_forgotten_once_the_store_has_it_and_not_before():
    sink = HeldSink()
    rec = recorder(sink)
    rec.change("call-1", "invite", "ringing")
    rec.flush()
    assert rec.status("call-1") == "ringing"  # the batch is on its way, not stored: memory answers
    rec.change("call-1", "bye", "completed")  # a newer status before the first batch is stored
    sink.stored[0].set_result(None)
    assert rec.status("call-1") == "completed"  # the stored batch had an older status: kept
    rec.flush()
    sink.stored[1].set_result(None)
    assert rec.status("call-1") is None and len(rec.call_states) == 0  # the store answers now


def test_a_batch_the_store_refused_keeps_its_statuses():
    sink = HeldSink()
    rec = recorder(sink)
    rec.change("call-2", "invite", "ringing")
    rec.flush()
    sink.stored[0].set_exception(RuntimeError("the SIP journal writer process exited"))
    assert rec.status("call-2") == "ringing"


def test_made_up_methods_share_one_metric_label():
    """A method is any token to a SIP parser: a label for each one a peer makes up would grow the metrics
    (and every scrape) without bound."""
    from mock_server import metrics
    from mock_server.sip.peer import Peer

    def sample(method: str) -> float:
        return sum(s.value for m in metrics.SIP_REQUESTS.collect() for s in m.samples
                   if s.name.endswith("_total") and s.labels.get("method") == method)

    rec = recorder(HeldSink())
    peer = Peer("UDP", ("127.0.0.1", 5060), ("127.0.0.1", 32681), lambda data, addr: True)
    other, invite = sample("other"), sample("INVITE")
    for n in range(50):
        method = f"MADEUP{n}"
        rec.message("in", peer, f"{method} sip:a@b SIP/2.0\r\n\r\n".encode(), f"{method} sip:a@b SIP/2.0",
                    call_id=None, sip_call_id=None)
    rec.message("in", peer, b"INVITE sip:a@b SIP/2.0\r\n\r\n", "INVITE sip:a@b SIP/2.0", call_id=None,
                sip_call_id=None)
    rec.flush()
    assert sample("other") - other == 50 and sample("INVITE") - invite == 1
    assert sample("MADEUP7") == 0
