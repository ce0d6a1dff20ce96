"""A minimal SDP answer (RFC 3264/4566): PCMU or PCMA, plus telephone-event when offered."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

AUDIO_CODECS = {0: "PCMU/8000", 8: "PCMA/8000"}
_RTPMAP_EVENT = re.compile(r"^a=rtpmap:(\d+) telephone-event/8000", re.MULTILINE | re.IGNORECASE)


class NoCommonCodec(ValueError):
    pass


@dataclass(frozen=True)
class Offer:
    """What the caller's offer says about its media: the codec we pick, the telephone-event payload
    type (if offered), and where it wants RTP (``c=`` address, ``m=`` port)."""

    payload_type: int
    event_type: int | None
    address: str | None
    port: int | None


_OFFERS: dict[bytes, Offer] = {}


def read_offer(offer: bytes) -> Offer:
    """Parse an offer (cached: callers of one trunk send the same one again and again)."""
    found = _OFFERS.get(offer)
    if found is None:
        found = _read_offer(offer)
        if len(_OFFERS) > 256:
            _OFFERS.clear()
        _OFFERS[offer] = found
    return found


def _read_offer(offer: bytes) -> Offer:
    if not offer.strip():
        return Offer(0, None, None, None)
    text = offer.decode("utf-8", "replace")
    lines = text.splitlines()
    m_line = next((line for line in lines if line.startswith("m=audio ")), None)
    if m_line is None:
        raise NoCommonCodec("no m=audio line in the offer")
    parts = m_line.split()
    offered = [int(p) for p in parts[3:] if p.isdigit()]
    chosen = [pt for pt in offered if pt in AUDIO_CODECS][:1]
    if not chosen:
        raise NoCommonCodec("offer has neither PCMU (0) nor PCMA (8)")
    match = _RTPMAP_EVENT.search(text)
    event_pt = int(match.group(1)) if match and int(match.group(1)) in offered else None
    # the media-level c= wins over the session-level one
    index = lines.index(m_line)
    c_lines = [line for line in lines[index:] if line.startswith("c=")] or \
        [line for line in lines[:index] if line.startswith("c=")]
    address = c_lines[0].split()[-1].split("/")[0] if c_lines else None
    port = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return Offer(chosen[0], event_pt, address, port)


_CACHE: dict[tuple[bytes, str, int], bytes] = {}


def answer(offer: bytes, local_ip: str, media_port: int = 40000) -> bytes:
    """An answer to ``offer`` (or an offer of our own when it is empty); NoCommonCodec -> 488.

    Callers of one trunk send the same offer again and again, so answers are cached by offer.
    """
    key = (offer, local_ip, media_port)
    cached = _CACHE.get(key)
    if cached is None:
        cached = _answer(offer, local_ip, media_port)
        if len(_CACHE) > 256:
            _CACHE.clear()
        _CACHE[key] = cached
    return cached


def _answer(offer: bytes, local_ip: str, media_port: int) -> bytes:
    parsed = read_offer(offer)
    chosen, event_pt = [parsed.payload_type], parsed.event_type
    family = "IP6" if ":" in local_ip else "IP4"
    session = int(time.time())
    payloads = " ".join(str(pt) for pt in chosen + ([event_pt] if event_pt is not None else []))
    lines = [
        "v=0",
        f"o=synthflow-mock {session} {session} IN {family} {local_ip}",
        "s=synthflow-mock",
        f"c=IN {family} {local_ip}",
        "t=0 0",
        f"m=audio {media_port} RTP/AVP {payloads}",
        f"a=rtpmap:{chosen[0]} {AUDIO_CODECS[chosen[0]]}",
    ]
    if event_pt is not None:
        lines += [f"a=rtpmap:{event_pt} telephone-event/8000", f"a=fmtp:{event_pt} 0-16"]
    lines.append("a=sendrecv")
    return ("\r\n".join(lines) + "\r\n").encode()
