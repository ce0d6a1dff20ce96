"""After 200 OK (issue #14): the agent's RTP reaches the caller, the caller's audio is recorded, DTMF
(RFC 4733 and SIP INFO) is heard, and the agent's actions end the call. A real UDP caller on loopback."""

from __future__ import annotations

import array
import io
import itertools
import json
import math
import socket
import time
import wave

import pytest

from mock_server.core.exchange import Request
from mock_server.media import audio, g711, rtp
from tests.contract import assert_matches
from tests.data import write_stereo_tone
from tests.sip_client import UdpClient, request
from tests.trunk import Trunk


def offer(rtp_port: int, codec: int = 0) -> str:
    name = "PCMU" if codec == 0 else "PCMA"
    return ("v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP {codec} 101\r\na=rtpmap:{codec} {name}/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n")


class Caller:
    """A SIP caller with its own RTP socket."""

    def __init__(self, trunk: Trunk, call_id: str, codec: int = 0, advertise_port: int | None = None) -> None:
        self.trunk, self.sip = trunk, UdpClient(trunk.port)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.settimeout(2)
        port = advertise_port or self.rtp.getsockname()[1]
        self.invite = request("INVITE", trunk.port, self.sip.local_port, xei=f"S.{call_id};", body=offer(port, codec),
                              call_id=f"media-{call_id[:8]}")
        self.sip.send(self.invite)
        self.ok = self.sip.recv_until(200)[-1]
        self.sip.ack_for(self.invite, self.ok)
        body = self.ok.body.decode()
        self.mock_port = int(next(line for line in body.splitlines() if line.startswith("m=audio")).split()[1])
        self.seq, self.ts, self.ssrc = 100, 1000, 0x1234

    def send_audio(self, samples, codec: int = 0, *, count: int | None = None) -> None:
        payload = g711.encode(samples, codec)
        packets = [payload[i:i + 160] for i in range(0, len(payload), 160)][:count]
        for chunk in packets:
            self.rtp.sendto(rtp.build(codec, self.seq, self.ts, self.ssrc, chunk), ("127.0.0.1", self.mock_port))
            self.seq, self.ts = self.seq + 1, self.ts + 160
            time.sleep(0.002)

    def send_digit(self, digit: str) -> None:
        event = "0123456789*#".index(digit)
        for n, end in ((0, False), (1, False), (2, True), (3, True), (4, True)):
            payload = bytes([event, (0x80 if end else 0) | 10]) + (160 * (n + 1)).to_bytes(2, "big")
            self.rtp.sendto(rtp.build(101, self.seq, self.ts, self.ssrc, payload, marker=n == 0),
                            ("127.0.0.1", self.mock_port))
            self.seq += 1
        self.ts += 800

    def receive(self, count: int) -> list[rtp.Packet]:
        return [rtp.parse(self.rtp.recvfrom(2048)[0]) for _ in range(count)]

    def bye(self) -> None:
        from mock_server.sip.message import tag_of

        self.sip.send(request("BYE", self.trunk.port, self.sip.local_port, call_id=self.ok.get("call-id"), cseq=2,
                              to_tag=tag_of(self.ok.get("to"))))
        self.sip.recv_until(200)

    def close(self) -> None:
        self.sip.close()
        self.rtp.close()


def tone(seconds: float, hz: float = 440.0) -> list[int]:
    return [int(8000 * math.sin(2 * math.pi * hz * i / 8000)) for i in range(int(8000 * seconds))]


@pytest.fixture
def trunk(tmp_path):
    made = []

    def make(**config):
        config.setdefault("media_dir", str(tmp_path / "media"))
        t = Trunk(**config)
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop()


def prepare(t: Trunk, prefer: str) -> str:
    headers = {"authorization": "Bearer t", "content-type": "application/json", "prefer": prefer}
    body = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "m"}
    resp = t.backend.handle(Request("POST", "/v2/prepare_inbound", headers, json.dumps(body).encode()))
    return json.loads(resp.body)["synthflow_call_id"]


