"""RFC 3261 UAS behaviour over real loopback sockets, driven by a small Python SIP client."""

from __future__ import annotations

import socket
import time

import pytest

from mock_server.core.exchange import Request
from mock_server.sip.message import parse_datagram, parse_via, tag_of
from tests.sip_client import SDP, UdpClient, request
from tests.trunk import Trunk, prepare_call


@pytest.fixture
def trunk():
    made = []

    def make(**config):
        made.append(Trunk(**config))
        return made[-1]

    yield make
    for t in made:
        t.stop()


@pytest.fixture
def client():
    made = []

    def make(port):
        made.append(UdpClient(port))
        return made[-1]

    yield make
    for c in made:
        c.close()


def hang_up(t, c, invite, ok) -> bytes:
    """Send the caller's BYE for an answered call; returns it (to resend)."""
    inv = parse_datagram(invite)
    bye = request("BYE", t.port, c.local_port, call_id=inv.get("call-id"), from_tag=tag_of(inv.get("from")),
                  to_tag=tag_of(ok.get("to")), cseq=2)
    c.send(bye)
    return bye


def full_call(t, c, call_id):
    msgs, invite = c.invite(f"S.{call_id};")
    assert [m.status for m in msgs] == [100, 180, 200]
    c.ack_for(invite, msgs[-1])
    return msgs[-1], invite


def test_response_headers_follow_rfc3261(trunk, client):
    t = trunk()
    c = client(t.port)
    call_id = t.prepare()
    msgs, invite = c.invite(f"S.{call_id};", extra="Timestamp: 54")
    trying, ringing, ok = msgs
    inv = parse_datagram(invite)
    assert tag_of(trying.get("to")) is None and trying.get("timestamp") == "54"
    assert tag_of(ringing.get("to")) == tag_of(ok.get("to")) is not None  # one To tag for the dialog
    for m in msgs:
        assert m.get("call-id") == inv.get("call-id") and m.get("cseq") == "1 INVITE"
        assert m.get("from") == inv.get("from")
        via = parse_via(m.get("via"))
        assert via.params["rport"] == str(c.local_port) and via.params["received"] == "127.0.0.1"
    assert ok.get("contact").startswith("<sip:synthflow@127.0.0.1:")
    assert ok.get("content-type") == "application/sdp" and b"m=audio" in ok.body and b"RTP/AVP 0 101" in ok.body
    assert ok.get("server").startswith("synthflow-mock/")


def test_all_vias_are_copied_in_order(trunk, client):
    t = trunk()
    c = client(t.port)
    data = request("OPTIONS", t.port, c.local_port,
                   extra="Via: SIP/2.0/UDP proxy.example.com:5060;branch=z9hG4bKp1")
    # the extra Via is a second header line: it must come back after ours
    c.send(data)
    reply = c.recv()
    assert [v.split(";")[0] for v in reply.get_all("via")] == [f"SIP/2.0/UDP 127.0.0.1:{c.local_port}",
                                                               "SIP/2.0/UDP proxy.example.com:5060"]


def test_call_lifecycle_is_visible_over_http(trunk, client):
    t = trunk()
    c = client(t.port)
    call_id = t.prepare()
    ok, invite = full_call(t, c, call_id)
    assert t.status(call_id) == "in-progress"
    hang_up(t, c, invite, ok)
    assert c.recv().status == 200
    assert t.status(call_id) == "completed"
    resp = t.backend.handle(Request("GET", f"/v2/calls/{call_id}", {"authorization": "Bearer t"}))
    call = resp.body["response"]["calls"][0]
    assert [e["event"] for e in call["timeline"]] == ["prepared", "invite", "answered", "acknowledged", "media", "bye"]
    assert call["timeline"][4]["detail"]["codec"] == "PCMU"  # the call's RTP, summed up when it ended
    assert call["duration"] == 0


