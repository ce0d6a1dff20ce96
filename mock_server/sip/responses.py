"""Building responses to a request (RFC 3261 §8.2.6 and §18.2.2, RFC 3581), sans I/O."""

from __future__ import annotations

import re

from mock_server import __version__
from mock_server.sip.common import reason_phrase
from mock_server.sip.message import SipMessage, SipParseError, Via, serialize, tag_of
from mock_server.sip.peer import Peer

SERVER = f"synthflow-mock/{__version__}"


def reply_address(msg: SipMessage, peer: Peer) -> tuple[str, int]:
    """Where a response goes: the source for rport or streams, else the Via's port at the source address."""
    if peer.reliable:
        return peer.remote
    via = msg.top_via
    if "rport" in via.params:
        return peer.remote
    return (peer.remote[0], via.port or 5060)


def build_response(req: SipMessage, peer: Peer, code: int, reason: str, *, to_tag: str | None = None,
                   extra: list[tuple[str, str]] | None = None, body: bytes = b"") -> tuple[bytes, str]:
    """The response's bytes and its status line."""
    before_to, after_to, to_value, tagged = _response_base(req, peer)
    if to_tag and not tagged and to_value:
        to_value += f";tag={to_tag}"
    headers = [*before_to, ("To", to_value), *after_to] if to_value else [*before_to, *after_to]
    if code == 100 and req.get("timestamp"):
        headers.append(("Timestamp", req.get("timestamp") or ""))
    headers.append(("Server", SERVER))
    if extra:
        headers.extend(extra)
    status_line = f"SIP/2.0 {code} {reason_phrase(reason)}"
    return serialize(status_line, headers, body), status_line


def _response_base(req: SipMessage, peer: Peer) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...],
                                                         str, bool]:
    """The headers every response to ``req`` copies, computed once per request (tuples: a request kept for
    Timer L then costs the garbage collector nothing for them)."""
    if req.response_base is None:
        before: list[tuple[str, str]] = []
        vias = req.get_all("via")
        if vias:
            before.append(("Via", stamp_via(req, vias[0], peer)))
            before.extend(("Via", via) for via in vias[1:])
        if req.get("from"):
            before.append(("From", req.get("from") or ""))
        after = [(name, req.get(key) or "") for name, key in (("Call-ID", "call-id"), ("CSeq", "cseq"))
                 if req.get(key)]
        to_value = req.get("to") or ""
        req.response_base = (tuple(before), tuple(after), to_value, tag_of(to_value) is not None)
    return req.response_base


def stamp_via(msg: SipMessage, value: str, peer: Peer) -> str:
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