@pytest.mark.parametrize("codec", [0, 8], ids=["PCMU", "PCMA"])
def test_the_greeting_reaches_the_caller_and_the_caller_is_recorded(trunk, codec):
    t = trunk()
    call_id = t.prepare()
    caller = Caller(t, call_id, codec)
    try:
        assert caller.mock_port != 40000 and 10000 <= caller.mock_port <= 60000
        packets = caller.receive(25)  # half a second of the agent
        assert {p.payload_type for p in packets} == {codec} and len({p.ssrc for p in packets}) == 1
        assert all(len(p.payload) == 160 for p in packets)
        assert [(b.sequence - a.sequence) & 0xFFFF for a, b in itertools.pairwise(packets)] == [1] * 24
        assert [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(packets)] == [160] * 24
        heard = g711.decode(b"".join(p.payload for p in packets), codec)
        assert audio.rms(heard) > 1000  # the greeting, not silence
        caller.send_audio(tone(1.0), codec)  # 50 packets of the caller's voice
        time.sleep(0.1)
        caller.bye()
    finally:
        caller.close()
    call = t.call(call_id)
    assert_matches("call.schema.json", call)
    assert call["recording_url"] == f"/_mock/recordings/{call_id}.wav" and call["recording_duration"] == 1.0
    assert (call["telephony_hangup"], call["telephony_disconnect_reason"]) == ("caller", "caller_hangup")
    assert call["telephony_duration"] >= 500 and 0 <= call["telephony_ringing_duration"] < 1000
    assert call["telephony_start"] < call["telephony_end"]
    media = next(e for e in call["timeline"] if e["event"] == "media")["detail"]
    assert media["received"]["packets"] == 50 and media["received"]["lost"] == 0
    assert media["codec"] == ("PCMU" if codec == 0 else "PCMA") and media["sent_packets"] >= 25
    wav = t.backend.handle(Request("GET", call["recording_url"], {}))
    assert wav.status == 200 and wav.headers["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(wav.body_bytes())) as recording:
        assert (recording.getframerate(), recording.getnchannels(), recording.getnframes()) == (8000, 1, 8000)
        samples = array.array("h", recording.readframes(8000))
    assert 4000 < audio.rms(samples) < 7000  # the 440 Hz tone at amplitude 8000: RMS ~5657
    assert t.sip.endpoint.media.ports.in_use == set()  # the port went back (t.call waited for the end)


def test_symmetric_rtp_answers_where_the_callers_media_comes_from(trunk):
    t = trunk()
    call_id = t.prepare()
    caller = Caller(t, call_id, advertise_port=9)  # the SDP names a port behind NAT; media comes from elsewhere
    real_port = caller.rtp.getsockname()[1]
    try:
        caller.send_audio(tone(0.1))
        packets = caller.receive(5)  # the agent's RTP now reaches the real source
        assert packets and packets[0].payload_type == 0
        caller.bye()
    finally:
        caller.close()
    media = next(e for e in t.call(call_id)["timeline"] if e["event"] == "media")["detail"]
    assert media["symmetric"] and media["remote"] == f"127.0.0.1:{real_port}"


@pytest.mark.parametrize("plan, loudest", [("silence", lambda rms: rms < 50), ("echo", lambda rms: rms > 3000)])
def test_media_plans(trunk, plan, loudest):
    t = trunk()
    call_id = prepare(t, f"sip=answer, media={plan}")
    caller = Caller(t, call_id)
    try:
        caller.send_audio(tone(0.2))  # 10 packets of tone, at once
        packets = caller.receive(40)  # the next 0.8 s of the agent
        levels = [audio.rms(g711.decode(p.payload, 0)) for p in packets]
        assert loudest(max(levels)), levels
        caller.bye()
    finally:
        caller.close()


def test_dtmf_by_rfc4733_and_sip_info_reach_the_timeline_once_each(trunk):
    t = trunk()
    call_id = t.prepare()
    caller = Caller(t, call_id)
    try:
        caller.send_digit("5")
        caller.send_digit("#")
        from mock_server.sip.message import tag_of

        info = request("INFO", t.port, caller.sip.local_port, call_id=caller.ok.get("call-id"), cseq=2,
                       to_tag=tag_of(caller.ok.get("to")), extra="Content-Type: application/dtmf-relay",
                       body="Signal=7\r\nDuration=160\r\n")
        caller.sip.send(info)
        assert caller.sip.recv_until(200)[-1].status == 200
        time.sleep(0.1)
        caller.bye()
    finally:
        caller.close()
    timeline = t.call(call_id)["timeline"]
    digits = [(e["detail"]["digit"], e["detail"]["via"]) for e in timeline if e["event"] == "dtmf"]
    # RTP and SIP arrive on different sockets: their relative order is the event loop's, not the sender's
    assert [d for d, via in digits if via == "rfc4733"] == ["5", "#"]
    assert [d for d, via in digits if via == "sip-info"] == ["7"] and len(digits) == 3
    assert sorted(next(e for e in timeline if e["event"] == "media")["detail"]["digits"]) == sorted("5#7")


def test_the_agent_hangs_up_on_a_digit(trunk):
    t = trunk()
    call_id = prepare(t, "sip=answer, hangup-digit=9")
    caller = Caller(t, call_id)
    try:
        caller.send_digit("1")
        caller.send_digit("9")
        messages = []
        while not any(m.method == "BYE" for m in messages):
            messages.append(caller.sip.recv(3))
    finally:
        caller.close()
    call = t.call(call_id)
    assert_matches("call.schema.json", call)
    assert call["call_status"] == "completed" and call["end_call_reason"] == "agent_ended_call"
    assert (call["telephony_hangup"], call["telephony_disconnect_reason"]) == ("callee", "callee_hangup")


def test_no_caller_rtp_ends_the_call(trunk):
    t = trunk()
    call_id = prepare(t, "sip=answer, rtp-timeout-s=1")
    caller = Caller(t, call_id)
    try:
        started = time.monotonic()
        messages = []
        while not any(m.method == "BYE" for m in messages):
            messages.append(caller.sip.recv(5))
        assert time.monotonic() - started >= 0.9
    finally:
        caller.close()
    call = t.call(call_id)
    assert_matches("call.schema.json", call)
    assert call["call_status"] == "completed" and call["end_call_reason"] == "timeout"
    assert call["telephony_hangup"] == "callee" and call["telephony_duration"] >= 900


def test_malformed_rtp_is_counted_and_dropped(trunk):
    t = trunk()
    call_id = t.prepare()
    caller = Caller(t, call_id)
    try:
        for junk in (b"", b"\x00" * 5, b"\x40" + b"\x00" * 30, rtp.build(101, 1, 1, 1, b"\x01")):
            caller.rtp.sendto(junk, ("127.0.0.1", caller.mock_port))
        caller.send_audio(tone(0.2))
        time.sleep(0.1)
        caller.bye()
    finally:
        caller.close()
    media = next(e for e in t.call(call_id)["timeline"] if e["event"] == "media")["detail"]
    assert media["bad_packets"] == 4 and media["received"]["packets"] == 10


def test_a_full_port_range_refuses_the_call_and_frees_ports_after(trunk):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1] & ~1
    probe.close()
    t = trunk(rtp_port_min=port, rtp_port_max=port + 1)  # one even port
    first = Caller(t, t.prepare())
    try:
        second = UdpClient(t.port)
        invite = request("INVITE", t.port, second.local_port, xei=f"S.{t.prepare()};", body=offer(4000))
        second.send(invite)
        refused = second.recv_until(503)[-1]
        assert refused.reason == "No Media Port Available" and "in use" in refused.get("warning")
        second.ack_for(invite, refused)
        second.close()
        first.bye()
    finally:
        first.close()
    deadline = time.monotonic() + 2  # the 200 to the BYE goes out just before the port is released
    while t.sip.endpoint.media.ports.in_use and time.monotonic() < deadline:
        time.sleep(0.01)
    assert t.sip.endpoint.media.ports.in_use == set()
    again = Caller(t, t.prepare())  # the port is free again
    again.bye()
    again.close()


