"""A small blocking SIP UAC: places one call the way Twilio does (INVITE, ACK, hold, BYE).

Plain sockets, no asyncio, so it also runs under gevent (the Locust SIP user).
Retransmits the INVITE and BYE over UDP on T1 doubling (RFC 3261 §17.1.1.2).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from mock_server.sip.common import new_branch, random_token
from mock_server.sip.message import SipMessage, SipParseError, find_head_end, parse_datagram, parse_head, tag_of

SDP_OFFER = ("v=0\r\no=twilio 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
             "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
             "a=fmtp:101 0-16\r\na=sendrecv\r\n")


@dataclass
class Step:
    name: str
    ms: float
    status: int | None = None
    reason: str | None = None


@dataclass
class CallResult:
    """What happened to one call: the final answer to the INVITE and the timed steps."""

    final: SipMessage | None = None
    steps: list[Step] = field(default_factory=list)
    bye_status: int | None = None
    error: str | None = None
    ended_by: str | None = None
    """``caller`` (our BYE) or ``callee`` (the far end sent BYE during the hold)."""

    @property
    def answered(self) -> bool:
        return self.final is not None and self.final.status == 200


class _Transport:
    def __init__(self, host: str, port: int, transport: str, timeout: float) -> None:
        self.kind = transport.upper()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.peer = (host, port)
        if self.kind == "UDP":
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0) if host in (
                "127.0.0.1", "::1", "localhost") else ("", 0))
        else:
            self.sock = socket.create_connection(self.peer, timeout=timeout)
        self.sock.settimeout(timeout)
        self.buffer = b""

    @property
    def local(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def send(self, data: bytes) -> None:
        if self.kind == "UDP":
            self.sock.sendto(data, self.peer)
        else:
            self.sock.sendall(data)

    def recv(self, timeout: float) -> SipMessage:
        self.sock.settimeout(max(0.001, timeout))
        if self.kind == "UDP":
            data, _ = self.sock.recvfrom(65535)
            return parse_datagram(data)
        while True:
            end, sep = find_head_end(self.buffer)
            if end != -1:
                msg = SipMessage()
                parse_head(self.buffer[:end], msg)
                length = int(msg.get("content-length") or 0)
                total = end + sep + length
                if len(self.buffer) >= total:
                    msg.body = self.buffer[end + sep:total]
                    self.buffer = self.buffer[total:]
                    return msg
            chunk = self.sock.recv(65535)
            if not chunk:
                raise ConnectionError("the SIP peer closed the connection")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


class SipCaller:
    """Places calls to one SIP target (host, port, transport)."""

    def __init__(self, host: str, port: int, transport: str = "udp", *, t1: float = 0.5, timeout: float = 10.0):
        self.host, self.port, self.transport = host, port, transport.upper()
        self.t1, self.timeout = t1, timeout

    def call(self, uri: str, headers: list[tuple[str, str]], *, from_number: str = "+15075785607",
             hold_s: float = 0.5) -> CallResult:
        """INVITE ``uri`` with extra ``headers``; on 200: ACK, hold, BYE. Other finals are ACKed."""
        result = CallResult()
        conn = _Transport(self.host, self.port, self.transport, self.timeout)
        try:
            self._call(conn, uri, headers, from_number, hold_s, result)
        except (OSError, TimeoutError, SipParseError, ConnectionError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        return result

    def _request(self, conn: _Transport, method: str, uri: str, *, branch: str, call_id: str, from_tag: str,
                 to: str, cseq: int, from_number: str, extra: list[tuple[str, str]], body: str = "") -> bytes:
        host, port = conn.local
        sent_by = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"{method} {uri} SIP/2.0",
                 f"Via: SIP/2.0/{conn.kind} {sent_by};branch={branch};rport",
                 f"From: <sip:{from_number}@{sent_by}>;tag={from_tag}",
                 f"To: {to}",
                 f"Call-ID: {call_id}",
                 f"CSeq: {cseq} {method}",
                 f"Contact: <sip:twilio@{sent_by};transport={conn.kind.lower()}>",
                 "Max-Forwards: 70",
                 "User-Agent: synthflow-mock Twilio simulator"]
        lines += [f"{name}: {value}" for name, value in extra]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def _transact(self, conn: _Transport, data: bytes, call_id: str, cseq_method: str,
                  result: CallResult, label: str) -> SipMessage:
        """Send, retransmit over UDP, and return the final response (1xx are noted as steps)."""
        start = time.monotonic()
        deadline = start + self.timeout
        interval = self.t1
        next_send = start
        provisional = False
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(f"no final answer to {label} in {self.timeout:g} s")
            if now >= next_send and (conn.kind == "UDP" or next_send == start) and not (
                    provisional and cseq_method == "INVITE"):
                conn.send(data)
                next_send = now + interval
                interval = min(interval * 2, 4.0)
            try:
                msg = conn.recv(min(deadline, next_send) - time.monotonic())
            except TimeoutError:
                continue
            if msg.status is None or msg.get("call-id") != call_id or not (msg.get("cseq") or "").endswith(
                    cseq_method):
                continue  # a request from the far end, or another call's answer
            elapsed = (time.monotonic() - start) * 1000
            if msg.status is not None and msg.status < 200:
                provisional = True
                result.steps.append(Step(f"{label} -> {msg.status}", elapsed, msg.status, msg.reason))
                continue
            result.steps.append(Step(f"{label} -> {msg.status}", elapsed, msg.status, msg.reason))
            return msg

    def _call(self, conn: _Transport, uri: str, headers: list[tuple[str, str]], from_number: str, hold_s: float,
              result: CallResult) -> None:
        call_id, from_tag, branch = f"{random_token()}@synthflow-mock", random_token(4), new_branch()
        to = f"<{uri.split('?')[0]}>"
        offer = SDP_OFFER.format(ip=conn.local[0])
        invite = self._request(conn, "INVITE", uri.split("?")[0], branch=branch, call_id=call_id, from_tag=from_tag,
                               to=to, cseq=1, from_number=from_number, extra=headers, body=offer)
        final = self._transact(conn, invite, call_id, "INVITE", result, "INVITE")
        result.final = final
        to_tagged = final.get("to") or to
        target = uri.split("?")[0]
        # the ACK of a 2xx is a new transaction; the ACK of a non-2xx reuses the INVITE's branch
        ack_branch = new_branch() if final.status == 200 else branch
        conn.send(self._request(conn, "ACK", target, branch=ack_branch, call_id=call_id, from_tag=from_tag,
                                to=to_tagged, cseq=1, from_number=from_number, extra=[]))
        if final.status != 200:
            return
        if self._hold(conn, call_id, hold_s, result):
            return
        bye = self._request(conn, "BYE", target, branch=new_branch(), call_id=call_id, from_tag=from_tag,
                            to=to_tagged, cseq=2, from_number=from_number, extra=[])
        answer = self._transact(conn, bye, call_id, "BYE", result, "BYE")
        result.bye_status = answer.status
        result.ended_by = "caller"
        if tag_of(to_tagged) is None:
            result.error = "the 200 OK had no To tag"

    def _hold(self, conn: _Transport, call_id: str, hold_s: float, result: CallResult) -> bool:
        """Stay in the call for ``hold_s``; True when the far end hung up first (its BYE is answered 200)."""
        start = time.monotonic()
        end = start + hold_s
        while (left := end - time.monotonic()) > 0:
            try:
                msg = conn.recv(left)
            except TimeoutError:
                break
            if msg.method != "BYE" or msg.get("call-id") != call_id:
                continue  # a retransmitted 200 OK, say
            lines = ["SIP/2.0 200 OK", *(f"Via: {v}" for v in msg.get_all("via")), f"From: {msg.get('from')}",
                     f"To: {msg.get('to')}", f"Call-ID: {call_id}", f"CSeq: {msg.get('cseq')}", "Content-Length: 0"]
            conn.send(("\r\n".join(lines) + "\r\n\r\n").encode())
            result.steps.append(Step("BYE <- far end", (time.monotonic() - start) * 1000, 200, "OK"))
            result.bye_status, result.ended_by = 200, "callee"
            return True
        return False
