"""The SIP user agent server: what the fake trunk does with each message it receives.

Transport-free: a transport hands :meth:`SipEndpoint.receive` one framed message
and a :class:`~mock_server.sip.peer.Peer` that knows how to send back. The jobs
around it live in their own modules:

- ``transactions.py`` and ``dialogs.py``: the state machines (tables of transitions);
- ``timers.py``: their timers, on a clock tests can step;
- ``admission.py``: whether an INVITE is taken (X-EI check, call correlation);
- ``script.py``: what an admitted call does (its SIP plan from prepare time);
- ``responses.py``: building responses; ``recorder.py``: the journal and call events.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from dataclasses import dataclass
from typing import Any

from mock_server.agents.book import Agent, BookCache
from mock_server.core.calls import ENDED
from mock_server.core.checks import is_loopback
from mock_server.core.config import MockConfig
from mock_server.core.store import Store, store_errors
from mock_server.media.manager import Media
from mock_server.media.ports import NoMediaPort
from mock_server.metrics import SIP_LIVE_DIALOGS, SIP_REFUSED
from mock_server.server.console import Console
from mock_server.sip import sdp
from mock_server.sip.admission import admit
from mock_server.sip.common import format_addr, new_branch, quoted, random_token
from mock_server.sip.dialogs import Dialog, DialogEvent, DialogKey, DialogState
from mock_server.sip.in_call import InCall
from mock_server.sip.message import (
    KNOWN_METHODS,
    SipMessage,
    SipParseError,
    display_name,
    parse_cseq,
    parse_datagram,
    salvage_headers,
    serialize,
    tag_of,
)
from mock_server.sip.peer import Peer
from mock_server.sip.recorder import Recorder
from mock_server.sip.responses import SERVER, build_response, reply_address
from mock_server.sip.script import script_for
from mock_server.sip.shard_routing import ShardRouter
from mock_server.sip.sink import Sink, ThreadSink
from mock_server.sip.telephony import TelephonyClock
from mock_server.sip.timers import LoopTimers, TimerHandle, Timers
from mock_server.sip.transactions import (
    AnswerCache,
    ClientEvent,
    ClientState,
    ClientTx,
    InviteEvent,
    InviteState,
    InviteTx,
    TxKey,
)
from mock_server.sip.variables import diversion, x_headers
from mock_server.webhooks.context import CallContext
from mock_server.webhooks.delivery import BeforeAnswer, Webhooks

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY"


def answered_statelessly(cause: str) -> bool:
    """Refusals with no prepared call behind them (unknown id, missing or bad X-EI): no transaction is kept."""
    return cause in ("unknown_call", "missing_xei") or cause.startswith("bad_xei:")
SUPPORTED: frozenset[str] = frozenset()
MANDATORY = ("via", "from", "to", "call-id", "cseq", "max-forwards")


class _Unsupported(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass
class _PendingCancel:
    """A CANCEL handed to every other shard (``SipEndpoint._ask_other_shards``)."""

    waiting: int
    """Shards that have not answered yet."""
    peer: Peer
    key: TxKey
    timer: TimerHandle


class SipEndpoint:
    """A fake Synthflow SIP trunk over a shared :class:`Store`."""

    def __init__(self, store: Store, config: MockConfig, loop: asyncio.AbstractEventLoop | None = None, *,
                 sink: Sink | None = None, timers: Timers | None = None, console: Console | None = None,
                 webhooks: Webhooks | None = None) -> None:
        self.store = store
        self._store_errors = store_errors()
        self._settings_version: int | None = None
        """The settings version read with the INVITE being admitted (its agents book is read at it); the
        endpoint handles one message at a time, so it is this INVITE's until the next lookup."""
        self.config = config
        self.loop = loop or asyncio.get_event_loop()
        self.timers = timers if timers is not None else LoopTimers(self.loop)
        self.t1 = config.sip_t1_ms / 1000
        self.t2 = self.t1 * 8
        self.t4 = self.t1 * 10
        self._expiry = self.timers.lane(64 * self.t1)
        """Timers H, J and L, and the end of the mock's own BYE (Timer F): all 64·T1."""
        self.invites: dict[TxKey, InviteTx] = {}
        self.dialogs: dict[DialogKey, Dialog] = {}
        self.answers = AnswerCache()
        # Bound once: a timer per call then holds these, not a new bound-method object each (fewer objects
        # for the garbage collector in the tens of thousands of transactions Timer L keeps).
        self._end_invite_tx_cb = self._end_invite_tx
        self._forget_answer = self.answers.forget
        self.received = 0
        """Messages received so far (the quiet-moment garbage collector watches it)."""
        self.in_progress = 0
        """INVITE transactions not answered yet (the ones --sip-max-transactions counts); answered ones are
        released on time by Timers H, I and L."""
        self.client_txs: dict[str, ClientTx] = {}
        self.recorder = Recorder(sink or ThreadSink(store), self.timers.call_later,
                                 body_limit=config.journal_body_limit, flush_interval=config.sip_flush_ms / 1000,
                                 salt=config.redaction_salt, console=console,
                                 from_any_thread=self.loop.call_soon_threadsafe)
        self._record = self.recorder.message
        self.books = BookCache(store)
        self.webhooks = webhooks
        """Sends post-call webhooks and runs inbound webhooks and pre-call actions (None: no webhooks)."""
        self._contexts: dict[str, CallContext] = {}
        """Calls whose end sends a webhook, by call id; bounded like the transactions."""
        self._shard = [("X-Mock-Shard", str(config.sip_shard))] if config.sip_workers > 1 else []
        self.router: ShardRouter | None = None
        """Hands messages naming another shard to it (``sip/shard_routing.py``); set when sharded."""
        self._suffix = ""
        """Ends every tag and branch this shard makes, so a message naming it can be routed here."""
        self._forwarded: tuple[bool, int | None] | None = None
        """While a message another shard handed over is handled: (broadcast, its shard)."""
        self._pending_cancels: dict[bytes, _PendingCancel] = {}
        """CANCELs handed to every other shard, until one takes it or all have said it is not theirs."""
        self.telephony = TelephonyClock(2 * config.sip_max_transactions)
        self.in_call = InCall(self)
        """The agent's side of answered calls: DTMF, hang-ups, RTP timeout, transfer, media summaries."""
        self.media = Media(self.loop, config) if config.media else None
        """RTP for answered calls (None with ``--media off``)."""

    # -- public face for transports and runners -------------------------------------------
    def receive(self, data: bytes, peer: Peer, parsed: SipMessage | None = None) -> None:
        """Handle one message (a UDP datagram, or one framed message from a stream)."""
        self.received += 1
        if len(data) > self.config.sip_max_message_bytes:
            self.reject_unparsed(data, peer, 513, "Message Too Large")
            return
        try:
            msg = parsed or parse_datagram(data)
        except SipParseError as exc:
            self.reject_unparsed(data, peer, 400, exc.reason)
            return
        if not msg.is_request:
            self._on_response(msg, data, peer)
            return
        internal = msg.method == "OPTIONS" and msg.get("x-mock-internal") == "readiness" and \
            is_loopback(peer.remote[0])
        self.recorder.paused = internal  # the supervisor's readiness probe stays out of the journal
        try:
            self._on_request(msg, data, peer)
        except SipParseError as exc:
            self._respond_once(msg, data, peer, 400, exc.reason, decision=f"malformed: {exc.reason}")
        finally:
            self.recorder.paused = False

    def route_through(self, router: ShardRouter) -> None:
        """Route messages between shards (``--sip-workers`` > 1): this shard's tags and branches name it."""
        self.router = router
        self._suffix = router.suffix

    def receive_forwarded(self, data: bytes, peer: Peer, kind: str, origin: int) -> None:
        """A message shard ``origin`` handed over (``kind``: see ``ShardRouter``)."""
        if kind in ("y", "n"):
            self._cancel_answered(data, taken=kind == "y")
            return
        self._forwarded = (kind == "b", origin)
        try:
            self.receive(data, peer)
        finally:
            self._forwarded = None

    def _route(self, msg: SipMessage, data: bytes, peer: Peer, token: str | None) -> bool:
        """Hand a message whose tag or branch names another shard to it; True when handed over."""
        if self.router is None or self._forwarded is not None:
            return False
        owner = self.router.owner(token)
        return owner is not None and self.router.forward(owner, data, peer)

    def _tag(self) -> str:
        return random_token(6) + self._suffix

    def reject_unparsed(self, data: bytes, peer: Peer, code: int, reason: str) -> None:
        """Answer a message we could not parse when enough of it survives; journal and drop it otherwise."""
        salvaged = salvage_headers(data)
        first = data.split(b"\n", 1)[0][:200].decode("utf-8", "replace").strip()
        if salvaged is None or salvaged.get("via") is None or first.startswith("SIP/"):
            self._record("in", peer, data, first, call_id=None, sip_call_id=None,
                         decision=f"dropped: {reason}", reason=reason)
            return
        msg = SipMessage(method=first.split(" ", 1)[0] or "UNKNOWN", uri="sip:unknown",
                         headers=[(k, v) for k, v in salvaged.items() if v is not None])
        self._respond_once(msg, data, peer, code, reason, decision=f"malformed: {reason}")

    def note(self, peer: Peer, data: bytes, what: str, decision: str) -> None:
        """Journal something that happened on a transport but is not a message (a close, an error)."""
        self._record("in", peer, data, what, call_id=None, sip_call_id=None, decision=decision)

    def change(self, call_id: str | None, event: str, status: str | None = None, *,
               detail: dict[str, Any] | None = None, **fields: Any) -> None:
        """A step in a call's life (the recorder's); a call that ends sends its post-call webhook."""
        if call_id is not None and (event in ("invite", "answered") or status in ENDED):
            fields.update(self.telephony.fields(call_id, event, status, detail))
        self.recorder.change(call_id, event, status, detail=detail, **fields)
        if status in ENDED and call_id is not None and self._contexts:
            ctx = self._contexts.pop(call_id, None)
            if ctx is not None and self.webhooks is not None:
                self.webhooks.post_call(ctx, self.recorder.flush())

    def call_state(self, call_id: str) -> tuple[str | None, dict[str, Any] | None]:
        """Status (this process's newest view first) and the SIP plan chosen at prepare time."""
        status, plan, self._settings_version = self.store.call_state(call_id)
        return self.recorder.status(call_id) or status, plan

    def flush(self) -> concurrent.futures.Future[None]:
        """Queue everything received so far for writing; the future is done once it is in the store."""
        return self.recorder.flush()

    def close(self) -> None:
        for tx in list(self.invites.values()):
            tx.cancel_timers()
        for dialog in list(self.dialogs.values()):
            dialog.cancel_timers()
        for ctx in list(self.client_txs.values()):
            ctx.cancel_timers()
        self.timers.clear()
        for dialog in list(self.dialogs.values()):
            self.in_call.close_media(dialog)
        self.recorder.close()
        if self.router is not None:
            self.router.close()
        if self.webhooks is not None:
            self.webhooks.close()
        if self.media is not None:
            self.media.shutdown()

    # -- requests -------------------------------------------------------------------------
    def _respond_once(self, msg: SipMessage, data: bytes, peer: Peer, code: int, reason: str, *,
                      decision: str, extra: list[tuple[str, str]] | None = None) -> None:
        self._record("in", peer, data, msg.first_line(), call_id=None, sip_call_id=msg.get("call-id"),
                     decision=decision, reason=reason)
        try:
            to = reply_address(msg, peer)
        except SipParseError:
            to = peer.remote  # an unreadable Via: answer where the request came from
        self._send_response(msg, peer, to, code, reason, extra=extra, call_id=None,
                            to_tag=random_token(4) if code != 100 else None)

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
        if self.router is not None and self._route(msg, data, peer, msg.to_tag):  # another shard's dialog or ACK
            return
        if method == "ACK":
            self._on_ack(msg, data, peer)
            return
        if method == "INVITE":
            self._on_invite(msg, data, peer)
            return
        key = self._tx_key(msg, method)
        cached = self.answers.get(key)
        if cached is not None:  # a retransmission: the same answer, not a second decision
            self._record("in", peer, data, msg.first_line(), call_id=None, sip_call_id=msg.get("call-id"),
                         decision="retransmission")
            self._send_raw(cached, peer, reply_address(msg, peer), msg.get("call-id"), None)
            return
        if method == "BYE":
            self._on_bye(msg, data, peer, key)
        elif method == "CANCEL":
            self._on_cancel(msg, data, peer, key)
        elif method == "INFO":
            self.in_call.on_info(msg, data, peer, key)
        elif method == "NOTIFY":
            self.in_call.on_notify(msg, data, peer, key)
        elif method == "OPTIONS":
            self.answer_non_invite(msg, data, peer, key, 200, "OK", decision="options",
                                   extra=[("Allow", ALLOW), ("Accept", "application/sdp")])
        elif method in KNOWN_METHODS:
            self.answer_non_invite(msg, data, peer, key, 405, "Method Not Allowed",
                                   decision=f"{method} not supported", extra=[("Allow", ALLOW)])
        else:
            self.answer_non_invite(msg, data, peer, key, 501, "Not Implemented", decision=f"unknown method {method}",
                                   extra=[("Allow", ALLOW)])

    @staticmethod
    def _tx_key(msg: SipMessage, method: str) -> TxKey:
        via = msg.top_via
        branch = via.branch or ""
        if branch.startswith("z9hG4bK"):
            return (branch, via.sent_by, method)
        # RFC 2543 peers: no magic cookie, match on the request's identity instead.
        cseq, _ = parse_cseq(msg.get("cseq"))
        return ("legacy", msg.get("call-id") or "", str(cseq), msg.from_tag or "", via.sent_by, method)

    # -- INVITE -----------------------------------------------------------------------------
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
        reply_to = reply_address(msg, peer)
        failure = self.recorder.sink.failure
        if failure is not None:  # never take a call that cannot be recorded
            self._record("in", peer, data, msg.first_line(), call_id=None, sip_call_id=sip_call_id,
                         decision="refused: cannot record", reason=failure)
            self._send_response(msg, peer, reply_to, 503, "Journal Store Failing", to_tag=random_token(4),
                                extra=[("Warning", f"399 synthflow-mock {quoted(failure)}"), ("Retry-After", "5")],
                                call_id=None)
            return
        require = [o.strip() for o in msg.get_all("require") if o.strip() not in SUPPORTED]
        if require:
            self._record("in", peer, data, msg.first_line(), call_id=None, sip_call_id=sip_call_id,
                         decision="unsupported extension", reason=", ".join(require))
            self._send_response(msg, peer, reply_to, 420, "Bad Extension", to_tag=random_token(4),
                                extra=[("Unsupported", ", ".join(require))], call_id=None)
            return
        if self.in_progress >= self.config.sip_max_transactions:  # bounded live state: refuse, keep nothing
            SIP_REFUSED.labels("transaction-cap").inc()
            self._respond_once(msg, data, peer, 503, "Too Many Transactions",
                               decision=f"refused: {self.config.sip_max_transactions} live transactions (cap)",
                               extra=[("Retry-After", "5")])
            return
        try:
            admission = admit(msg, self.call_state, require_xei=self.config.sip_require_xei,
                              lenient=self.config.sip_xei_lenient, codes=self.config.sip_codes)
        except self._store_errors as exc:  # the call could not be looked up (Redis gone, say): say so, keep nothing
            SIP_REFUSED.labels("store").inc()
            why = f"the mock's store could not be read ({type(exc).__name__}: {exc})"
            self._respond_once(msg, data, peer, 503, "Mock Store Unavailable", decision=f"refused: {why}",
                               extra=[("Warning", f"399 synthflow-mock {quoted(why)}"), ("Retry-After", "5")])
            return
        if not admission.accept and answered_statelessly(admission.cause):
            # No call to attach state to (RFC 3261 §8.2.7 lets a UAS answer statelessly): one final answer
            # per INVITE received, no 100 and no retransmission, so a flood is answered 1:1, not 1:9.
            SIP_REFUSED.labels(admission.cause.split(":", 1)[0]).inc()
            extra = [("Warning", f"399 synthflow-mock {quoted(admission.warning or admission.phrase)}")]
            self._record("in", peer, data, msg.first_line(), call_id=admission.call_id, sip_call_id=sip_call_id,
                         decision=admission.cause, reason=admission.phrase)
            self._send_response(msg, peer, reply_to, admission.code, admission.phrase, to_tag=random_token(4),
                                extra=extra, call_id=admission.call_id)
            return
        tx = InviteTx(key, msg, peer, reply_to, self._tag(), admission.call_id)
        self.invites[key] = tx
        self.in_progress += 1
        self._record("in", peer, data, msg.first_line(), call_id=admission.call_id, sip_call_id=sip_call_id,
                     decision=admission.cause, reason=None if admission.accept else admission.phrase)
        self._send_provisional(tx, 100, "Trying")
        if not admission.accept:
            extra = [("Warning", f"399 synthflow-mock {quoted(admission.warning or admission.phrase)}")]
            if admission.retry_after:
                extra.append(("Retry-After", str(admission.retry_after)))
            if admission.cause != "unknown_call":  # no call to attach the event to
                self.change(admission.call_id, "rejected", detail={"code": admission.code, "why": admission.cause,
                            "sip_call_id": sip_call_id})
            self._final_non_2xx(tx, admission.code, admission.phrase, extra)
            return
        script = script_for(admission.plan, self.config)
        ctx, agent = self._context_for(msg, admission)
        if ctx is not None and self.webhooks is not None:
            self._remember(ctx)  # from now on, however the call ends, its webhook goes out
        if script.reject is not None:
            code, phrase, extra = script.reject
            self.change(admission.call_id, "rejected", "busy" if script.plan == "busy" else "failed",
                        detail={"code": code, "why": f"plan:{script.plan}", "sip_call_id": sip_call_id})
            self._final_non_2xx(tx, code, phrase, extra)
            return
        if ctx is not None and not self._within_limits(tx, ctx):
            return
        try:
            offer = sdp.read_offer(msg.body)
        except sdp.NoCommonCodec as exc:
            self.change(admission.call_id, "rejected", "failed", detail={"code": 488, "why": str(exc)},
                        error_message=f"Telephony - 488 - {exc}")
            self._final_non_2xx(tx, 488, "Not Acceptable Here",
                                [("Warning", f"304 synthflow-mock {quoted(str(exc))}")])
            return
        dialog = Dialog((sip_call_id or "", tx.to_tag, msg.from_tag or ""), tx, admission.call_id)
        plan = admission.plan or {}
        if self.media is not None:
            try:
                dialog.media = self.media.open(peer.local[0], offer, str(plan.get("media", "greeting")),
                                               functools.partial(self.in_call.media_event, dialog))
            except NoMediaPort as exc:
                SIP_REFUSED.labels("media-ports").inc()
                self.change(admission.call_id, "rejected", "failed", detail={"code": 503, "why": str(exc)},
                            error_message=f"Telephony - 503 - {exc}")
                self._final_non_2xx(tx, 503, "No Media Port Available",
                                    [("Warning", f"399 synthflow-mock {quoted(str(exc))}"), ("Retry-After", "5")],
                                    why=str(exc))
                return
        dialog.hangup_digit = plan.get("hangup-digit")
        dialog.rtp_timeout = plan.get("rtp-timeout-s", self.config.rtp_timeout_s)
        answer = sdp.answer(msg.body, peer.local[0], dialog.media.port if dialog.media is not None else 40000)
        tx.dialog = dialog
        self.dialogs[dialog.key] = dialog
        SIP_LIVE_DIALOGS.set(len(self.dialogs))
        twilio_sid = msg.get("x-twilio-callsid")
        fields: dict[str, Any] = {"twilio_call_sid": twilio_sid} if twilio_sid else {}
        variables = ctx.x_headers if ctx is not None else x_headers(msg)
        if variables:
            fields["prompt_variables"] = variables
        self.change(admission.call_id, "invite", "ringing", detail={
                    "sip_call_id": sip_call_id, "transport": peer.transport, "remote": format_addr(peer.remote),
                    "external_id": admission.external_id, "diversion": ctx.diversion if ctx else admission.diversion},
                    **fields)
        dialog.hangup_after = script.hangup_after_s
        dialog.transfer_after = script.transfer_after_s
        if ctx is not None and agent is not None and agent.steps_before_answer and self.webhooks is not None:
            # The INVITE stays at 180 until the inbound webhook and the pre-call actions are done.
            tx.held = True
            self._send_provisional(tx, 180, "Ringing")
            self.webhooks.before_answer(ctx, agent, functools.partial(self._before_answer_done, tx), self.loop)
        if not tx.held:
            self._after(tx, script.ring_s, self._ring, tx)
        if script.no_answer_s is not None:
            tx.timers.append(self.timers.call_later(script.no_answer_s, self._no_answer, tx))
        if script.answer_s is not None:
            self._after(tx, script.answer_s, self._answer, tx, answer)

    def _context_for(self, msg: SipMessage, admission: Any) -> tuple[CallContext | None, Agent | None]:
        """What this call's webhooks, pre-call steps and limits need, when any of them applies."""
        call_id = admission.call_id
        if call_id is None:
            return None, None
        book = self.books.get(self._settings_version)
        url = (admission.plan or {}).get("external_webhook_url")
        if not book and not url:
            return None, None
        parties = self.store.call_parties(call_id)
        ctx = CallContext(call_id, parties["model_id"], parties["workspace_id"], parties["from_number"],
                          parties["to_number"], admission.external_id, diversion(msg, admission.diversion),
                          msg.get("x-twilio-callsid"), x_headers(msg), url)
        return ctx, book.agent(ctx.model_id)

    def _remember(self, ctx: CallContext) -> None:
        contexts = self._contexts
        contexts.pop(ctx.call_id, None)
        contexts[ctx.call_id] = ctx
        while len(contexts) > 2 * self.config.sip_max_transactions:  # calls that never end do not pile up
            del contexts[next(iter(contexts))]

    def _within_limits(self, tx: InviteTx, ctx: CallContext) -> bool:
        """Take the call's concurrency slots (it may hold them since its prepare), or refuse it."""
        keys = self.books.get(self._settings_version).limits_for(ctx.model_id, ctx.workspace_id)
        if not keys:
            return True
        refusal = self.store.reserve_limits(keys, ctx.call_id, hold_s=None, count_attempt=False)
        if refusal is None:
            return True
        SIP_REFUSED.labels("limit").inc()
        code, why = self.config.limit_sip_code, refusal.message()
        self.change(ctx.call_id, "rejected", "failed", detail={"code": code, "why": f"limit:{refusal.key}"},
                    error_message=f"Telephony - {code} - {why}")
        self._final_non_2xx(tx, code, "Concurrency Limit Reached",
                            [("Warning", f"399 synthflow-mock {quoted(why)}"),
                             ("Retry-After", str(refusal.retry_after))], why=f"limit {refusal.key} {refusal.kind}")
        return False

    def _before_answer_done(self, tx: InviteTx, result: BeforeAnswer) -> None:
        if tx.state is not InviteState.PROCEEDING:
            return  # cancelled (or timed out) while the webhook ran
        fields: dict[str, Any] = {}
        if result.prompt_variables:
            fields["prompt_variables"] = result.prompt_variables
        if result.executed_actions:
            fields["executed_actions"] = result.executed_actions
        if result.overridden:
            fields["model_id"] = result.model_id
        if result.disconnect is not None:
            code = self.config.inbound_disconnect_code
            self.change(tx.call_id, "inbound-webhook-disconnect", "failed", detail={"code": code,
                        "why": result.disconnect}, error_message=result.disconnect, **fields)
            self._final_non_2xx(tx, code, "Disconnected By Inbound Webhook",
                                [("Warning", f"399 synthflow-mock {quoted(result.disconnect)}")], why=result.disconnect)
            return
        self.change(tx.call_id, "pre-call", detail={"model_id": result.model_id, "overridden": result.overridden,
                    "actions": len(result.executed_actions)}, **fields)
        tx.held = False
        if tx.answer_body is not None:
            self._answer(tx, tx.answer_body)

    def _after(self, tx: InviteTx, delay: float, fn: Any, *args: Any) -> None:
        """Run ``fn`` now when ``delay`` is zero, else on a timer that ends with the transaction."""
        if delay <= 0:
            fn(*args)
        else:
            tx.timers.append(self.timers.call_later(delay, fn, *args))

    def _no_answer(self, tx: InviteTx) -> None:
        if tx.state is not InviteState.PROCEEDING:
            return
        self.change(tx.call_id, "no-answer", "no-answer", detail={"code": 408})
        self._final_non_2xx(tx, 408, "Request Timeout", [])

    def _ring(self, tx: InviteTx) -> None:
        if tx.state is InviteState.PROCEEDING:
            self._send_provisional(tx, 180, "Ringing")

    def _send_provisional(self, tx: InviteTx, code: int, reason: str) -> None:
        tx.advance(InviteEvent.PROVISIONAL)
        tx.last_response = self._send_response(tx.request, tx.peer, tx.reply_to, code, reason,
                                               to_tag=None if code == 100 else tx.to_tag, call_id=tx.call_id)

    def _answer(self, tx: InviteTx, body: bytes) -> None:
        if tx.state is not InviteState.PROCEEDING or tx.dialog is None:
            return
        if tx.held:  # answered when the pre-call steps are done
            tx.answer_body = body
            return
        dialog = tx.dialog
        contact_params = f";transport={tx.peer.transport.lower()}" if tx.peer.reliable else ""
        extra = [("Contact", f"<sip:synthflow@{format_addr(tx.peer.local)}{contact_params}>"), ("Allow", ALLOW),
                 ("Content-Type", "application/sdp")]
        extra += [("Record-Route", rr) for rr in tx.request.get_all("record-route")]
        tx.advance(InviteEvent.FINAL_2XX)
        self.in_progress -= 1
        data = self._send_response(tx.request, tx.peer, tx.reply_to, 200, "OK", to_tag=tx.to_tag, extra=extra,
                                   body=body, call_id=tx.call_id)
        tx.last_response = data
        dialog.ok_response = data
        dialog.answered_at = time.time()
        self.change(tx.call_id, "answered", detail={"code": 200})
        if dialog.media is not None and self.media is not None:
            self.media.start(dialog.media)  # the agent speaks as soon as the call connects
        # RFC 3261 §13.3.1.4: resend the 2xx until the ACK comes, on any transport; give up after 64·T1.
        # One timer chain does both, so an answered call holds one pending timer, not two.
        dialog.timers.append(self.timers.call_later(self.t1, self._retransmit_2xx, dialog, self.t1, self.t1))

    def _retransmit_2xx(self, dialog: Dialog, interval: float, waited: float) -> None:
        if dialog.state is not DialogState.EARLY or dialog.ok_response is None:
            return
        if waited >= 64 * self.t1:
            self._ack_timeout(dialog)
            return
        tx = dialog.tx
        self._send_raw(dialog.ok_response, tx.peer, tx.reply_to, dialog.key[0], dialog.call_id, note="retransmission")
        nxt = min(interval * 2, self.t2, 64 * self.t1 - waited)
        dialog.timers.append(self.timers.call_later(nxt, self._retransmit_2xx, dialog, nxt, waited + nxt))

    def _ack_timeout(self, dialog: Dialog) -> None:
        if dialog.state is not DialogState.EARLY:
            return
        dialog.cancel_timers()
        self.change(dialog.call_id, "ack-timeout", "failed", error_message="no ACK arrived for the 200 OK",
                    end_call_reason="error")
        tx = dialog.tx
        self.send_bye(dialog, reason="no ACK for 200 OK")
        self._end_invite_tx(tx)  # Timer L (64·T1 from the 2xx) has run out too; nothing else would end it

    def _final_non_2xx(self, tx: InviteTx, code: int, reason: str, extra: list[tuple[str, str]], *,
                       why: str | None = None) -> None:
        """The INVITE's final non-2xx answer; ``why`` goes in the journal beside it."""
        tx.cancel_timers()
        tx.advance(InviteEvent.FINAL_NON_2XX)
        self.in_progress -= 1
        tx.last_response = self._send_response(tx.request, tx.peer, tx.reply_to, code, reason, to_tag=tx.to_tag,
                                               extra=extra, call_id=tx.call_id, why=why)
        if tx.dialog is not None:
            self.dialogs.pop(tx.dialog.key, None)
            self.in_call.close_media(tx.dialog)
            tx.dialog = None
            SIP_LIVE_DIALOGS.set(len(self.dialogs))
        if not tx.peer.reliable:  # Timer G, then H
            tx.timers.append(self.timers.call_later(self.t1, self._retransmit_final, tx, self.t1))
        tx.timers.append(self._expiry.call_later(self._end_invite_tx_cb, tx))

    def _retransmit_final(self, tx: InviteTx, interval: float) -> None:
        if tx.state is not InviteState.COMPLETED or tx.last_response is None:
            return
        self._send_raw(tx.last_response, tx.peer, tx.reply_to, tx.request.get("call-id"), tx.call_id,
                       note="retransmission")
        nxt = min(interval * 2, self.t2)
        tx.timers.append(self.timers.call_later(nxt, self._retransmit_final, tx, nxt))

    def _end_invite_tx(self, tx: InviteTx) -> None:
        tx.cancel_timers()
        if tx.state is InviteState.PROCEEDING:
            self.in_progress -= 1
        tx.advance(InviteEvent.END)
        tx.dialog = None  # the dialog (if still up) keeps its tx; the tx must not keep it: no cycle for the GC
        if self.invites.get(tx.key) is tx:
            del self.invites[tx.key]

    def _on_reinvite(self, msg: SipMessage, data: bytes, peer: Peer, key: TxKey, to_tag: str) -> None:
        dialog = self.dialogs.get((msg.get("call-id") or "", to_tag, msg.from_tag or ""))
        to = reply_address(msg, peer)
        if dialog is None or dialog.state is not DialogState.CONFIRMED:
            self._record("in", peer, data, msg.first_line(), call_id=None, sip_call_id=msg.get("call-id"),
                         decision="re-INVITE outside a dialog")
            self._send_response(msg, peer, to, 481, "Call/Transaction Does Not Exist", call_id=None)
            return
        self._record("in", peer, data, msg.first_line(), call_id=dialog.call_id, sip_call_id=msg.get("call-id"),
                     decision="re-INVITE")
        try:
            body = sdp.answer(msg.body, peer.local[0], dialog.media.port if dialog.media is not None else 40000)
        except sdp.NoCommonCodec:
            self._send_response(msg, peer, to, 488, "Not Acceptable Here", call_id=dialog.call_id)
            return
        tx = InviteTx(key, msg, peer, to, to_tag, dialog.call_id, state=InviteState.ACCEPTED)
        self.invites[key] = tx
        tx.last_response = self._send_response(msg, peer, to, 200, "OK", extra=[
            ("Contact", f"<sip:synthflow@{peer.local[0]}:{peer.local[1]}>"), ("Content-Type", "application/sdp")],
            body=body, call_id=dialog.call_id)
        tx.timers.append(self._expiry.call_later(self._end_invite_tx_cb, tx))

    # -- ACK, BYE, CANCEL -------------------------------------------------------------------
    def _on_ack(self, msg: SipMessage, data: bytes, peer: Peer) -> None:
        sip_call_id = msg.get("call-id")
        tx = self.invites.get(self._tx_key(msg, "INVITE"))
        if tx is not None and tx.can(InviteEvent.ACK):  # ACK of a non-2xx final
            self._record("in", peer, data, msg.first_line(), call_id=tx.call_id, sip_call_id=sip_call_id,
                         decision="ack of final response")
            if tx.state is InviteState.COMPLETED:
                tx.cancel_timers()
                # Timer I: absorb ACK retransmissions for T4 over UDP, none over a reliable transport.
                tx.timers.append(self.timers.call_later(0 if peer.reliable else self.t4, self._end_invite_tx, tx))
            tx.advance(InviteEvent.ACK)
            return
        dialog = self.dialogs.get((sip_call_id or "", msg.to_tag or "", msg.from_tag or ""))
        if dialog is None:
            self._record("in", peer, data, msg.first_line(), call_id=None, sip_call_id=sip_call_id,
                         decision="ACK matched nothing; dropped")
            return
        self._record("in", peer, data, msg.first_line(), call_id=dialog.call_id, sip_call_id=sip_call_id,
                     decision="ack of 200")
        if dialog.state is DialogState.EARLY:
            dialog.advance(DialogEvent.ACK)
            dialog.cancel_timers()
            # Keep the INVITE transaction a while to absorb retransmitted INVITEs (RFC 6026 Timer L).
            dialog.tx.timers.append(self._expiry.call_later(self._end_invite_tx_cb, dialog.tx))
            self.change(dialog.call_id, "acknowledged", "in-progress")
            if dialog.rtp_timeout is not None and dialog.media is not None:
                first_check = min(1.0, dialog.rtp_timeout)
                dialog.timers.append(self.timers.call_later(first_check, self.in_call.check_rtp, dialog))
            if dialog.hangup_after is not None:
                dialog.timers.append(self.timers.call_later(dialog.hangup_after, self._mock_hangup, dialog))
            if dialog.transfer_after is not None:
                dialog.timers.append(self.timers.call_later(dialog.transfer_after, self.in_call.send_refer, dialog))

    def _mock_hangup(self, dialog: Dialog) -> None:
        if dialog.state is not DialogState.CONFIRMED:
            return
        duration = round(time.time() - dialog.answered_at) if dialog.answered_at else 0
        self.change(dialog.call_id, "mock-bye", "completed", duration=duration, end_call_reason="agent_ended_call")
        self.send_bye(dialog, reason="plan hangup: the agent ended the call")

    def _on_bye(self, msg: SipMessage, data: bytes, peer: Peer, key: TxKey) -> None:
        sip_call_id = msg.get("call-id")
        dialog = self.dialogs.get((sip_call_id or "", msg.to_tag or "", msg.from_tag or ""))
        if dialog is None:
            self.answer_non_invite(msg, data, peer, key, 481, "Call/Transaction Does Not Exist",
                                   decision="BYE matched no dialog")
            return
        self.answer_non_invite(msg, data, peer, key, 200, "OK", decision="bye", call_id=dialog.call_id)
        unanswered = dialog.tx.state is InviteState.PROCEEDING
        self._end_dialog(dialog)
        if unanswered:  # BYE before the answer: 200 to the BYE, then 487 to the INVITE
            self._final_non_2xx(dialog.tx, 487, "Request Terminated", [])
            self.change(dialog.call_id, "bye", "canceled", end_call_reason="user_canceled")
            return
        duration = round(time.time() - dialog.answered_at) if dialog.answered_at else 0
        self.change(dialog.call_id, "bye", "completed", duration=duration, end_call_reason="human_ended_call")

    def _end_dialog(self, dialog: Dialog) -> None:
        dialog.advance(DialogEvent.END)
        dialog.cancel_timers()
        dialog.tx.dialog = None  # the INVITE transaction outlives its dialog (Timer L) but need not keep it
        self.dialogs.pop(dialog.key, None)
        self.in_call.close_media(dialog)
        SIP_LIVE_DIALOGS.set(len(self.dialogs))

    def _on_cancel(self, msg: SipMessage, data: bytes, peer: Peer, key: TxKey) -> None:
        tx = self.invites.get(self._tx_key(msg, "INVITE"))
        if tx is None:
            if self._tell_asking_shard(data, peer, taken=False):  # another shard asked: not ours
                return
            if self._ask_other_shards(data, peer, key):
                return
            self.answer_non_invite(msg, data, peer, key, 481, "Call/Transaction Does Not Exist",
                                   decision="CANCEL matched no INVITE")
            return
        self.answer_non_invite(msg, data, peer, key, 200, "OK", decision="cancel", call_id=tx.call_id)
        self._tell_asking_shard(data, peer, taken=True)
        if tx.state is not InviteState.PROCEEDING:
            return  # the INVITE already has its final answer
        if tx.dialog is not None:
            self._end_dialog(tx.dialog)
        self._final_non_2xx(tx, 487, "Request Terminated", [])
        self.change(tx.call_id, "canceled", "canceled", end_call_reason="user_canceled")

    def _ask_other_shards(self, data: bytes, peer: Peer, key: TxKey) -> bool:
        """A CANCEL names no tag: hand it to every other shard. The one holding its INVITE answers it; when
        every other shard said no (or after T1·4), this one answers 481."""
        router = self.router
        if router is None or self._forwarded is not None or data in self._pending_cancels:
            return False
        others = [n for n in router.others() if router.forward(n, data, peer, kind="b")]
        if not others:
            return False
        timer = self.timers.call_later(4 * self.t1, self._cancel_answered, data, False, True)
        self._pending_cancels[data] = _PendingCancel(len(others), peer, key, timer)
        return True

    def _tell_asking_shard(self, data: bytes, peer: Peer, *, taken: bool) -> bool:
        """When the CANCEL being handled was asked of every shard, tell the asking one whether this shard took
        it; False when no shard asked."""
        if self.router is None or self._forwarded is None or not self._forwarded[0]:
            return False
        asked_by = self._forwarded[1]
        return asked_by is not None and self.router.forward(asked_by, data, peer, kind="y" if taken else "n")

    def _cancel_answered(self, data: bytes, taken: bool, give_up: bool = False) -> None:
        """Another shard's answer to a CANCEL we handed to all (or the wait for them ran out)."""
        pending = self._pending_cancels.get(data)
        if pending is None:
            return
        pending.waiting -= 1
        if not taken and pending.waiting > 0 and not give_up:
            return
        del self._pending_cancels[data]
        if not give_up:
            pending.timer.cancel()
        if not taken:
            self.answer_non_invite(parse_datagram(data), data, pending.peer, pending.key, 481,
                                   "Call/Transaction Does Not Exist", decision="CANCEL matched no INVITE on any shard")

    def answer_non_invite(self, msg: SipMessage, data: bytes, peer: Peer, key: TxKey, code: int,
                          reason: str, *, decision: str, call_id: str | None = None,
                          extra: list[tuple[str, str]] | None = None) -> None:
        self._record("in", peer, data, msg.first_line(), call_id=call_id, sip_call_id=msg.get("call-id"),
                     decision=decision)
        sent = self._send_response(msg, peer, reply_address(msg, peer), code, reason,
                                   to_tag=msg.to_tag or random_token(4), extra=extra, call_id=call_id)
        # Timer J: answer retransmissions from this cache for 64·T1 over UDP (0 over TCP).
        if not peer.reliable:
            self.answers.put(key, sent)
            self._expiry.call_later(self._forget_answer, key)

    # -- the mock's own requests (BYE) ------------------------------------------------------
    def _on_response(self, msg: SipMessage, data: bytes, peer: Peer) -> None:
        try:
            branch = msg.top_via.branch or ""
        except SipParseError:
            branch = ""
        ctx = self.client_txs.get(branch)
        if ctx is None and self._route(msg, data, peer, branch):  # an answer to another shard's request
            return
        self._record("in", peer, data, msg.first_line(), call_id=ctx.call_id if ctx else None,
                     sip_call_id=msg.get("call-id"),
                     decision="response to our request" if ctx else "response matched nothing; dropped")
        if ctx is not None and (msg.status or 0) >= 200 and ctx.state is ClientState.TRYING:
            self._end_client_tx(ctx, ClientEvent.FINAL_RESPONSE)
            if ctx.on_final is not None:
                ctx.on_final(msg)

    def send_bye(self, dialog: Dialog, reason: str = "mock hangs up") -> None:
        """End a dialog from the mock's side (ACK timeout, or a scripted hang-up)."""
        self.in_dialog_request(dialog, "BYE", [("Reason", f"SIP;text={quoted(reason)}")])
        self._end_dialog(dialog)

    def in_dialog_request(self, dialog: Dialog, method: str, extra: list[tuple[str, str]],
                          on_final: Any = None) -> ClientTx:
        """Send a request of our own inside the dialog (BYE, REFER), retransmitted over UDP (Timers E, F)."""
        tx = dialog.tx
        req = tx.request
        dialog.local_cseq += 1
        branch = new_branch() + self._suffix
        target = req.get("contact") or f"<{req.uri}>"
        uri = target[target.find("<") + 1:target.find(">")] if "<" in target else target.split(";")[0]
        headers = [
            ("Via", f"SIP/2.0/{tx.peer.transport} {format_addr(tx.peer.local)};branch={branch};rport"),
            ("From", f"{req.get('to')};tag={tx.to_tag}" if tag_of(req.get("to")) is None else req.get("to") or ""),
            ("To", req.get("from") or ""),
            ("Call-ID", req.get("call-id") or ""),
            ("CSeq", f"{dialog.local_cseq} {method}"),
            ("Max-Forwards", "70"),
            *extra,
            ("Server", SERVER),
        ]
        data = serialize(f"{method} {uri} SIP/2.0", headers)
        ctx = ClientTx(branch, data, tx.peer, tx.reply_to, dialog.call_id, on_final=on_final)
        self.client_txs[branch] = ctx
        self._send_raw(data, tx.peer, tx.reply_to, req.get("call-id"), dialog.call_id, first_line=f"{method} {uri}")
        if not tx.peer.reliable:  # Timer E, until Timer F
            ctx.timers.append(self.timers.call_later(self.t1, self._retransmit_request, ctx, self.t1))
        ctx.timers.append(self._expiry.call_later(self._end_client_tx, ctx, ClientEvent.TIMEOUT))
        return ctx

    def _retransmit_request(self, ctx: ClientTx, interval: float) -> None:
        if ctx.state is not ClientState.TRYING:
            return
        self._send_raw(ctx.data, ctx.peer, ctx.to, None, ctx.call_id, note="retransmission")
        nxt = min(interval * 2, self.t2)
        ctx.timers.append(self.timers.call_later(nxt, self._retransmit_request, ctx, nxt))

    def _end_client_tx(self, ctx: ClientTx, event: ClientEvent) -> None:
        ctx.cancel_timers()
        if ctx.can(event):
            ctx.advance(event)
        self.client_txs.pop(ctx.branch, None)

    # -- sending ----------------------------------------------------------------------------
    def _send_response(self, req: SipMessage, peer: Peer, to: tuple[str, int], code: int, reason: str, *,
                       to_tag: str | None = None, extra: list[tuple[str, str]] | None = None, body: bytes = b"",
                       call_id: str | None, why: str | None = None) -> bytes:
        if call_id is not None:  # Synthflow tags its answers with its call id
            extra = [*extra, ("x-ci", call_id)] if extra else [("x-ci", call_id)]
        if self._shard:
            extra = [*(extra or ()), *self._shard]
        data, status_line = build_response(req, peer, code, reason, to_tag=to_tag, extra=extra, body=body)
        self._send_raw(data, peer, to, req.get("call-id") or None, call_id, first_line=status_line, why=why)
        return data

    def _send_raw(self, data: bytes, peer: Peer, to: tuple[str, int], sip_call_id: str | None, call_id: str | None,
                  *, first_line: str | None = None, note: str | None = None, why: str | None = None) -> None:
        ok = peer.send(data, to)
        line = first_line or data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        self._record("out", peer, data, line, call_id=call_id, sip_call_id=sip_call_id,
                     decision=note if ok else "not sent: connection closed", reason=why, to=to)
