"""The SIP endpoint driven by SIPp over real UDP and TCP sockets on loopback."""

from __future__ import annotations

import uuid

import pytest

from tests.sip_client import UdpClient, request
from tests.sipp_helper import require_sipp, run_sipp
from tests.trunk import Trunk

pytestmark = pytest.mark.sipp
TRANSPORTS = [pytest.param("u1", id="udp"), pytest.param("t1", id="tcp")]


@pytest.fixture
def trunk_factory():
    require_sipp()
    made = []

    def make(**config):
        trunk = Trunk(sip_t1_ms=100, **config)
        made.append(trunk)
        return trunk

    yield make
    for trunk in made:
        trunk.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_registered_call_completes(trunk_factory, tmp_path, transport):
    trunk = trunk_factory()
    call_id = trunk.prepare()
    run = run_sipp("uac_call.xml", trunk.sip.port, tmp_path, rows=[[call_id, "a" * 32]], transport=transport)
    assert run.returncode == 0, run.output + run.errors
    assert run.counter("SuccessfulCall(C)") == 1
    call = trunk.call(call_id)
    assert call["call_status"] == "completed"
    assert [e["event"] for e in call["timeline"]] == ["prepared", "invite", "answered", "acknowledged", "media", "bye"]
    assert call["twilio_call_sid"] == "CA" + "a" * 32
    assert call["end_call_reason"] == "human_ended_call"
    assert trunk.ladder(call_id) == [
        "in INVITE", "out SIP/2.0 100 Trying", "out SIP/2.0 180 Ringing", "out SIP/2.0 200 OK",
        "in ACK", "in BYE", "out SIP/2.0 200 OK"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_several_calls_in_a_row(trunk_factory, tmp_path, transport):
    trunk = trunk_factory()
    ids = [trunk.prepare() for _ in range(20)]
    run = run_sipp("uac_call.xml", trunk.sip.port, tmp_path, rows=[[i, "b" * 32] for i in ids],
                   transport=transport, rate=50)
    assert run.returncode == 0, run.output + run.errors
    assert run.counter("SuccessfulCall(C)") == 20
    assert {trunk.call(i)["call_status"] for i in ids} == {"completed"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_call_id_gets_404(trunk_factory, tmp_path, transport):
    trunk = trunk_factory()
    unknown = str(uuid.uuid4())
    run = run_sipp("uac_rejected.xml", trunk.sip.port, tmp_path, keys={"expected": "404", "xei": f"S.{unknown};"},
                   transport=transport)
    assert run.returncode == 0, run.output + run.errors
    entries = trunk.journal()
    decisions = [e["decision"] for e in entries if e["direction"] == "in"]
    # answered statelessly (no call behind it): one 404, no 100, no retransmission; the ACK is dropped
    assert decisions[0] == "unknown_call" and "ACK matched nothing; dropped" in decisions
    assert [e["first_line"] for e in entries if e["direction"] == "out"] == ["SIP/2.0 404 Call Not Prepared"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("value, reason", [
    ("S.{id}", "does not end with"),
    ("s.{id};", "lowercase"),
    ("{id};", "no prefix"),
    ("S.{id};S.{id};", "appears 2 times"),
])
def test_malformed_xei_gets_400_naming_the_problem(trunk_factory, tmp_path, transport, value, reason):
    trunk = trunk_factory()
    call_id = trunk.prepare()
    run = run_sipp("uac_rejected.xml", trunk.sip.port, tmp_path,
                   keys={"expected": "400", "xei": value.format(id=call_id)}, transport=transport)
    assert run.returncode == 0, run.output + run.errors
    sent = next(e for e in trunk.journal() if e["first_line"].startswith("SIP/2.0 400"))
    assert reason in sent["first_line"]  # the reason phrase names the problem
    assert "Warning: 399 synthflow-mock" in sent["raw"]
    assert trunk.call(call_id)["call_status"] == "registered"  # a bad INVITE does not consume the call


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_before_answer_gets_487(trunk_factory, tmp_path, transport):
    trunk = trunk_factory(sip_answer_ms=5000)
    call_id = trunk.prepare()
    run = run_sipp("uac_cancel.xml", trunk.sip.port, tmp_path, rows=[[call_id]], transport=transport)
    assert run.returncode == 0, run.output + run.errors
    call = trunk.call(call_id)
    assert call["call_status"] == "canceled"
    assert [e["event"] for e in call["timeline"]][-1] == "canceled"


def test_failed_call_gets_503_and_busy_call_486(trunk_factory, tmp_path):
    trunk = trunk_factory(sip_answer_ms=5000)
    failed = trunk.prepare("failed")
    run = run_sipp("uac_rejected.xml", trunk.sip.port, tmp_path, keys={"expected": "503", "xei": f"S.{failed};"})
    assert run.returncode == 0, run.output + run.errors
    busy = trunk.prepare()
    first = UdpClient(trunk.sip.port)  # rings for 5 s: its call is active
    first.send(request("INVITE", trunk.sip.port, first.local_port, xei=f"S.{busy};"))
    assert [first.recv().status, first.recv().status] == [100, 180]
    run = run_sipp("uac_rejected.xml", trunk.sip.port, tmp_path, keys={"expected": "486", "xei": f"S.{busy};"})
    assert run.returncode == 0, run.output + run.errors
    first.close()


def test_codes_are_configurable(trunk_factory, tmp_path):
    trunk = trunk_factory(sip_codes={"unknown_call": 480})
    run = run_sipp("uac_rejected.xml", trunk.sip.port, tmp_path,
                   keys={"expected": "480", "xei": f"S.{uuid.uuid4()};"})
    assert run.returncode == 0, run.output + run.errors


def test_sipp_caller_with_rtp_and_dtmf_pcaps(trunk_factory, tmp_path):
    """SIPp plays Debian's g711a.pcap and dtmf_2833_5.pcap at the mock, and echoes the mock's RTP back
    (-rtp_echo) from the port its SDP offered: the mock hears its own stream, so its RTP reached the caller."""
    from mock_server.core.exchange import Request
    from mock_server.media import audio

    trunk = trunk_factory(media_dir=str(tmp_path / "media"))
    call_id = trunk.prepare()
    media_port = free_udp_port_pair()
    run = run_sipp("uac_media.xml", trunk.sip.port, tmp_path, rows=[[call_id]], timeout_s=40,
                   extra=["-mi", "127.0.0.1", "-mp", str(media_port), "-rtp_echo"])
    assert run.returncode == 0, run.output + run.errors
    call = trunk.call(call_id)
    media = next(e for e in call["timeline"] if e["event"] == "media")["detail"]
    assert media["remote"] == f"127.0.0.1:{media_port}" and media["codec"] == "PCMA"
    assert media["looped_back_packets"] > 100  # the mock's own RTP, echoed by SIPp from its SDP port
    assert media["received"]["packets"] == 236 and media["received"]["lost"] == 0  # g711a.pcap
    assert [e["detail"]["digit"] for e in call["timeline"] if e["event"] == "dtmf"] == ["5"]
    assert call["recording_duration"] == 7.08  # 236 packets of 240 samples (30 ms): the pcap's 7.05 s of speech
    wav = trunk.backend.handle(Request("GET", call["recording_url"], {}))
    path = tmp_path / "got.wav"
    path.write_bytes(wav.body_bytes())
    assert audio.rms(audio.read_wav(path)) > 500  # a voice, not silence


def free_udp_port_pair() -> int:
    import socket

    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1] & ~1
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 2))
            return port
        except OSError:
            continue
