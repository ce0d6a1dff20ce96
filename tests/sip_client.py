"""A small SIP client over real sockets, for protocol tests SIPp cannot express compactly."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

from mock_server.sip.message import SipMessage, parse_datagram, tag_of


def request(method: str, port: int, local_port: int, *, call_id: str = "", branch: str = "", from_tag: str = "ft",
            to_tag: str | None = None, cseq: int = 1, cseq_method: str | None = None,
            xei: str | list[str] | None = None, transport: str = "UDP", extra: str = "", body: str = "",
            drop: tuple[str, ...] = ()) -> bytes:
    """Build a request; ``drop`` leaves out mandatory headers by name (lower case)."""
    branch = branch or "z9hG4bK" + os.urandom(6).hex()
    call_id = call_id or os.urandom(6).hex()
    lines = [f"{method} sip:+15551234567@127.0.0.1:{port} SIP/2.0"]
    headers = {
        "via": f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch={branch};rport",
        "from": f"From: <sip:+15075785607@127.0.0.1>;tag={from_tag}",
        "to": "To: <sip:+15551234567@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
        "call-id": f"Call-ID: {call_id}",
        "cseq": f"CSeq: {cseq} {cseq_method or method}",
        "contact": f"Contact: <sip:client@127.0.0.1:{local_port}>",
        "max-forwards": "Max-Forwards: 70",
    }
    lines += [v for k, v in headers.items() if k not in drop]
    for value in [xei] if isinstance(xei, str) else (xei or []):
        lines.append(f"X-EI: {value}")
    if extra:
        lines.append(extra.rstrip("\r\n"))
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


@dataclass
class UdpClient:
    port: int
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2)

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", self.port))

    def recv(self, timeout: float = 2) -> SipMessage:
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(65535)
        return parse_datagram(data)

    def recv_until(self, status: int, timeout: float = 3) -> list[SipMessage]:
        got: list[SipMessage] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.recv(max(0.05, deadline - time.monotonic()))
            got.append(msg)
            if msg.status == status:
                return got
        raise TimeoutError(f"no {status}; got {[m.status for m in got]}")

    def silent(self, timeout: float = 0.3) -> bool:
        self.sock.settimeout(timeout)
        try:
            self.sock.recvfrom(65535)
        except TimeoutError:
            return True
        return False

    def invite(self, xei: str | list[str] | None, **kw: object) -> tuple[list[SipMessage], bytes]:
        data = request("INVITE", self.port, self.local_port, xei=xei, body=SDP, **kw)  # type: ignore[arg-type]
        self.send(data)
        final = []
        while True:
            msg = self.recv()
            final.append(msg)
            if (msg.status or 0) >= 200:
                return final, data

    def ack_for(self, invite: bytes, final: SipMessage) -> None:
        """ACK a final answer: same branch for a non-2xx, a new one for a 2xx."""
        inv = parse_datagram(invite)
        via_branch = inv.get("via").split("branch=")[1].split(";")[0]  # type: ignore[union-attr]
        self.send(request("ACK", self.port, self.local_port, call_id=inv.get("call-id") or "",
                          branch=via_branch if (final.status or 0) >= 300 else "",
                          from_tag=tag_of(inv.get("from")) or "", to_tag=tag_of(final.get("to"))))

    def close(self) -> None:
        self.sock.close()


SDP = ("v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
