"""One answered call's media: the agent's RTP out, the caller's RTP in.

- **Out**: 20 ms packets of G.711 (the call's negotiated PCMU or PCMA) with a random SSRC, a
  sequence number and a timestamp that step by one packet and 160 samples. The media plan picks
  the audio: ``greeting`` (the greeting, then silence; the default), ``greeting-loop``, ``echo``
  (the caller's own audio back) or ``silence``. One shared 20 ms clock (:class:`Pacer`) sends for
  every session, so 200 calls cost one timer, not 200.
- **In**: symmetric RTP (RFC 4961): the first packet from the caller sets where ours go, for NAT.
  Audio is kept for the recording; RFC 4733 telephone-events become DTMF digits; RFC 3550
  statistics (packets, loss, jitter) are kept per call; anything unreadable is counted and dropped.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from mock_server.media import g711, rtp

PACKET_SAMPLES = 160
PACKET_S = 0.02
MAX_RECORDING_BYTES = 8000 * 600
"""Ten minutes of caller audio per call at most; the rest is counted, not kept."""
MEDIA_PLANS = ("greeting", "greeting-loop", "echo", "silence")
MAX_CAPTURE = 30_000
"""RTP packets kept per call for its PCAP (five minutes both ways); later ones are counted only."""

EventSink = Callable[[str, dict[str, Any]], None]


class MediaSession:
    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, port: int, *, payload_type: int,
                 event_type: int | None, remote: tuple[str, int] | None, plan: str, greeting: bytes,
                 on_event: EventSink) -> None:
        self.loop, self.sock, self.port = loop, sock, port
        self.payload_type, self.event_type = payload_type, event_type
        self.remote = remote
        self.plan = plan
        self.greeting = greeting
        self.on_event = on_event
        self.ssrc = int.from_bytes(os.urandom(4), "big")
        self.sequence = int.from_bytes(os.urandom(2), "big")
        self.timestamp = int.from_bytes(os.urandom(4), "big")
        self.silence = bytes([g711.SILENCE[payload_type]]) * PACKET_SAMPLES
        self.position = 0
        self.sending = False
        self.sent = 0
        self.recording = bytearray()
        self.recording_dropped = 0
        self.stats = rtp.ReceiverStats()
        self.bad_packets = 0
        self.latched = False
        self.last_received: float | None = None
        self.started = time.monotonic()
        self.digits: list[str] = []
        self.sources: dict[int, int] = {}
        """Audio packets received per SSRC (ours among them when the caller loops our RTP back)."""
        self._events_seen: set[int] = set()
        self._echo = bytearray()
        self.closed = False
        self.local: tuple[str, int] = sock.getsockname()[:2]
        self.capture: list[tuple[float, tuple[str, int], tuple[str, int], bytes]] = []
        """Every RTP packet in and out with its time, for the call's PCAP (bounded by MAX_CAPTURE)."""
        loop.add_reader(sock.fileno(), self._readable)

    # -- out ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Begin speaking (at the 200 OK): the pacer calls :meth:`tick` every 20 ms from now."""
        self.sending = True
        self.started = time.monotonic()

    def _next_audio(self) -> bytes:
        if self.plan == "echo":
            chunk = bytes(self._echo[:PACKET_SAMPLES])
            del self._echo[:PACKET_SAMPLES]
            return chunk.ljust(PACKET_SAMPLES, self.silence[:1]) if chunk else self.silence
        if self.plan == "silence" or not self.greeting:
            return self.silence
        if self.position >= len(self.greeting):
            if self.plan != "greeting-loop":
                return self.silence
            self.position = 0
        chunk = self.greeting[self.position:self.position + PACKET_SAMPLES]
        self.position += PACKET_SAMPLES
        return chunk.ljust(PACKET_SAMPLES, self.silence[:1])

    def tick(self) -> None:
        if not self.sending or self.remote is None:
            return
        packet = rtp.build(self.payload_type, self.sequence, self.timestamp, self.ssrc, self._next_audio(),
                           marker=self.sent == 0)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + PACKET_SAMPLES) & 0xFFFFFFFF
        try:
            self.sock.sendto(packet, self.remote)
            self.sent += 1
            if len(self.capture) < MAX_CAPTURE:
                self.capture.append((time.time(), self.local, self.remote, packet))
        except OSError:  # an ICMP unreachable from an earlier packet, a full buffer: RTP is best effort
            pass

    # -- in -------------------------------------------------------------------------------------
    def _readable(self) -> None:
        for _ in range(64):  # bounded work per wake-up
            try:
                data, addr = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._received(data, addr)

    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.monotonic()
        if len(self.capture) < MAX_CAPTURE:
            self.capture.append((time.time(), (addr[0], addr[1]), self.local, data))
        try:
            packet = rtp.parse(data)
        except rtp.BadPacket:
            self.bad_packets += 1
            return
        if not self.latched:  # symmetric RTP: answer where the caller's media really comes from
            self.remote, self.latched = (addr[0], addr[1]), True
        self.last_received = now
        if packet.payload_type == self.event_type:
            self._event(packet)
            return
        if packet.payload_type not in (0, 8):
            self.bad_packets += 1
            return
        self.sources[packet.ssrc] = self.sources.get(packet.ssrc, 0) + 1
        if packet.ssrc == self.ssrc:
            return  # our own stream looped back (an echo test): counted, not the caller's voice
        self.stats.add(packet, now)
        if len(self.recording) + len(packet.payload) <= MAX_RECORDING_BYTES:
            self.recording += packet.payload
        else:
            self.recording_dropped += len(packet.payload)
        if self.plan == "echo":
            self._echo += packet.payload
            del self._echo[:-PACKET_SAMPLES * 10]  # at most 200 ms behind

    def _event(self, packet: rtp.Packet) -> None:
        try:
            event = rtp.parse_event(packet.payload)
        except rtp.BadPacket:
            self.bad_packets += 1
            return
        # An event's end packet is sent three times (RFC 4733 2.5.1.4): one digit per event timestamp.
        if not event.end or packet.timestamp in self._events_seen or event.digit is None:
            return
        self._events_seen.add(packet.timestamp)
        self.digits.append(event.digit)
        self.on_event("dtmf", {"digit": event.digit, "via": "rfc4733", "duration_ms": event.duration // 8})

    def note_info_digit(self, digit: str) -> None:
        """A digit that came by SIP INFO instead of RTP."""
        self.digits.append(digit)

    # -- end --------------------------------------------------------------------------------------
    def close(self) -> dict[str, Any]:
        """Stop, release the socket, and sum up the media for the call's timeline."""
        if not self.closed:
            self.closed = True
            self.sending = False
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        return {"port": self.port, "codec": "PCMU" if self.payload_type == 0 else "PCMA", "plan": self.plan,
                "sent_packets": self.sent, "received": self.stats.summary(), "bad_packets": self.bad_packets,
                "remote": f"{self.remote[0]}:{self.remote[1]}" if self.remote else None,
                "symmetric": self.latched, "digits": "".join(self.digits),
                "looped_back_packets": self.sources.get(self.ssrc, 0),
                "recording_seconds": round(len(self.recording) / 8000, 2)}


class Pacer:
    """One 20 ms clock for every live session, scheduled on absolute times so it does not drift."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sessions: set[MediaSession] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0

    def add(self, session: MediaSession) -> None:
        self.sessions.add(session)
        if self._handle is None:
            self._next = self.loop.time() + PACKET_S
            self._handle = self.loop.call_at(self._next, self._tick)

    def discard(self, session: MediaSession) -> None:
        self.sessions.discard(session)

    def _tick(self) -> None:
        for session in list(self.sessions):
            session.tick()
        if not self.sessions:
            self._handle = None
            return
        self._next += PACKET_S
        now = self.loop.time()
        if self._next < now - 0.2:  # the loop was stalled: skip ahead rather than burst
            self._next = now + PACKET_S
        self._handle = self.loop.call_at(self._next, self._tick)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.sessions.clear()