def test_the_calls_pcap_opens_in_tshark_with_its_sip_dialog_and_rtp_streams(trunk, tmp_path):
    import subprocess

    from tests.binaries import require

    tshark = require("tshark", "tshark")
    t = trunk()
    call_id = t.prepare()
    caller = Caller(t, call_id)
    try:
        caller.send_audio(tone(1.0))  # 50 packets from the caller
        time.sleep(0.3)
        caller.bye()
    finally:
        caller.close()
    t.call(call_id)  # flushed
    resp = t.backend.handle(Request("GET", f"/_mock/calls/{call_id}/pcap", {}))
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/vnd.tcpdump.pcap"
    path = tmp_path / "call.pcap"
    path.write_bytes(resp.body_bytes())
    decode = ["-d", f"udp.port=={t.port},sip"]
    sip = subprocess.run([tshark, "-r", str(path), *decode, "-Y", "sip", "-T", "fields", "-e", "sip.Method",
                          "-e", "sip.Status-Code"], capture_output=True, text=True, timeout=60)
    assert sip.returncode == 0, sip.stderr
    lines = [" ".join(x for x in line.split("\t") if x) for line in sip.stdout.splitlines()]
    assert lines == ["INVITE", "100", "180", "200", "ACK", "BYE", "200"], lines
    streams = subprocess.run([tshark, "-r", str(path), *decode, "-q", "-z", "rtp,streams"], capture_output=True,
                             text=True, timeout=60)
    assert streams.returncode == 0, streams.stderr
    rows = [line.split() for line in streams.stdout.splitlines() if " g711U " in line]
    by_direction = {(int(r[3]), int(r[5])): int(r[8]) for r in rows}  # (source port, destination port): packets
    assert len(by_direction) == 2, streams.stdout  # one stream each way
    into_mock = next(n for (sport, dport), n in by_direction.items() if dport == caller.mock_port)
    out_of_mock = next(n for (sport, dport), n in by_direction.items() if sport == caller.mock_port)
    assert into_mock == 50 and out_of_mock >= 10, streams.stdout


