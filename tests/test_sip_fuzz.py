"""Hypothesis throws raw datagrams and TCP streams at a live endpoint: it never stops serving,
and every request it can parse gets an answer."""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mock_server import MockConfig
from mock_server.core.backend import Backend
from mock_server.sip.message import SipParseError, parse_datagram, parse_via
from mock_server.sip.runner import SipThread
from tests.sip_client import UdpClient, request


@pytest.fixture(scope="module")
def endpoint():
    config = MockConfig(sip_port=0, sip_t1_ms=20, sip_tcp_idle_s=1.0)
    backend = Backend(config)
    sip = SipThread(backend.store, config, port=0).start()
    client = UdpClient(sip.port)
    yield sip, client
    client.close()
    sip.stop()


def still_serving(sip, client) -> None:
    client.send(request("OPTIONS", sip.port, client.local_port, call_id="probe"))
    for _ in range(50):  # skip answers to earlier fuzz datagrams
        reply = client.recv(2)
        if reply.get("call-id") == "probe":
            assert reply.status == 200
            return
    raise AssertionError("no answer to the probe")


VALID = st.sampled_from(["OPTIONS", "INVITE", "BYE", "CANCEL", "ACK", "REGISTER", "FOO"]).map(
    lambda m: request(m, 5060, 5070, xei="S.x;"))


@st.composite
def mutated(draw):
    data = bytearray(draw(VALID))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i:i + draw(st.integers(1, 40))]
        elif op == "insert":
            data[i:i] = draw(st.sampled_from([b"\r\n", b":", b";", b" ", b"\x00", b"Content-Length: 9\r\n", b","]))
        else:
            data[i:i] = data[i:i + draw(st.integers(1, 60))]
    return bytes(data)


def answers_to_source(msg) -> bool:
    """RFC 3581: with rport the answer goes back to the source; an unreadable Via falls back to it too."""
    try:
        return "rport" in parse_via(msg.get("via")).params
    except SipParseError:
        return True


def parseable_request(data: bytes) -> bool:
    try:
        msg = parse_datagram(data)
    except SipParseError:
        return False
    return msg.is_request and msg.method != "ACK" and msg.get("via") is not None


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.binary(max_size=600), mutated()))
def test_datagrams_never_stop_the_endpoint(endpoint, data):
    sip, client = endpoint
    fuzz = UdpClient(sip.port)
    try:
        fuzz.send(data)
        # every parseable request is answered (to this socket unless its Via names another port)
        if parseable_request(data) and answers_to_source(parse_datagram(data)):
            reply = fuzz.recv(2)
            assert reply.status is not None and 100 <= reply.status < 700
    finally:
        fuzz.close()
    still_serving(sip, client)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(VALID, min_size=1, max_size=4), st.lists(st.integers(1, 50), min_size=1, max_size=20),
       st.one_of(st.none(), st.binary(max_size=200)))
def test_tcp_streams_in_any_chunking_are_all_answered(endpoint, messages, cuts, trailing_junk):
    sip, client = endpoint
    stream = b"".join(m.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP") for m in messages)
    expected = sum(1 for m in messages if not m.startswith(b"ACK "))
    sock = socket.create_connection(("127.0.0.1", sip.port), timeout=3)
    try:
        pos = 0
        for cut in cuts:
            sock.sendall(stream[pos:pos + cut])
            pos += cut
        sock.sendall(stream[pos:])
        finals = 0
        buf = b""
        while finals < expected:
            chunk = sock.recv(65535)
            assert chunk, f"connection closed after {finals} of {expected} answers"
            buf += chunk
            # status lines only (they start a message); 1xx are provisional
            finals = sum(1 for line in buf.split(b"\r\n")
                         if line.startswith(b"SIP/2.0 ") and line[8:9] in b"23456")
        if trailing_junk:
            sock.sendall(trailing_junk)
    finally:
        sock.close()
    still_serving(sip, client)
