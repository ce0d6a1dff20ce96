"""RTP (RFC 3550) packets, RFC 4733 telephone-events, and the receiver statistics of RFC 3550 A.8."""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("!BBHII")
DTMF_EVENTS = "0123456789*#ABCD"


class BadPacket(ValueError):
    """Not an RTP packet this endpoint can read (counted and dropped)."""


@dataclass(frozen=True, slots=True)
class Packet:
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse(data: bytes) -> Packet:
    if len(data) < 12:
        raise BadPacket(f"{len(data)} bytes: shorter than an RTP header")
    first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise BadPacket(f"RTP version {first >> 6}, not 2")
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension
        if len(data) < offset + 4:
            raise BadPacket("truncated header extension")
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data)
    if first & 0x20:  # padding: the last byte says how much
        end -= data[-1]
    if offset > end:
        raise BadPacket("header longer than the packet")
    return Packet(second & 0x7F, bool(second & 0x80), sequence, timestamp, ssrc, data[offset:end])


def build(payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return HEADER.pack(0x80, (0x80 if marker else 0) | payload_type, sequence & 0xFFFF, timestamp & 0xFFFFFFFF,
                       ssrc) + payload


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        return DTMF_EVENTS[self.event] if self.event < len(DTMF_EVENTS) else None


def parse_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < 4:
        raise BadPacket(f"telephone-event payload of {len(payload)} bytes (needs 4)")
    event, flags, duration = struct.unpack_from("!BBH", payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


class ReceiverStats:
    """Packets, loss and interarrival jitter for one source, as RFC 3550 A.1 and A.8 compute them."""

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.packets = 0
        self.bytes = 0
        self.base_seq: int | None = None
        self.max_seq = 0
        self.cycles = 0
        self.jitter = 0.0
        self._transit: float | None = None

    def add(self, packet: Packet, arrival_s: float) -> None:
        self.packets += 1
        self.bytes += len(packet.payload)
        seq = packet.sequence
        if self.base_seq is None:
            self.base_seq, self.max_seq = seq, seq
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if 0 < delta < 3000:
                if seq < self.max_seq:
                    self.cycles += 1 << 16
                self.max_seq = seq
        transit = arrival_s * self.clock_rate - packet.timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            self.jitter += (d - self.jitter) / 16
        self._transit = transit

    @property
    def expected(self) -> int:
        return 0 if self.base_seq is None else self.cycles + self.max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.packets)

    def summary(self) -> dict[str, float | int]:
        expected = self.expected
        return {"packets": self.packets, "bytes": self.bytes, "expected": expected, "lost": self.lost,
                "loss_pct": round(100 * self.lost / expected, 2) if expected else 0.0,
                "jitter_ms": round(self.jitter / self.clock_rate * 1000, 2)}