def test_2xx_is_retransmitted_until_ack(trunk, client):
    t = trunk(sip_t1_ms=30)
    c = client(t.port)
    call_id = t.prepare()
    c.send(request("INVITE", t.port, c.local_port, xei=f"S.{call_id};", body=SDP))
    statuses = [c.recv().status for _ in range(5)]
    assert statuses == [100, 180, 200, 200, 200]
    assert t.status(call_id) == "ringing"


def test_non_2xx_is_retransmitted_over_udp_until_ack(trunk, client):
    t = trunk(sip_t1_ms=30)
    c = client(t.port)
    msgs, invite = c.invite(f"S.{t.prepare('failed')};")  # a prepared call: its refusal is stateful
    assert msgs[-1].status == 503
    assert c.recv().status == 503  # Timer G fired: same answer again
    c.ack_for(invite, msgs[-1])
    time.sleep(0.05)
    while not c.silent(0.15):
        pass  # drain anything sent before the ACK landed
    assert c.silent(0.3)


def test_retransmitted_invite_is_not_a_second_call(trunk, client):
    t = trunk(sip_answer_ms=300)
    c = client(t.port)
    call_id = t.prepare()
    data = request("INVITE", t.port, c.local_port, xei=f"S.{call_id};", body=SDP)
    c.send(data)
    assert [c.recv().status, c.recv().status] == [100, 180]
    c.send(data)
    assert c.recv().status == 180  # the latest provisional again, no 486
    decisions = [e["decision"] for e in t.journal() if e["direction"] == "in"]
    assert decisions == ["accepted", "retransmission"]


def test_bye_retransmission_gets_the_same_200_not_481(trunk, client):
    t = trunk()
    c = client(t.port)
    call_id = t.prepare()
    ok, invite = full_call(t, c, call_id)
    c.send(hang_up(t, c, invite, ok))
    assert [c.recv().status, c.recv().status] == [200, 200]


@pytest.mark.parametrize("method, status", [("BYE", 481), ("CANCEL", 481)])
def test_unmatched_bye_and_cancel_get_481(trunk, client, method, status):
    t = trunk()
    c = client(t.port)
    c.send(request(method, t.port, c.local_port, to_tag="nope"))
    assert c.recv().status == status


def test_options_lists_allowed_methods(trunk, client):
    t = trunk()
    c = client(t.port)
    c.send(request("OPTIONS", t.port, c.local_port))
    reply = c.recv()
    assert reply.status == 200
    assert set(reply.get_all("allow")) == {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "NOTIFY"}


@pytest.mark.parametrize("method, status", [("REGISTER", 405), ("SUBSCRIBE", 405), ("MESSAGE", 405),
                                            ("FROBNICATE", 501)])
def test_unsupported_methods(trunk, client, method, status):
    t = trunk()
    c = client(t.port)
    c.send(request(method, t.port, c.local_port))
    reply = c.recv()
    assert reply.status == status and reply.get_all("allow")


