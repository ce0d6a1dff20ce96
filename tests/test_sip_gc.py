"""The SIP hot paths make no reference cycles, so the standalone server can leave full garbage collections
to quiet moments (``server/collector.py``): each kind of call, played on a clock the test steps, leaves
nothing for the cycle collector once its transactions have ended."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from mock_server.core import calls
from mock_server.core.config import MockConfig
from mock_server.core.exchange import Write
from mock_server.core.store import Store
from mock_server.server.collector import NEVER, QuietCollector
from mock_server.sip.message import SipMessage, parse_datagram, tag_of
from mock_server.sip.peer import Peer
from mock_server.sip.timers import ManualClock, Timers
from mock_server.sip.uas import SipEndpoint
from tests.sip_client import SDP, request

BODY = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "m1", "workspace_id": "w1"}
OURS = ("SipMessage", "Via", "InviteTx", "ClientTx", "Dialog", "TimerHandle", "CallContext")


class NullSink:
    failure: str | None = None

    def send(self, batch: Any) -> None:
        pass

    def submit(self, batch: Any) -> concurrent.futures.Future[None]:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_result(None)
        return done

    def close(self) -> None:
        pass


class Trunk:
    """An endpoint on a manual clock; what it sends lands in ``sent``."""

    def __init__(self) -> None:
        self.store = Store()
        self.clock = ManualClock(1000.0)
        self.timers = Timers(self.clock)
        self.loop = asyncio.new_event_loop()
        self.endpoint = SipEndpoint(self.store, MockConfig(media=False), self.loop, sink=NullSink(),
                                    timers=self.timers)
        self.sent: list[SipMessage] = []
        self.peer = Peer("UDP", ("127.0.0.1", 5070), ("127.0.0.1", 5060), self._send)

    def _send(self, data: bytes, to: tuple[str, int]) -> bool:
        self.sent.append(parse_datagram(data))
        return True

    def prepare(self, plan: dict[str, Any] | None = None) -> str:
        call_id = str(uuid.uuid4())
        call = calls.new_call(BODY, call_id, int(time.time() * 1000))
        self.store.write([Write({"time": time.time(), "kind": "http"}, call, plan)])
        return call_id

    def receive(self, data: bytes) -> SipMessage:
        before = len(self.sent)
        self.endpoint.receive(data, self.peer)
        self.timers.run_due()
        return self.sent[-1] if len(self.sent) > before else SipMessage()

    def run_for(self, seconds: float) -> None:
        for _ in range(int(seconds * 10)):
            self.clock.advance(0.1)
            self.timers.run_due()

    def close(self) -> None:
        self.endpoint.close()
        self.loop.close()
        self.store.close()


def invite(call_id: str | None, sip_call_id: str, branch: str) -> bytes:
    return request("INVITE", 5060, 5070, call_id=sip_call_id, branch=branch,
                   xei=f"S.{call_id};" if call_id else None, body=SDP)


def in_dialog(method: str, sip_call_id: str, to_tag: str | None, cseq: int, branch: str = "") -> bytes:
    return request(method, 5060, 5070, call_id=sip_call_id, to_tag=to_tag, cseq=cseq, branch=branch)


def answered_and_hung_up(trunk: Trunk) -> None:
    sip_call_id = uuid.uuid4().hex
    ok = trunk.receive(invite(trunk.prepare(), sip_call_id, "z9hG4bK" + sip_call_id))
    assert ok.status == 200
    trunk.receive(in_dialog("ACK", sip_call_id, tag_of(ok.get("to")), 1))
    assert trunk.receive(in_dialog("BYE", sip_call_id, tag_of(ok.get("to")), 2)).status == 200


def retransmissions(trunk: Trunk) -> None:
    sip_call_id = uuid.uuid4().hex
    data = invite(trunk.prepare(), sip_call_id, "z9hG4bK" + sip_call_id)
    ok = trunk.receive(data)
    assert trunk.receive(data).status == 200  # the INVITE again: the same answer
    trunk.run_for(0.6)  # no ACK yet: the 200 is sent again
    trunk.receive(in_dialog("ACK", sip_call_id, tag_of(ok.get("to")), 1))
    bye = in_dialog("BYE", sip_call_id, tag_of(ok.get("to")), 2)
    trunk.receive(bye)
    assert trunk.receive(bye).status == 200  # from the answer cache


def refused_by_plan(trunk: Trunk) -> None:
    sip_call_id = uuid.uuid4().hex
    busy = trunk.receive(invite(trunk.prepare({"plan": "busy"}), sip_call_id, "z9hG4bK" + sip_call_id))
    assert busy.status == 486
    trunk.receive(in_dialog("ACK", sip_call_id, tag_of(busy.get("to")), 1, branch="z9hG4bK" + sip_call_id))


def unknown_and_missing_xei(trunk: Trunk) -> None:
    assert trunk.receive(invite(str(uuid.uuid4()), uuid.uuid4().hex, "z9hG4bKu" + uuid.uuid4().hex)).status == 404
    assert trunk.receive(invite(None, uuid.uuid4().hex, "z9hG4bKm" + uuid.uuid4().hex)).status == 200


def cancelled_while_ringing(trunk: Trunk) -> None:
    sip_call_id, branch = uuid.uuid4().hex, "z9hG4bK" + uuid.uuid4().hex
    trunk.receive(invite(trunk.prepare({"plan": "answer", "sip-answer-ms": 5000}), sip_call_id, branch))
    trunk.receive(in_dialog("CANCEL", sip_call_id, None, 1, branch=branch))
    assert [m.status for m in trunk.sent[-2:]] == [200, 487]


def mock_hangs_up(trunk: Trunk) -> None:
    sip_call_id = uuid.uuid4().hex
    ok = trunk.receive(invite(trunk.prepare({"plan": "hangup", "hangup-after-ms": 200}), sip_call_id,
                              "z9hG4bK" + sip_call_id))
    trunk.receive(in_dialog("ACK", sip_call_id, tag_of(ok.get("to")), 1))
    trunk.run_for(0.3)
    bye = trunk.sent[-1]
    assert bye.method == "BYE"
    answer = (f"SIP/2.0 200 OK\r\nVia: {bye.get('via')}\r\nFrom: {bye.get('from')}\r\nTo: {bye.get('to')}\r\n"
              f"Call-ID: {bye.get('call-id')}\r\nCSeq: {bye.get('cseq')}\r\nContent-Length: 0\r\n\r\n")
    trunk.receive(answer.encode())


def options(trunk: Trunk) -> None:
    assert trunk.receive(in_dialog("OPTIONS", uuid.uuid4().hex, None, 1)).status == 200


FLOWS = [answered_and_hung_up, retransmissions, refused_by_plan, unknown_and_missing_xei, cancelled_while_ringing,
         mock_hangs_up, options]


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


@pytest.mark.parametrize("flow", FLOWS, ids=[f.__name__ for f in FLOWS])
def test_a_call_leaves_no_reference_cycle(flow, no_automatic_gc):
    trunk = Trunk()
    try:
        flow(trunk)
        trunk.run_for(70)  # past 2·64·T1 (no ACK, then our BYE): every transaction, cache entry and timer has ended
        assert not trunk.endpoint.invites and not trunk.endpoint.dialogs and not trunk.endpoint.client_txs
        assert len(trunk.endpoint.answers) == 0
        trunk.sent.clear()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        cyclic = Counter(type(o).__name__ for o in gc.garbage if type(o).__name__ in OURS)
        assert cyclic == Counter(), f"{flow.__name__} left reference cycles: {dict(cyclic)}"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        trunk.close()


def test_the_quiet_collector_collects_when_idle_or_due_and_never_on_pythons_schedule():
    loop = asyncio.new_event_loop()
    activity = [0]
    thresholds = gc.get_threshold()
    collector = QuietCollector(loop, lambda: activity[0], every_s=60, idle_s=0.01, min_gap_s=0)
    try:
        collector.start()
        assert gc.get_threshold()[2] == NEVER
        ran: list[str] = []
        collector.collect = lambda why: ran.append(why) or 0.0  # type: ignore[method-assign]
        collector._tick()  # the first look: nothing to compare with yet
        activity[0] += 5
        collector._tick()  # busy since the last look
        assert ran == []
        collector._tick()  # quiet
        assert ran == ["idle"]
        collector.min_gap_s = 3600
        collector.last_full -= 61
        activity[0] += 1
        collector._tick()  # busy, but a full collection is due
        assert ran == ["idle", "due"]
    finally:
        collector.stop()
        loop.close()
    assert gc.get_threshold() == thresholds
