"""The SIP endpoint's media desk: opens a session per answered call, paces them, and writes each
caller's recording as WAV where the HTTP side serves it (``/_mock/recordings/<call_id>.wav``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
from typing import Any

from mock_server import metrics
from mock_server.core.config import MockConfig
from mock_server.media import audio, g711, pcap
from mock_server.media.ports import PortRange
from mock_server.media.session import EventSink, MediaSession, Pacer
from mock_server.redis_store.urls import is_redis_url
from mock_server.sip.sdp import Offer

RECORDING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}\.wav$")


def recordings_dir(config: MockConfig) -> str:
    """Where recordings live: ``--media-dir``, else beside the store file, else a per-process temp dir."""
    if config.media_dir:
        return config.media_dir
    if _store_is_a_file(config):
        return config.store_path + ".media"
    return os.path.join(tempfile.gettempdir(), f"synthflow-mock-media-{os.getpid()}")


def _store_is_a_file(config: MockConfig) -> bool:
    return config.store_path != ":memory:" and not is_redis_url(config.store_path)


class Media:
    def __init__(self, loop: asyncio.AbstractEventLoop, config: MockConfig) -> None:
        self.loop, self.config = loop, config
        self.ports = PortRange(config.rtp_port_min, config.rtp_port_max)
        if config.sip_workers > 1:  # shards share the range: each starts its round-robin in its own part
            self.ports.skip_to(config.sip_shard * self.ports.size // config.sip_workers)
        self.pacer = Pacer(loop)
        self._samples = audio.read_wav(config.agent_audio) if config.agent_audio else audio.greeting()
        self._greeting: dict[int, bytes] = {}
        """The greeting encoded per payload type, on the first call that needs it (not at start-up)."""
        self.dir = recordings_dir(config)
        self._made_dir = False

    def open(self, host: str, offer: Offer, plan: str, on_event: EventSink) -> MediaSession:
        """A session on a fresh port (``NoMediaPort`` when the range is full)."""
        sock, port = self.ports.open(host)
        remote = (offer.address, offer.port) if offer.address and offer.port else None
        return MediaSession(self.loop, sock, port, payload_type=offer.payload_type, event_type=offer.event_type,
                            remote=remote, plan=plan, greeting=self._encoded(offer.payload_type), on_event=on_event)

    def _encoded(self, payload_type: int) -> bytes:
        found = self._greeting.get(payload_type)
        if found is None:
            found = self._greeting[payload_type] = g711.encode(self._samples, payload_type)
        return found

    def start(self, session: MediaSession) -> None:
        session.start()
        self.pacer.add(session)

    def close(self, session: MediaSession, call_id: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """End a session: (its summary for the timeline, call-object fields for its recording)."""
        self.pacer.discard(session)
        summary = session.close()
        metrics.RTP_PACKETS.labels("out").inc(session.sent)
        metrics.RTP_PACKETS.labels("in").inc(session.stats.packets)
        metrics.RTP_LOST.inc(session.stats.lost)
        self.ports.release(session.port)
        fields: dict[str, Any] = {}
        if not call_id or not RECORDING_NAME.match(f"{call_id}.wav"):
            return summary, fields  # a direct dial has no call to file its media under
        try:
            if session.capture or session.recording:
                self._ensure_dir()
            if session.capture:
                with open(os.path.join(self.dir, f"{call_id}.rtp.pcap"), "wb") as f:
                    f.write(pcap.write(session.capture))
            if session.recording:
                pcm = g711.decode_to_pcm16le(bytes(session.recording), session.payload_type)
                audio.write_pcm16(os.path.join(self.dir, f"{call_id}.wav"), pcm)
                fields = {"recording_url": f"/_mock/recordings/{call_id}.wav",
                          "recording_duration": round(len(session.recording) / audio.RATE, 2)}
        except OSError as exc:
            summary["media_files_error"] = f"{type(exc).__name__}: {exc}"
        return summary, fields

    def _ensure_dir(self) -> None:
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, exist_ok=True)
            self._made_dir = not self.config.media_dir and not _store_is_a_file(self.config)

    def shutdown(self) -> None:
        self.pacer.close()
        if self._made_dir:  # a temporary directory of our own: leave nothing behind
            with contextlib.suppress(OSError):
                shutil.rmtree(self.dir)