def test_other_sip_version_gets_505(trunk, client):
    t = trunk()
    c = client(t.port)
    c.send(request("OPTIONS", t.port, c.local_port).replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    assert c.recv().status == 505


@pytest.mark.parametrize("drop, phrase", [(("call-id",), "Missing Call-ID Header"), (("cseq",), "Missing CSeq Header"),
                                          (("max-forwards",), "Missing Max-Forwards Header"),
                                          (("contact",), "Missing Contact Header")])
def test_missing_mandatory_header_gets_400_naming_it(trunk, client, drop, phrase):
    t = trunk()
    c = client(t.port)
    c.send(request("INVITE", t.port, c.local_port, drop=drop, xei="S.x;"))
    reply = c.recv()
    assert (reply.status, reply.reason) == (400, phrase)


def test_cseq_method_mismatch_gets_400(trunk, client):
    t = trunk()
    c = client(t.port)
    c.send(request("OPTIONS", t.port, c.local_port, cseq_method="INVITE"))
    assert c.recv().reason == "CSeq Method Does Not Match Request"


def test_unsupported_require_gets_420(trunk, client):
    t = trunk()
    c = client(t.port)
    msgs, _ = c.invite(f"S.{t.prepare()};", extra="Require: 100rel")
    assert msgs[-1].status == 420 and msgs[-1].get("unsupported") == "100rel"


def test_no_common_codec_gets_488(trunk, client):
    t = trunk()
    c = client(t.port)
    call_id = t.prepare()
    c.send(request("INVITE", t.port, c.local_port, xei=f"S.{call_id};", body=SDP.replace("0 101", "18 101")))
    assert c.recv_until(488)[-1].status == 488


def test_used_call_gets_410(trunk, client):
    t = trunk()
    c = client(t.port)
    call_id = t.prepare()
    ok, invite = full_call(t, c, call_id)
    hang_up(t, c, invite, ok)
    assert c.recv().status == 200
    msgs, _ = c.invite(f"S.{call_id};")
    assert (msgs[-1].status, msgs[-1].reason) == (410, "Call Id Already Used")


def test_missing_xei_is_a_direct_dial_by_default_and_400_when_required(trunk, client):
    t = trunk()
    c = client(t.port)
    assert c.invite(None)[0][-1].status == 200
    strict = trunk(sip_require_xei=True)
    c2 = client(strict.port)
    final = c2.invite(None)[0][-1]
    assert (final.status, final.reason) == (400, "Missing X-EI Header")


def test_lenient_mode_accepts_a_missing_terminator(trunk, client):
    t = trunk(sip_xei_lenient=True)
    c = client(t.port)
    call_id = t.prepare()
    assert c.invite(f"S.{call_id}")[0][-1].status == 200


def test_two_xei_headers_get_400(trunk, client):
    t = trunk()
    c = client(t.port)
    final = c.invite([f"S.{t.prepare()};", "E.crm;"])[0][-1]
    assert (final.status, final.reason) == (400, "Invalid X-EI: 2 X-EI headers")
    assert "multiple-headers" in final.get("warning")


def test_ack_timeout_ends_the_call_with_a_bye(trunk, client):
    t = trunk(sip_t1_ms=10)
    c = client(t.port)
    call_id = t.prepare()
    c.send(request("INVITE", t.port, c.local_port, xei=f"S.{call_id};", body=SDP))
    bye = None
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and bye is None:
        msg = c.recv()
        if msg.method == "BYE":
            bye = msg
    assert bye is not None and "no ACK" in bye.get("reason")
    assert t.status(call_id) == "failed"


def test_garbage_is_journaled_and_the_endpoint_keeps_serving(trunk, client):
    t = trunk()
    c = client(t.port)
    for junk in (b"\x00\xff" * 50, b"hello world\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", b"INVITE\r\n\r\n"):
        c.send(junk)
    c.send(request("OPTIONS", t.port, c.local_port))
    assert c.recv().status == 200
    decisions = [e["decision"] for e in t.journal() if e["direction"] == "in"]
    assert sum(d.startswith("dropped") for d in decisions) == 3
    assert "options" in decisions


def test_salvageable_garbage_gets_400(trunk, client):
    t = trunk()
    c = client(t.port)
    data = request("OPTIONS", t.port, c.local_port) + b""
    c.send(data.replace(b"Content-Length: 0", b"Content-Length: 99"))
    reply = c.recv()
    assert (reply.status, reply.reason) == (400, "Content-Length larger than the message")


def test_oversize_datagram_gets_513(trunk, client):
    t = trunk(sip_max_message_bytes=2000)
    c = client(t.port)
    c.send(request("OPTIONS", t.port, c.local_port, extra="X-Pad: " + "a" * 3000))
    assert c.recv().status == 513


# --- TCP -----------------------------------------------------------------------------------

def tcp(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    return sock


def read_messages(sock: socket.socket, count: int, timeout: float = 2) -> list:
    sock.settimeout(timeout)
    buf, out = b"", []
    while len(out) < count:
        chunk = sock.recv(65535)
        if not chunk:
            break
        buf += chunk
        while b"\r\n\r\n" in buf:
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), b"0"))
            if len(rest) < length:
                break
            out.append(parse_datagram(head + b"\r\n\r\n" + rest[:length]))
            buf = rest[length:]
    return out


