"""CPU per SIP call through the endpoint, without sockets, and through the journal writer's store.

    .venv/bin/python bench/sip_inprocess.py
    .venv/bin/python bench/sip_inprocess.py --profile     # cProfile of the endpoint, top functions

Each call is what ``bench/sip_bench.py`` places with SIPp: INVITE with ``X-EI: S.<id>;`` (answered
100, 180, 200), ACK, BYE (answered 200). The endpoint runs on a clock the script steps, its sends go
to a list, and its journal batches are kept; then the same batches are written to a SQLite file the way
the writer process does. Prints the process time per call of both (min and median of several runs):
steadier than SIPp on a shared machine, so it is the figure to compare before and after a change to the
SIP hot path. (Sockets, the kernel and SIPp's side are not in it: see ``bench/sip_bench.py``.) Run it with
``PROMETHEUS_MULTIPROC_DIR`` set to an empty directory to count metrics as the standalone server does.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import cProfile
import gc
import os
import pstats
import statistics
import tempfile
import time
import uuid

from mock_server.core import calls
from mock_server.core.config import MockConfig
from mock_server.core.store import Store
from mock_server.server.collector import NEVER
from mock_server.sip.peer import Peer
from mock_server.sip.sink import Batch
from mock_server.sip.timers import ManualClock, Timers
from mock_server.sip.uas import SipEndpoint

BODY = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "m1", "workspace_id": "w1",
        "custom_variables": {"name": "erfan"}}
CALLS, RUNS = 2000, 7


class KeepingSink:
    """Keeps the endpoint's batches, so the writer's share can be timed on its own."""

    failure: str | None = None

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def send(self, batch: Batch) -> None:
        self.batches.append(batch)

    def submit(self, batch: Batch | None) -> concurrent.futures.Future[None]:
        if batch is not None:
            self.batches.append(batch)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_result(None)
        return done

    def close(self) -> None:
        pass


def invite(call_id: str, n: int) -> bytes:
    sdp = (b"v=0\r\no=twilio 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           b"m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
    head = (f"INVITE sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-1;rport\r\n"
            f'From: "Twilio" <sip:+15075785607@127.0.0.1:5070>;tag={n}SIPpTag00{n}\r\n'
            f"To: <sip:+15551234567@127.0.0.1:5060>\r\nCall-ID: {n}-bench@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:twilio@127.0.0.1:5070;transport=UDP>\r\nMax-Forwards: 70\r\n"
            f"X-EI: S.{call_id};\r\nX-Twilio-CallSid: CA{n:032d}\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n")
    return head.encode() + sdp


def in_dialog(method: str, n: int, to_tag: str, branch: int, cseq: int) -> bytes:
    return (f"{method} sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-{branch};rport\r\n"
            f'From: "Twilio" <sip:+15075785607@127.0.0.1:5070>;tag={n}SIPpTag00{n}\r\n'
            f"To: <sip:+15551234567@127.0.0.1:5060>;tag={to_tag}\r\nCall-ID: {n}-bench@127.0.0.1\r\n"
            f"CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def to_tag_of(answer: bytes) -> str:
    line = next(h for h in answer.split(b"\r\n") if h.lower().startswith(b"to:"))
    return line.split(b";tag=", 1)[1].split(b";", 1)[0].decode()


def one_run(config: MockConfig, calls_n: int, profile: cProfile.Profile | None) -> tuple[float, float, int]:
    """(endpoint s/call, writer s/call, datagrams sent) for ``calls_n`` whole calls."""
    store = Store()
    ids = [str(uuid.uuid4()) for _ in range(calls_n)]
    store.add_calls([calls.new_call(BODY, i, int(time.time() * 1000)) for i in ids],
                    {"time": time.time(), "kind": "admin", "path": "/_mock/prepare_bulk", "method": "POST",
                     "outcome": "registered", "reason": "bulk", "status": 200, "count": calls_n})
    clock = ManualClock(1000.0)
    timers = Timers(clock)
    sink = KeepingSink()
    loop = asyncio.new_event_loop()
    endpoint = SipEndpoint(store, config, loop, sink=sink, timers=timers)
    sent: list[bytes] = []

    def send(data: bytes, to: tuple[str, int]) -> bool:
        sent.append(data)
        return True

    peer = Peer("UDP", ("127.0.0.1", 5070), ("127.0.0.1", 5060), send)
    invites = [invite(call_id, n) for n, call_id in enumerate(ids)]
    if profile is not None:
        profile.enable()
    started = time.process_time()
    for n, data in enumerate(invites):
        endpoint.receive(data, peer)
        timers.run_due()
        tag = to_tag_of(sent[-1])
        endpoint.receive(in_dialog("ACK", n, tag, 1, 1), peer)
        endpoint.receive(in_dialog("BYE", n, tag, 2, 2), peer)
        if n % 50 == 49:
            clock.advance(0.005)
            timers.run_due()
    clock.advance(0.005)
    timers.run_due()
    endpoint.flush()
    took = time.process_time() - started
    if profile is not None:
        profile.disable()
    oks = sum(1 for d in sent if d.startswith(b"SIP/2.0 200"))
    assert oks == 2 * calls_n, f"expected {2 * calls_n} 200 OKs, sent {oks}"
    endpoint.close()
    loop.close()
    store.close()
    with tempfile.TemporaryDirectory() as tmp:
        writer_store = Store(os.path.join(tmp, "journal.sqlite"))
        writer_store.add_calls([calls.new_call(BODY, i, int(time.time() * 1000)) for i in ids],
                               {"time": time.time(), "kind": "admin"})
        started = time.process_time()
        for batch in sink.batches:
            writer_store.apply(*batch)
        writer = time.process_time() - started
        writer_store.close()
    return took / calls_n, writer / calls_n, len(sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--profile", action="store_true", help="print the endpoint's top functions by own time")
    args = parser.parse_args()
    config = MockConfig(media=False, sip_flush_ms=5)
    gc.collect()  # the garbage collector as the standalone server sets it (server/collector.py)
    gc.freeze()
    gc.set_threshold(gc.get_threshold()[0], gc.get_threshold()[1], NEVER)
    profile = cProfile.Profile() if args.profile else None
    endpoint_s: list[float] = []
    writer_s: list[float] = []
    for _ in range(args.runs):
        ep, wr, sent = one_run(config, args.calls, profile)
        endpoint_s.append(ep)
        writer_s.append(wr)
    print(f"{args.calls} calls x {args.runs} runs, {sent // args.calls} datagrams sent per call")
    for name, values in (("endpoint", endpoint_s), ("writer", writer_s)):
        print(f"{name:9s} CPU per call: min {min(values) * 1e6:6.1f} us, "
              f"median {statistics.median(values) * 1e6:6.1f} us")
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()

