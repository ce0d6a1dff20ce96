"""Cutting a TCP or TLS byte stream into SIP messages (RFC 3261 §18.3), sans I/O.

Feed bytes in, get events out. Streams are framed by Content-Length, which is
required there: one read may hold several messages or part of one. CRLFs
before a start line are skipped, and a double-CRLF keep-alive ping asks for a
CRLF pong (RFC 5626 §3.5.1). A message that cannot be framed ends the stream:
after :class:`Unframeable` the framer takes no more bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mock_server.sip.message import SipMessage, SipParseError, content_length, find_head_end, parse_head

MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Frame:
    raw: bytes
    message: SipMessage


@dataclass(frozen=True)
class Ping:
    """A CRLFCRLF keep-alive: answer with a CRLF pong."""


@dataclass(frozen=True)
class Unframeable:
    """The stream cannot go on: answer ``code``/``reason`` (none when ``code`` is 0), then close."""

    raw: bytes
    code: int
    reason: str
    close_reason: str


Event = Frame | Ping | Unframeable


class StreamFramer:
    def __init__(self, max_message_bytes: int, max_head: int = MAX_HEAD) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_head = max_head
        self.buffer = bytearray()
        self.broken = False

    def feed(self, data: bytes) -> list[Event]:
        """Add bytes; return every event they complete, in order."""
        if self.broken:
            return []
        buf = self.buffer
        buf += data
        events: list[Event] = []
        while buf:
            skipped = len(buf) - len(buf.lstrip(b"\r\n"))
            if skipped:
                if bytes(buf[:skipped]).count(b"\r\n") >= 2:
                    events.append(Ping())
                del buf[:skipped]
                continue
            end, sep = find_head_end(buf)
            if end == -1:
                if len(buf) > self.max_head:
                    why = f"header block over {self.max_head} bytes with no end"
                    events.append(self._break(bytes(buf[:512]), 0, "", why))
                return events
            msg = SipMessage()
            try:
                parse_head(bytes(buf[:end]), msg)
                length = content_length(msg)
                if length is None:
                    raise SipParseError("Missing Content-Length Header (required over TCP)")
            except SipParseError as exc:
                events.append(self._break(bytes(buf[:end + sep]), 400, exc.reason,
                                          f"unframeable message: {exc.reason}"))
                return events
            if length > self.max_message_bytes:
                events.append(self._break(bytes(buf[:end + sep]), 513, "Message Too Large",
                                          "Content-Length over the limit"))
                return events
            total = end + sep + length
            if len(buf) < total:
                return events  # wait for the rest of the body
            raw = bytes(buf[:total])
            msg.body = raw[end + sep:]
            del buf[:total]
            events.append(Frame(raw, msg))
        return events

    def _break(self, raw: bytes, code: int, reason: str, close_reason: str) -> Unframeable:
        self.broken = True
        self.buffer.clear()
        return Unframeable(raw, code, reason, close_reason)

    def pending(self) -> bytes:
        """Bytes of a message not yet complete (for the journal when the connection closes)."""
        return bytes(self.buffer)