def test_tcp_several_messages_in_one_write_and_one_split_byte_by_byte(trunk):
    t = trunk()
    sock = tcp(t.port)
    port = sock.getsockname()[1]
    two = request("OPTIONS", t.port, port, transport="TCP") + request("OPTIONS", t.port, port, transport="TCP")
    sock.sendall(two)
    assert [m.status for m in read_messages(sock, 2)] == [200, 200]
    one = request("OPTIONS", t.port, port, transport="TCP")
    for i in range(len(one)):
        sock.send(one[i:i + 1])
    assert read_messages(sock, 1)[0].status == 200
    sock.close()


def test_tcp_call_with_crlf_keepalive(trunk):
    t = trunk()
    call_id = t.prepare()
    sock = tcp(t.port)
    sock.sendall(b"\r\n\r\n")
    assert sock.recv(10) == b"\r\n"  # RFC 5626 pong
    sock.sendall(request("INVITE", t.port, sock.getsockname()[1], xei=f"S.{call_id};", transport="TCP", body=SDP))
    assert [m.status for m in read_messages(sock, 3)] == [100, 180, 200]
    sock.close()


def test_tcp_without_content_length_gets_400_and_is_closed(trunk):
    t = trunk()
    sock = tcp(t.port)
    data = request("OPTIONS", t.port, sock.getsockname()[1], transport="TCP").replace(b"Content-Length: 0\r\n", b"")
    sock.sendall(data)
    reply = read_messages(sock, 1)[0]
    assert reply.status == 400 and "Content-Length" in reply.reason
    assert sock.recv(100) == b""  # closed


def test_tcp_endless_header_block_is_cut_off(trunk):
    t = trunk()
    sock = tcp(t.port)
    sock.sendall(b"OPTIONS sip:a@b SIP/2.0\r\n")
    closed = False
    try:
        for _ in range(200):
            sock.sendall(b"X-Junk: " + b"a" * 1000 + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    if not closed:
        sock.settimeout(2)
        try:
            closed = sock.recv(100) == b""
        except ConnectionResetError:
            closed = True
    assert closed
    assert any("header block over" in (e["decision"] or "") for e in t.journal())


def test_tcp_stalled_connection_times_out(trunk):
    t = trunk(sip_tcp_idle_s=0.3)
    sock = tcp(t.port)
    sock.sendall(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKx\r\n")
    sock.settimeout(3)
    assert sock.recv(100) == b""
    assert any("in the middle of a message" in (e["decision"] or "") for e in t.journal())


def test_beyond_the_transaction_cap_an_invite_gets_a_stateless_503(trunk, client):
    t = trunk(sip_max_transactions=3)
    c = client(t.port)
    answered = t.prepare()  # an answered call does not count: its transaction is over but for Timer L
    c.send(request("INVITE", t.port, c.local_port, xei=f"S.{answered};", body=SDP))
    c.recv_until(200)
    for _ in range(3):  # three calls left ringing: three transactions in progress
        ringing = prepare_call(t.backend, "sip=ring_forever")
        c.send(request("INVITE", t.port, c.local_port, xei=f"S.{ringing};", body=SDP))
        c.recv_until(180)
    refused_id = t.prepare()
    c.send(request("INVITE", t.port, c.local_port, xei=f"S.{refused_id};", body=SDP))
    refused = c.recv_until(503)[-1]
    assert refused.get("retry-after") == "5" and "Too Many Transactions" in refused.first_line()
    t.sip.flush()
    assert t.status(refused_id) == "registered"  # nothing of the refused call was kept
    entry = [e for e in t.journal() if e["decision"] and e["decision"].startswith("refused:")][-1]
    assert "3 live transactions (cap)" in entry["decision"]