@pytest.mark.parametrize("outcome", ["200 OK", "486 Busy Here"])
def test_transfer_plan_refers_the_caller_with_x_headers_and_follows_the_notify(tmp_path, outcome):
    from mock_server.sip.message import tag_of

    t = Trunk(media_dir=str(tmp_path / "media"), transfer_headers={"X-Transfer-Reason": "sales",
                                                                      "X-Account": "{X-Account-ID}"})
    try:
        call_id = prepare(t, "sip=transfer, transfer-after-ms=100")
        caller = UdpClient(t.port)
        invite = request("INVITE", t.port, caller.local_port, xei=f"S.{call_id};", body=offer(4002),
                         extra="X-Account-ID: acct-9", call_id="refer-me")
        caller.send(invite)
        ok = caller.recv_until(200)[-1]
        caller.ack_for(invite, ok)
        refer = caller.recv(3)
        while refer.method != "REFER":
            refer = caller.recv(3)
        assert refer.get("refer-to") == "<sip:+15550009999@transfer.synthflow-mock.invalid>"
        assert refer.get("x-transfer-reason") == "sales" and refer.get("x-account") == "acct-9"
        assert (refer.get("referred-by") or "").startswith("<sip:synthflow@")
        via = refer.get("via")
        answer = ("SIP/2.0 202 Accepted\r\nVia: {via}\r\nFrom: {f}\r\nTo: {to}\r\nCall-ID: refer-me\r\n"
                  "CSeq: {cseq}\r\nContent-Length: 0\r\n\r\n").format(via=via, f=refer.get("from"), to=refer.get("to"),
                                                                      cseq=refer.get("cseq"))
        caller.send(answer.encode())
        frag = f"SIP/2.0 {outcome}"
        caller.send(request("NOTIFY", t.port, caller.local_port, call_id="refer-me", cseq=2,
                            to_tag=tag_of(ok.get("to")), extra="Event: refer\r\nSubscription-State: terminated\r\n"
                            "Content-Type: message/sipfrag", body=frag))
        got = []
        while not any(m.method == "BYE" for m in got):
            got.append(caller.recv(3))
        assert any(m.status == 200 and (m.get("cseq") or "").endswith("NOTIFY") for m in got)
        caller.close()
        call = t.call(call_id)
        assert_matches("call.schema.json", call)
        events = [e["event"] for e in call["timeline"]]
        assert events.index("transfer-requested") < events.index("transfer-accepted")
        if outcome == "200 OK":
            assert "transferred" in events and call["call_status"] == "completed"
            assert call["end_call_reason"] == "agent_ended_call"
            assert call["telephony_disconnect_reason"] == "callee_hangup"
        else:
            assert "transfer-failed" in events and call["end_call_reason"] == "error"
    finally:
        t.stop()


def test_a_cancelled_call_matches_the_contract_with_its_end_reason(trunk):
    t = trunk()
    call_id = prepare(t, "sip=ring_forever")
    client = UdpClient(t.port)
    invite = request("INVITE", t.port, client.local_port, xei=f"S.{call_id};", body=offer(4004),
                     call_id="cancel-contract", branch="z9hG4bKcc1")
    client.send(invite)
    client.recv_until(180)
    client.send(request("CANCEL", t.port, client.local_port, call_id="cancel-contract", branch="z9hG4bKcc1",
                        cseq_method="CANCEL"))
    client.ack_for(invite, client.recv_until(487)[-1])
    client.close()
    call = t.call(call_id)
    assert_matches("call.schema.json", call)
    assert (call["call_status"], call["end_call_reason"]) == ("canceled", "user_canceled")
    assert (call["telephony_hangup"], call["telephony_disconnect_reason"], call["telephony_duration"]) == (
        "caller", "caller_hangup", 0)
    assert t.sip.endpoint.media.ports.in_use == set()


def test_agent_audio_of_another_rate_is_converted_and_spoken(trunk, tmp_path):
    path = tmp_path / "agent16k.wav"
    write_stereo_tone(path, rate=16000, hz=1000, amplitude=12000, seconds=2)
    t = trunk(agent_audio=str(path))
    caller = Caller(t, t.prepare())
    try:
        heard = g711.decode(b"".join(p.payload for p in caller.receive(25)), 0)
        assert 7000 < audio.rms(heard) < 10000  # the 1 kHz tone at amplitude 12000: RMS ~8485
        caller.bye()
    finally:
        caller.close()
