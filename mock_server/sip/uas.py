"""The SIP user agent server: transactions, dialogs and the calls they stand for.

Transport-free: a transport hands :meth:`SipEndpoint.receive` one framed message
and a :class:`Peer` that knows how to send back. Timers run on the asyncio loop,
with T1 configurable so tests can run the RFC's retransmission rules quickly.

Every message in and out is journaled (kind ``sip``) with its raw text, its
transport and addresses, and the decision taken; call lifecycle changes
(``ringing`` → ``in-progress`` → ``completed``) are queued and written together
with the journal in one transaction per event-loop turn, so a burst of
datagrams costs one SQLite commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mock_server import __version__
from mock_server.core.calls import CallEvent
from mock_server.core.config import MockConfig
from mock_server.core.outcomes import SIP_REJECT_CODES
from mock_server.core.store import Store, sip_journal_row
from mock_server.sip import policy, sdp
from mock_server.sip.message import (
    KNOWN_METHODS,
    SipMessage,
    SipParseError,
    Via,
    display_name,
    parse_cseq,
    parse_datagram,
    parse_via,
    serialize,
    tag_of,
)
from mock_server.sip.sink import Sink, ThreadSink

SERVER = f"synthflow-mock/{__version__}"
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"
SUPPORTED: frozenset[str] = frozenset()
MANDATORY = ("via", "from", "to", "call-id", "cseq", "max-forwards")
_REASON_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Peer:
    """The far end of one received message, and how to send to it."""

    transport: str  # "UDP", "TCP" or "TLS"
    remote: tuple[str, int]
    local: tuple[str, int]
    send: Callable[[bytes, tuple[str, int]], bool]
    """Send bytes to an address (UDP) or down the connection (TCP/TLS, address ignored); False if it could not."""

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"


@dataclass
class _Timed:
    """Something with loop timers that all end with it."""

    timers: list[asyncio.TimerHandle] = field(default_factory=list, kw_only=True)

    def cancel_timers(self) -> None:
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()


@dataclass
class InviteTx(_Timed):
    key: tuple[str, ...]
    request: SipMessage
    peer: Peer
    reply_to: tuple[str, int]
    to_tag: str
    call_id: str | None
    state: str = "proceeding"  # proceeding, completed, confirmed, accepted, terminated
    last_response: bytes | None = None
    dialog: Dialog | None = None


@dataclass
class Dialog(_Timed):
    key: tuple[str, str, str]  # (SIP Call-ID, our tag, their tag)
    tx: InviteTx
    call_id: str | None
    state: str = "early"  # early, confirmed, terminated
    answered_at: float | None = None
    ok_response: bytes | None = None
    local_cseq: int = 0
    hangup_after: float | None = None


@dataclass
class ClientTx(_Timed):
    """A request the mock sends itself (BYE), retransmitted over UDP until a final answer."""

    branch: str
    data: bytes
    peer: Peer
    to: tuple[str, int]
    call_id: str | None


def _rand(n: int = 8) -> str:
    return os.urandom(n).hex()


def _reason(text: str) -> str:
    return _REASON_UNSAFE.sub(" ", text)[:160] or "Error"


def _quoted(text: str) -> str:
    return '"' + _REASON_UNSAFE.sub(" ", text).replace("\\", "\\\\").replace('"', '\\"')[:400] + '"'


def _addr(addr: tuple[str, int]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SipEndpoint:
    """A fake Synthflow SIP trunk over a shared :class:`Store`."""

    def __init__(self, store: Store, config: MockConfig, loop: asyncio.AbstractEventLoop | None = None, *,
                 sink: Sink | None = None) -> None:
        self.store = store
        self.config = config
        self.loop = loop or asyncio.get_event_loop()
        self.t1 = config.sip_t1_ms / 1000
        self.t2 = self.t1 * 8
        self.t4 = self.t1 * 10
        self.invites: dict[tuple[str, ...], InviteTx] = {}
        self.dialogs: dict[tuple[str, str, str], Dialog] = {}
        self.answered: dict[tuple[str, ...], bytes] = {}
        """Non-INVITE responses kept for retransmitted requests (Timer J)."""
        self.client_txs: dict[str, ClientTx] = {}
        self.call_states: OrderedDict[str, str] = OrderedDict()
        """Lifecycle states this process set, ahead of the batched store write."""
        self._journal: list[tuple[Any, ...]] = []
        self._local_cache: dict[tuple[str, int], str] = {}
        self._events: list[CallEvent] = []
        self._flush_scheduled = False
        self._expiries: deque[tuple[float, Callable[[Any], None], Any]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self.flush_interval = config.sip_flush_ms / 1000
        self._sink: Sink = sink or ThreadSink(store)

    # -- expiry of transactions and caches -----------------------------------------------
    def _expire(self, delay: float, fn: Callable[[Any], None], arg: Any) -> None:
        """Run ``fn(arg)`` about ``delay`` seconds from now.

        Timers H, I, J, L and the ACK wait all just end state, so one sweeper serves them instead of
        a loop timer per transaction. The queue is FIFO: an entry behind a later deadline may end a
        little late, which only keeps absorbing retransmissions for longer.
        """
        self._expiries.append((self.loop.time() + delay, fn, arg))
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    @property
    def _sweep_every(self) -> float:
        return max(0.005, self.t1 / 4)

    def _sweep(self) -> None:
        now = self.loop.time()
        queue = self._expiries
        while queue and queue[0][0] <= now:
            _, fn, arg = queue.popleft()
            fn(arg)
        self._sweeper = self.loop.call_later(self._sweep_every, self._sweep) if queue else None

    # -- journal and store --------------------------------------------------------------
    def _record(self, direction: str, peer: Peer, data: bytes, first_line: str, *, call_id: str | None,
                sip_call_id: str | None, decision: str | None = None, reason: str | None = None,
                to: tuple[str, int] | None = None) -> None:
        limit = self.config.journal_body_limit
        extra = {"raw_truncated": True, "raw_bytes": len(data)} if len(data) > limit else None
        self._journal.append(sip_journal_row(
            time.time(), call_id, data[:limit].decode("utf-8", "replace"), direction, peer.transport,
            self._local_text(peer), _addr(to or peer.remote), first_line, sip_call_id, decision, reason, extra))
        self._schedule_flush()

    def _local_text(self, peer: Peer) -> str:
        text = self._local_cache.get(peer.local)
        if text is None:
            text = self._local_cache[peer.local] = _addr(peer.local)
        return text

    def _change(self, call_id: str | None, event: str, status: str | None = None, *,
                detail: dict[str, Any] | None = None, **fields: Any) -> None:
        if call_id is None:
            return
        if status is not None:
            self.call_states[call_id] = status
            self.call_states.move_to_end(call_id)
            while len(self.call_states) > 200_000:
                self.call_states.popitem(last=False)
        self._events.append(CallEvent(call_id, int(time.time() * 1000), event, status, detail, fields or None))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_later(self.flush_interval, self._flush_in_background)

    def _take(self) -> tuple[list[tuple[Any, ...]], list[CallEvent]] | None:
        self._flush_scheduled = False
        entries, events = self._journal, self._events
        if not entries and not events:
            return None
        self._journal, self._events = [], []
        return entries, events

    def _flush_in_background(self) -> None:
        batch = self._take()
        if batch is not None:
            self._sink.send(batch)

    def flush(self) -> concurrent.futures.Future[None]:
        """Queue everything received so far for writing; the future is done once it is in the store."""
        return self._sink.submit(self._take())

    def _call_state(self, call_id: str) -> tuple[str | None, dict[str, Any] | None]:
        """Status (this process's newest view first) and the SIP plan chosen at prepare time."""
        status, plan = self.store.status_and_plan(call_id)
        return self.call_states.get(call_id) or status, plan

    # -- receiving ----------------------------------------------------------------------
    def receive(self, data: bytes, peer: Peer, parsed: SipMessage | None = None) -> None:
        """Handle one message (a UDP datagram, or one framed message from a stream)."""
        if len(data) > self.config.sip_max_message_bytes:
            self._reject_unparsed(data, peer, 513, "Message Too Large")
            return
        try:
            msg = parsed or parse_datagram(data)
        except SipParseError as exc:
            self._reject_unparsed(data, peer, 400, exc.reason)
            return
        if not msg.is_request:
            self._on_response(msg, data, peer)
            return
        try:
            self._on_request(msg, data, peer)
        except SipParseError as exc:
            self._respond_once(msg, data, peer, 400, exc.reason, decision=f"malformed: {exc.reason}")

    def _reject_unparsed(self, data: bytes, peer: Peer, code: int, reason: str) -> None:
        """Answer a message we could not parse when enough of it survives; drop it otherwise."""
        salvaged = _salvage(data)
        first = data.split(b"\n", 1)[0][:200].decode("utf-8", "replace").strip()
        if salvaged is None or salvaged.get("via") is None or first.startswith("SIP/"):
            self._record("in", peer, data, first, call_id=None, sip_call_id=None,
                         decision=f"dropped: {reason}", reason=reason)
            return
        msg = SipMessage(method=first.split(" ", 1)[0] or "UNKNOWN", uri="sip:unknown",
                         headers=[(k, v) for k, v in salvaged.items() if v is not None])
        self._respond_once(msg, data, peer, code, reason, decision=f"malformed: {reason}")

    def _respond_once(self, msg: SipMessage, data: bytes, peer: Peer, code: int, reason: str, *,
                      decision: str, extra: list[tuple[str, str]] | None = None) -> None:
        sip_call_id = msg.get("call-id")
        self._record("in", peer, data, msg.first_line(), call_id=None, sip_call_id=sip_call_id,
                     decision=decision, reason=reason)
        try:
            reply_to = self._reply_address(msg, peer)
        except SipParseError:
            reply_to = peer.remote  # an unreadable Via: answer where the request came from
        self._send_response(msg, peer, reply_to, code, reason, extra=extra, call_id=None,
                            to_tag=_rand(4) if code != 100 else None)

    def _validate(self, msg: SipMessage) -> None:
        if msg.version.upper() != "SIP/2.0":
            raise _Unsupported(505, "Version Not Supported")
        for name in MANDATORY:
            if msg.get(name) is None:
                raise SipParseError(f"Missing {display_name(name)} Header")
        _, cseq_method = parse_cseq(msg.get("cseq"))
        if cseq_method != msg.method:
            raise SipParseError("CSeq Method Does Not Match Request")
        if msg.method == "INVITE" and msg.get("contact") is None:
            raise SipParseError("Missing Contact Header")
        mf = msg.get("max-forwards") or ""
        if not mf.isdigit():
            raise SipParseError("Bad Max-Forwards")
        msg.top_via  # noqa: B018 - parses (and caches) the top Via, raising on a bad one
        scheme = (msg.uri or "").split(":", 1)[0].lower()
        if scheme not in ("sip", "sips", "tel"):
            raise _Unsupported(416, "Unsupported URI Scheme")

    def _on_request(self, msg: SipMessage, data: bytes, peer: Peer) -> None:
        try:
            self._validate(msg)
        except _Unsupported as exc:
            self._respond_once(msg, data, peer, exc.code, exc.reason, decision=f"unsupported: {exc.reason}")
            return
        method = msg.method or ""
        if method == "ACK":
            self._on_ack(msg, data, peer)
            return
        if method == "INVITE":
            self._on_invite(msg, data, peer)
            return
        key = self._tx_key(msg, method)
        cached = self.answered.get(key)
        if cached is not None:  # a retransmission: the same answer, not a second decision
            self._record("in", peer, data, msg.first_line(), call_id=None, sip_call_id=msg.get("call-id"),
                         decision="retransmission")
            self._send_raw(cached, peer, self._reply_address(msg, peer), msg.get("call-id"), None)
            return
        if method == "BYE":
            self._on_bye(msg, data, peer, key)
        elif method == "CANCEL":
            self._on_cancel(msg, data, peer, key)
        elif method == "OPTIONS":
            self._answer_non_invite(msg, data, peer, key, 200, "OK", decision="options",
                                    extra=[("Allow", ALLOW), ("Accept", "application/sdp")])
        elif method in KNOWN_METHODS:
            self._answer_non_invite(msg, data, peer, key, 405, "Method Not Allowed",
                                    decision=f"{method} not supported", extra=[("Allow", ALLOW)])
        else:
            self._answer_non_invite(msg, data, peer, key, 501, "Not Implemented", decision=f"unknown method {method}",
                                    extra=[("Allow", ALLOW)])

    def _tx_key(self, msg: SipMessage, method: str) -> tuple[str, ...]:
        via = msg.top_via
        branch = via.branch or ""
        if branch.startswith("z9hG4bK"):
            return (branch, via.sent_by, method)
        # RFC 2543 peers: no magic cookie, match on the request's identity instead.
        cseq, _ = parse_cseq(msg.get("cseq"))
        return ("legacy", msg.get("call-id") or "", str(cseq), msg.from_tag or "", via.sent_by, method)

    # -- INVITE -------------------------------------------------------------------------
    def _on_invite(self, msg: SipMessage, data: bytes, peer: Peer) -> None:
        key = self._tx_key(msg, "INVITE")
        sip_call_id = msg.get("call-id")
        existing = self.invites.get(key)
        if existing is not None:
            self._record("in", peer, data, msg.first_line(), call_id=existing.call_id, sip_call_id=sip_call_id,
                         decision="retransmission")
            if existing.last_response is not None:
                self._send_raw(existing.last_response, peer, existing.reply_to, sip_call_id, existing.call_id)
            return
        to_tag = msg.to_tag
        if to_tag is not None:
            self._on_reinvite(msg, data, peer, key, to_tag)
            return
        reply_to = self._reply_address(msg, peer)
        require = [o.strip() for o in msg.get_all("require") if o.strip() not in SUPPORTED]
        if require:
            self._record("in", peer, data, msg.first_line(), call_id=None, sip_call_id=sip_call_id,
                         decision="unsupported extension", reason=", ".join(require))
            self._send_response(msg, peer, reply_to, 420, "Bad Extension", to_tag=_rand(4),
                                extra=[("Unsupported", ", ".join(require))], call_id=None)
            return
        decision = policy.decide(msg, self._call_state, require_xei=self.config.sip_require_xei,
                                 lenient=self.config.sip_xei_lenient, codes=self.config.sip_codes)
        tx = InviteTx(key, msg, peer, reply_to, _rand(6), decision.call_id)
        self.invites[key] = tx
        self._record("in", peer, data, msg.first_line(), call_id=decision.call_id, sip_call_id=sip_call_id,
                     decision=decision.why, reason=None if decision.accept else decision.reason)
        self._send_provisional(tx, 100, "Trying")
        if not decision.accept:
            extra = [("Warning", f"399 synthflow-mock {_quoted(decision.warning or decision.reason)}")]
            if decision.retry_after:
                extra.append(("Retry-After", str(decision.retry_after)))
            if decision.why != "unknown_call":  # no call to attach the event to
                self._change(decision.call_id, "rejected", detail={"code": decision.code, "why": decision.why,
                                                                   "sip_call_id": sip_call_id})
            self._final_non_2xx(tx, decision.code, decision.reason, extra)
            return
        plan = decision.plan or {}
        kind = plan.get("plan", "answer")
        if kind in SIP_REJECT_CODES:
            code, phrase = SIP_REJECT_CODES[kind]
            why = f"plan {kind} ({plan.get('reason', '')})"
            extra = [("Warning", f"399 synthflow-mock {_quoted(why)}")]
            if kind == "overloaded":
                extra.append(("Retry-After", "30"))
            self._change(decision.call_id, "rejected", detail={"code": code, "why": f"plan:{kind}",
                                                               "sip_call_id": sip_call_id})
            self._final_non_2xx(tx, code, phrase, extra)
            return
        try:
            answer = sdp.answer(msg.body, peer.local[0])
        except sdp.NoCommonCodec as exc:
            self._change(decision.call_id, "rejected", detail={"code": 488, "why": str(exc)})
            self._final_non_2xx(tx, 488, "Not Acceptable Here",
                                [("Warning", f"304 synthflow-mock {_quoted(str(exc))}")])
            return
        dialog = Dialog((sip_call_id or "", tx.to_tag, msg.from_tag or ""), tx, decision.call_id)
        tx.dialog = dialog
        self.dialogs[dialog.key] = dialog
        twilio_sid = msg.get("x-twilio-callsid")
        fields: dict[str, Any] = {"twilio_call_sid": twilio_sid} if twilio_sid else {}
        self._change(decision.call_id, "invite", "ringing", detail={
            "sip_call_id": sip_call_id, "transport": peer.transport, "remote": _addr(peer.remote),
            "external_id": decision.external_id}, **fields)
        ring = plan.get("sip-ring-ms", self.config.sip_ring_ms) / 1000
        answer_after = plan.get("sip-answer-ms", self.config.sip_answer_ms) / 1000
        dialog.hangup_after = plan.get("hangup-after-ms", 2000) / 1000 if kind == "hangup" else None
        if ring <= 0:
            self._ring(tx)
        else:
            tx.timers.append(self.loop.call_later(ring, self._ring, tx))
        if kind == "ring_forever":
            return  # only a CANCEL (487) or BYE ends it
        if kind == "no_answer":
            timeout = ring + plan.get("no-answer-ms", 3000) / 1000
            tx.timers.append(self.loop.call_later(timeout, self._no_answer, tx))
            return
        if ring + answer_after <= 0:
            self._answer(tx, answer)
        else:
            tx.timers.append(self.loop.call_later(ring + answer_after, self._answer, tx, answer))

    def _no_answer(self, tx: InviteTx) -> None:
        if tx.state != "proceeding":
            return
        self._change(tx.call_id, "no-answer", "no-answer", detail={"code": 408})
        self._final_non_2xx(tx, 408, "Request Timeout", [])

    def _ring(self, tx: InviteTx) -> None:
        if tx.state == "proceeding":
            self._send_provisional(tx, 180, "Ringing")

    def _answer(self, tx: InviteTx, body: bytes) -> None:
        if tx.state != "proceeding" or tx.dialog is None:
            return
        dialog = tx.dialog
        contact_params = f";transport={tx.peer.transport.lower()}" if tx.peer.reliable else ""
        local = tx.peer.local
        host = f"[{local[0]}]" if ":" in local[0] else local[0]
        extra = [("Contact", f"<sip:synthflow@{host}:{local[1]}{contact_params}>"), ("Allow", ALLOW),
                 ("Content-Type", "application/sdp")]
        extra += [("Record-Route", rr) for rr in tx.request.get_all("record-route")]
        data = self._send_response(tx.request, tx.peer, tx.reply_to, 200, "OK", to_tag=tx.to_tag, extra=extra,
                                   body=body, call_id=tx.call_id)
        tx.state = "accepted"
        tx.last_response = data
        dialog.ok_response = data
        dialog.answered_at = time.time()
        self._change(tx.call_id, "answered", detail={"code": 200})
        # RFC 3261 §13.3.1.4: resend the 2xx until the ACK comes, on any transport; give up after 64·T1.
        dialog.timers.append(self.loop.call_later(self.t1, self._retransmit_2xx, dialog, self.t1))
        self._expire(64 * self.t1, self._ack_timeout, dialog)

    def _retransmit_2xx(self, dialog: Dialog, interval: float) -> None:
        if dialog.state != "early" or dialog.ok_response is None:
            return
        tx = dialog.tx
        self._send_raw(dialog.ok_response, tx.peer, tx.reply_to, dialog.key[0], dialog.call_id, note="retransmission")
        nxt = min(interval * 2, self.t2)
        dialog.timers.append(self.loop.call_later(nxt, self._retransmit_2xx, dialog, nxt))

    def _ack_timeout(self, dialog: Dialog) -> None:
        if dialog.state != "early":
            return
        dialog.cancel_timers()
        self._change(dialog.call_id, "ack-timeout", "failed", error_message="no ACK arrived for the 200 OK",
                     end_call_reason="error")
        self.send_bye(dialog, reason="no ACK for 200 OK")

    def _final_non_2xx(self, tx: InviteTx, code: int, reason: str, extra: list[tuple[str, str]]) -> None:
        tx.cancel_timers()
        tx.state = "completed"
        tx.last_response = self._send_response(tx.request, tx.peer, tx.reply_to, code, reason, to_tag=tx.to_tag,
                                               extra=extra, call_id=tx.call_id)
        if tx.dialog is not None:
            self.dialogs.pop(tx.dialog.key, None)
            tx.dialog = None
        if not tx.peer.reliable:  # Timer G, then H
            tx.timers.append(self.loop.call_later(self.t1, self._retransmit_final, tx, self.t1))
        self._expire(64 * self.t1, self._end_invite_tx, tx)

    def _retransmit_final(self, tx: InviteTx, interval: float) -> None:
        if tx.state != "completed" or tx.last_response is None:
            return
        self._send_raw(tx.last_response, tx.peer, tx.reply_to, tx.request.get("call-id"), tx.call_id,
                       note="retransmission")
        nxt = min(interval * 2, self.t2)
        tx.timers.append(self.loop.call_later(nxt, self._retransmit_final, tx, nxt))

    def _end_invite_tx(self, tx: InviteTx) -> None:
        tx.cancel_timers()
        tx.state = "terminated"
        if self.invites.get(tx.key) is tx:
            del self.invites[tx.key]

    def _send_provisional(self, tx: InviteTx, code: int, reason: str) -> None:
        tx.last_response = self._send_response(tx.request, tx.peer, tx.reply_to, code, reason,
                                               to_tag=None if code == 100 else tx.to_tag, call_id=tx.call_id)

    def _on_reinvite(self, msg: SipMessage, data: bytes, peer: Peer, key: tuple[str, ...], to_tag: str) -> None:
        dialog = self.dialogs.get((msg.get("call-id") or "", to_tag, msg.from_tag or ""))
        reply_to = self._reply_address(msg, peer)
        if dialog is None or dialog.state != "confirmed":
            self._record("in", peer, data, msg.first_line(), call_id=None, sip_call_id=msg.get("call-id"),
                         decision="re-INVITE outside a dialog")
            self._send_response(msg, peer, reply_to, 481, "Call/Transaction Does Not Exist", call_id=None)
            return
        self._record("in", peer, data, msg.first_line(), call_id=dialog.call_id, sip_call_id=msg.get("call-id"),
                     decision="re-INVITE")
        try:
            body = sdp.answer(msg.body, peer.local[0])
        except sdp.NoCommonCodec:
            self._send_response(msg, peer, reply_to, 488, "Not Acceptable Here", call_id=dialog.call_id)
            return
        tx = InviteTx(key, msg, peer, reply_to, to_tag, dialog.call_id, state="accepted")
        self.invites[key] = tx
        tx.last_response = self._send_response(msg, peer, reply_to, 200, "OK", extra=[
            ("Contact", f"<sip:synthflow@{peer.local[0]}:{peer.local[1]}>"), ("Content-Type", "application/sdp")],
            body=body, call_id=dialog.call_id)
        self._expire(64 * self.t1, self._end_invite_tx, tx)

    # -- ACK, BYE, CANCEL ---------------------------------------------------------------
    def _on_ack(self, msg: SipMessage, data: bytes, peer: Peer) -> None:
        sip_call_id = msg.get("call-id")
        tx = self.invites.get(self._tx_key(msg, "INVITE"))
        if tx is not None and tx.state in ("completed", "confirmed"):  # ACK of a non-2xx final
            self._record("in", peer, data, msg.first_line(), call_id=tx.call_id, sip_call_id=sip_call_id,
                         decision="ack of final response")
            if tx.state == "completed":
                tx.cancel_timers()
                tx.state = "confirmed"
                self._expire(0 if peer.reliable else self.t4, self._end_invite_tx, tx)
            return
        key = (sip_call_id or "", msg.to_tag or "", msg.from_tag or "")
        dialog = self.dialogs.get(key)
        if dialog is None:
            self._record("in", peer, data, msg.first_line(), call_id=None, sip_call_id=sip_call_id,
                         decision="ACK matched nothing; dropped")
            return
        self._record("in", peer, data, msg.first_line(), call_id=dialog.call_id, sip_call_id=sip_call_id,
                     decision="ack of 200")
        if dialog.state == "early":
            dialog.state = "confirmed"
            dialog.cancel_timers()
            dialog.tx.state = "terminated"
            # Keep the INVITE transaction a while to absorb retransmitted INVITEs (RFC 6026 Timer L).
            self._expire(64 * self.t1, self._end_invite_tx, dialog.tx)
            self._change(dialog.call_id, "acknowledged", "in-progress")
            if dialog.hangup_after is not None:
                dialog.timers.append(self.loop.call_later(dialog.hangup_after, self._mock_hangup, dialog))

    def _mock_hangup(self, dialog: Dialog) -> None:
        if dialog.state != "confirmed":
            return
        duration = round(time.time() - dialog.answered_at) if dialog.answered_at else 0
        self._change(dialog.call_id, "mock-bye", "completed", duration=duration, end_call_reason="agent_ended_call")
        self.send_bye(dialog, reason="plan hangup: the agent ended the call")

    def _on_bye(self, msg: SipMessage, data: bytes, peer: Peer, key: tuple[str, ...]) -> None:
        sip_call_id = msg.get("call-id")
        dialog = self.dialogs.get((sip_call_id or "", msg.to_tag or "", msg.from_tag or ""))
        if dialog is None:
            self._answer_non_invite(msg, data, peer, key, 481, "Call/Transaction Does Not Exist",
                                    decision="BYE matched no dialog")
            return
        self._answer_non_invite(msg, data, peer, key, 200, "OK", decision="bye", call_id=dialog.call_id)
        early = dialog.state == "early"
        self._end_dialog(dialog)
        if early:  # BYE before the answer: 200 to the BYE, then 487 to the INVITE
            self._final_non_2xx(dialog.tx, 487, "Request Terminated", [])
            self._change(dialog.call_id, "bye", "canceled", end_call_reason="user_canceled")
            return
        duration = round(time.time() - dialog.answered_at) if dialog.answered_at else 0
        self._change(dialog.call_id, "bye", "completed", duration=duration, end_call_reason="human_ended_call")

    def _end_dialog(self, dialog: Dialog) -> None:
        dialog.state = "terminated"
        dialog.cancel_timers()
        self.dialogs.pop(dialog.key, None)

    def _on_cancel(self, msg: SipMessage, data: bytes, peer: Peer, key: tuple[str, ...]) -> None:
        tx = self.invites.get(self._tx_key(msg, "INVITE"))
        if tx is None:
            self._answer_non_invite(msg, data, peer, key, 481, "Call/Transaction Does Not Exist",
                                    decision="CANCEL matched no INVITE")
            return
        self._answer_non_invite(msg, data, peer, key, 200, "OK", decision="cancel", call_id=tx.call_id)
        if tx.state != "proceeding":
            return  # the INVITE already has its final answer
        if tx.dialog is not None:
            self._end_dialog(tx.dialog)
        self._final_non_2xx(tx, 487, "Request Terminated", [])
        self._change(tx.call_id, "canceled", "canceled", end_call_reason="user_canceled")

    def _answer_non_invite(self, msg: SipMessage, data: bytes, peer: Peer, key: tuple[str, ...], code: int,
                           reason: str, *, decision: str, call_id: str | None = None,
                           extra: list[tuple[str, str]] | None = None) -> None:
        self._record("in", peer, data, msg.first_line(), call_id=call_id, sip_call_id=msg.get("call-id"),
                     decision=decision)
        to_tag = msg.to_tag or _rand(4)
        sent = self._send_response(msg, peer, self._reply_address(msg, peer), code, reason, to_tag=to_tag,
                                   extra=extra, call_id=call_id)
        # Timer J: answer retransmissions from this cache for 64·T1 over UDP (0 over TCP).
        if not peer.reliable:
            self.answered[key] = sent
            self._expire(64 * self.t1, self._forget_answer, key)

    def _forget_answer(self, key: tuple[str, ...]) -> None:
        self.answered.pop(key, None)

    # -- responses to requests we sent (our BYE) ----------------------------------------
    def _on_response(self, msg: SipMessage, data: bytes, peer: Peer) -> None:
        try:
            branch = msg.top_via.branch or ""
        except SipParseError:
            branch = ""
        ctx = self.client_txs.get(branch)
        call_id = ctx.call_id if ctx else None
        self._record("in", peer, data, msg.first_line(), call_id=call_id, sip_call_id=msg.get("call-id"),
                     decision="response to our request" if ctx else "response matched nothing; dropped")
        if ctx is not None and (msg.status or 0) >= 200:
            ctx.cancel_timers()
            self.client_txs.pop(branch, None)

    def send_bye(self, dialog: Dialog, reason: str = "mock hangs up") -> None:
        """End a dialog from the mock's side (ACK timeout, or a scripted hang-up)."""
        tx = dialog.tx
        req = tx.request
        dialog.local_cseq += 1
        local = tx.peer.local
        branch = "z9hG4bK" + _rand(8)
        target = req.get("contact") or f"<{req.uri}>"
        uri = target[target.find("<") + 1:target.find(">")] if "<" in target else target.split(";")[0]
        headers = [
            ("Via", f"SIP/2.0/{tx.peer.transport} {_addr(local)};branch={branch};rport"),
            ("From", f"{req.get('to')};tag={tx.to_tag}" if tag_of(req.get("to")) is None else req.get("to") or ""),
            ("To", req.get("from") or ""),
            ("Call-ID", req.get("call-id") or ""),
            ("CSeq", f"{dialog.local_cseq} BYE"),
            ("Max-Forwards", "70"),
            ("Reason", f'SIP;text={_quoted(reason)}'),
            ("Server", SERVER),
        ]
        data = serialize(f"BYE {uri} SIP/2.0", headers)
        ctx = ClientTx(branch, data, tx.peer, tx.reply_to, dialog.call_id)
        self.client_txs[branch] = ctx
        self._send_raw(data, tx.peer, tx.reply_to, req.get("call-id"), dialog.call_id, first_line=f"BYE {uri}")
        self._end_dialog(dialog)
        if not tx.peer.reliable:  # Timer E, until Timer F
            ctx.timers.append(self.loop.call_later(self.t1, self._retransmit_request, ctx, self.t1))
        self._expire(64 * self.t1, self._end_client_tx, ctx)

    def _retransmit_request(self, ctx: ClientTx, interval: float) -> None:
        if ctx.branch not in self.client_txs:
            return
        self._send_raw(ctx.data, ctx.peer, ctx.to, None, ctx.call_id, note="retransmission")
        nxt = min(interval * 2, self.t2)
        ctx.timers.append(self.loop.call_later(nxt, self._retransmit_request, ctx, nxt))

    def _end_client_tx(self, ctx: ClientTx) -> None:
        ctx.cancel_timers()
        self.client_txs.pop(ctx.branch, None)

    # -- sending ------------------------------------------------------------------------
    def _reply_address(self, msg: SipMessage, peer: Peer) -> tuple[str, int]:
        """Where a response goes (RFC 3261 §18.2.2, RFC 3581): the source for rport or streams."""
        if peer.reliable:
            return peer.remote
        via = msg.top_via
        if "rport" in via.params:
            return peer.remote
        return (peer.remote[0], via.port or 5060)

    def _send_response(self, req: SipMessage, peer: Peer, to: tuple[str, int], code: int, reason: str, *,
                       to_tag: str | None = None, extra: list[tuple[str, str]] | None = None, body: bytes = b"",
                       call_id: str | None) -> bytes:
        before_to, after_to, to_value, tagged = self._response_base(req, peer)
        if to_tag and not tagged and to_value:
            to_value += f";tag={to_tag}"
        headers = [*before_to, ("To", to_value), *after_to] if to_value else [*before_to, *after_to]
        if code == 100 and req.get("timestamp"):
            headers.append(("Timestamp", req.get("timestamp") or ""))
        headers.append(("Server", SERVER))
        if extra:
            headers.extend(extra)
        status_line = f"SIP/2.0 {code} {_reason(reason)}"
        data = serialize(status_line, headers, body)
        self._send_raw(data, peer, to, after_to[0][1] if after_to and after_to[0][0] == "Call-ID" else None,
                       call_id, first_line=status_line)
        return data

    @staticmethod
    def _response_base(req: SipMessage, peer: Peer) -> tuple[list[tuple[str, str]], list[tuple[str, str]], str, bool]:
        """The headers every response to ``req`` copies (RFC 3261 §8.2.6.2), computed once per request."""
        if req.response_base is None:
            before: list[tuple[str, str]] = []
            vias = req.get_all("via")
            if vias:
                before.append(("Via", _stamp_via(req, vias[0], peer)))
                before.extend(("Via", via) for via in vias[1:])
            if req.get("from"):
                before.append(("From", req.get("from") or ""))
            after = [(name, req.get(key) or "") for name, key in (("Call-ID", "call-id"), ("CSeq", "cseq"))
                     if req.get(key)]
            to_value = req.get("to") or ""
            req.response_base = (before, after, to_value, tag_of(to_value) is not None)
        return req.response_base

    def _send_raw(self, data: bytes, peer: Peer, to: tuple[str, int], sip_call_id: str | None, call_id: str | None,
                  *, first_line: str | None = None, note: str | None = None) -> None:
        ok = peer.send(data, to)
        line = first_line or data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        decision = note if ok else "not sent: connection closed"
        self._record("out", peer, data, line, call_id=call_id, sip_call_id=sip_call_id, decision=decision, to=to)

    def close(self) -> None:
        for tx in list(self.invites.values()):
            tx.cancel_timers()
        for dialog in list(self.dialogs.values()):
            dialog.cancel_timers()
        for ctx in list(self.client_txs.values()):
            ctx.cancel_timers()
        if self._sweeper is not None:
            self._sweeper.cancel()
        # If the writer is gone or stuck, stopping must still finish.
        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            self.flush().result(timeout=30)
        self._sink.close()


class _Unsupported(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def _stamp_via(msg: SipMessage, value: str, peer: Peer) -> str:
    """Add ``received`` (and fill ``rport``) on the top Via, as RFC 3261 §18.2.1 and RFC 3581 ask."""
    try:
        via: Via = msg.top_via
    except SipParseError:
        return value
    src_ip, src_port = peer.remote
    out = value
    if "rport" in via.params:
        if via.params["rport"] == "":
            out = re.sub(r";rport(?=;|$)", f";rport={src_port}", out, count=1)
        if "received" not in via.params:
            out += f";received={src_ip}"
    elif via.host != src_ip and "received" not in via.params:
        out += f";received={src_ip}"
    return out


_SALVAGE = re.compile(r"^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
_SALVAGE_NAMES = {"v": "via", "f": "from", "t": "to", "i": "call-id"}


def _salvage(data: bytes) -> dict[str, str | None] | None:
    """The headers needed to answer a message the parser refused, if they can be found."""
    text = data[:8192].decode("utf-8", "replace")
    found: dict[str, str | None] = {"via": None, "from": None, "to": None, "call-id": None, "cseq": None}
    for name, value in _SALVAGE.findall(text):
        key = _SALVAGE_NAMES.get(name.lower(), name.lower())
        if found.get(key) is None:
            found[key] = value.strip()
    if found["via"] is None:
        return None
    try:
        parse_via(found["via"])
    except SipParseError:
        return None
    return found
