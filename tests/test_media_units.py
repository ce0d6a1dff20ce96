"""G.711, RTP packets, telephone-events and RFC 3550 statistics (issue #14's building blocks)."""

from __future__ import annotations

import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mock_server.media import audio, g711, rtp
from tests.data import write_stereo_tone


@pytest.mark.parametrize("pt", [0, 8])
def test_g711_round_trip_keeps_every_code(pt):
    table = g711.decode_table(pt)
    assert g711.encode(array.array("h", table), pt) == bytes(range(256)) or pt == 0  # µ-law has two zeros
    for code in range(256):
        again = g711.encode([table[code]], pt)[0]
        assert table[again] == table[code]


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=50), st.sampled_from([0, 8]))
def test_g711_error_is_within_a_quantisation_step(samples, pt):
    decoded = g711.decode(g711.encode(samples, pt), pt)
    for original, back in zip(samples, decoded, strict=True):
        assert abs(original - back) <= max(1024, abs(original) // 16 + 128)


def test_silence_bytes_decode_to_near_zero():
    assert abs(g711.decode_table(0)[g711.SILENCE[0]]) <= 8 and abs(g711.decode_table(8)[g711.SILENCE[8]]) <= 8


@given(st.integers(0, 127), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.binary(max_size=200), st.booleans())
def test_rtp_build_and_parse(pt, seq, ts, ssrc, payload, marker):
    packet = rtp.parse(rtp.build(pt, seq, ts, ssrc, payload, marker))
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc, packet.payload, packet.marker) == (
        pt, seq, ts, ssrc, payload, marker)


@pytest.mark.parametrize("data", [b"", b"\x80" * 5, b"\x40" + b"\x00" * 20, b"\x90\x00" + b"\x00" * 10 + b"\x00\x00"])
def test_malformed_rtp_is_refused(data):
    with pytest.raises(rtp.BadPacket):
        rtp.parse(data)


def test_telephone_event():
    event = rtp.parse_event(bytes([5, 0x80 | 10, 0x03, 0x20]))
    assert (event.digit, event.end, event.volume, event.duration) == ("5", True, 10, 800)
    assert rtp.parse_event(bytes([11, 0, 0, 0])).digit == "#"
    with pytest.raises(rtp.BadPacket):
        rtp.parse_event(b"\x01")


def test_receiver_stats_count_loss_and_jitter():
    stats = rtp.ReceiverStats()
    for n in range(100):
        if n in (10, 11, 50):
            continue  # three lost
        jitter_s = 0.005 if n % 2 else 0.0
        stats.add(rtp.Packet(0, False, (65500 + n) & 0xFFFF, n * 160, 1, b"x" * 160), n * 0.02 + jitter_s)
    summary = stats.summary()
    assert summary["packets"] == 97 and summary["expected"] == 100 and summary["lost"] == 3
    assert summary["loss_pct"] == 3.0
    assert 3.0 < summary["jitter_ms"] < 6.0  # alternating 5 ms delays


def test_wav_of_any_common_rate_converts_to_8khz_mono(tmp_path):
    path = tmp_path / "stereo48k.wav"
    write_stereo_tone(path, rate=48000, hz=440, amplitude=10000, seconds=1)
    samples = audio.read_wav(path)
    assert len(samples) == 8000 and 6000 < audio.rms(samples) < 8000
    with pytest.raises(audio.AudioError):
        audio.read_wav(tmp_path / "missing.wav")


def test_the_shipped_greeting_is_not_silent():
    greeting = audio.greeting()
    assert len(greeting) >= 8000 and audio.rms(greeting) > 1000
