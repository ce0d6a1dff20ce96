"""SIP message parsing and serialisation (RFC 3261 §7, §18.3, §20, §25).

Header names are case-insensitive and compact forms are expanded; folded lines
are unfolded; list-valued headers (Via, Contact, Allow...) are split on commas
outside quotes and angle brackets; every occurrence of other headers (X-EI) is
kept. Deviations that are accepted but worth telling (bare LF line ends) are
recorded on the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length", "c": "content-type",
    "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via", "o": "event", "u": "allow-events",
    "r": "refer-to", "b": "referred-by", "x": "session-expires", "y": "identity", "a": "accept-contact",
    "j": "reject-contact", "d": "request-disposition",
}
LIST_HEADERS = frozenset({
    "via", "contact", "route", "record-route", "allow", "supported", "require", "proxy-require", "unsupported",
    "accept", "accept-encoding", "accept-language", "allow-events", "in-reply-to", "warning",
})
DISPLAY = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate", "x-ei": "X-EI",
    "max-forwards": "Max-Forwards", "content-length": "Content-Length", "content-type": "Content-Type",
    "record-route": "Record-Route", "retry-after": "Retry-After",
}
KNOWN_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "SUBSCRIBE", "NOTIFY",
                           "MESSAGE", "REFER", "INFO", "UPDATE", "PRACK", "PUBLISH"})
_SLASH = re.compile(r"[ \t]*/[ \t]*")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


class SipParseError(ValueError):
    """A message that cannot be read; ``reason`` is fit for a 400 reason phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def display_name(lname: str) -> str:
    return DISPLAY.get(lname) or "-".join(part.capitalize() for part in lname.split("-"))


@dataclass
class SipMessage:
    method: str | None = None
    uri: str | None = None
    version: str = "SIP/2.0"
    status: int | None = None
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    """(lower-case canonical name, value), in arrival order; list headers split into one entry per value."""
    body: bytes = b""
    deviations: tuple[str, ...] = ()
    _index: dict[str, tuple[str, ...]] | None = field(default=None, repr=False, compare=False)
    """Values by name. Tuples, not lists: once the GC has seen them they are untracked, and so is this dict,
    so a transaction kept for Timer L costs a full collection a few objects, not fifteen."""
    _via: Via | None = field(default=None, repr=False, compare=False)
    response_base: Any = field(default=None, repr=False, compare=False)
    """Headers every response to this request copies; computed once by the UAS."""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def _by_name(self) -> dict[str, tuple[str, ...]]:
        # Built on first lookup; headers are not changed after parsing.
        if self._index is None:
            index: dict[str, tuple[str, ...]] = {}
            for key, value in self.headers:
                index[key] = (*index.get(key, ()), value)
            self._index = index
        return self._index

    def get(self, name: str) -> str | None:
        values = (self._index if self._index is not None else self._by_name()).get(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        return list(self._by_name().get(name, ()))

    @property
    def from_tag(self) -> str | None:
        return tag_of(self.get("from"))

    @property
    def to_tag(self) -> str | None:
        return tag_of(self.get("to"))

    @property
    def top_via(self) -> Via:
        """The first Via, parsed once (SipParseError when missing or malformed)."""
        if self._via is None:
            self._via = parse_via(self.get("via") or "")
        return self._via

    def first_line(self) -> str:
        if self.is_request:
            return f"{self.method} {self.uri} {self.version}"
        return f"{self.version} {self.status} {self.reason}"


def split_list(value: str) -> list[str]:
    """Split a list header on commas outside quotes and <...>."""
    if "," not in value:
        return [value.strip()]
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and not quoted and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def find_head_end(data: bytes | bytearray) -> tuple[int, int]:
    """(index where the blank line starts, length of the separator), or (-1, 0) if not complete yet."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf != -1 and (lf == -1 or crlf < lf):
        return crlf, 4
    if lf != -1:
        return lf, 2
    return -1, 0


_NAME_CACHE: dict[str, str] = {}
"""Raw header name -> canonical lower-case name; valid names only, bounded."""


def _canonical(raw_name: str) -> str:
    known = _NAME_CACHE.get(raw_name)
    if known is not None:
        return known
    lname = raw_name.strip().lower()
    if not _TOKEN.fullmatch(lname):
        raise SipParseError(f"Bad header name: {raw_name.strip()[:40]}")
    lname = COMPACT.get(lname, lname)
    if len(_NAME_CACHE) < 4096:
        _NAME_CACHE[raw_name] = lname
    return lname


def parse_head(head: bytes, msg: SipMessage) -> None:
    """Parse the start line and headers (everything before the blank line) into ``msg``."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("utf-8", "replace")
        msg.deviations += ("invalid UTF-8 in the header block",)
    if "\r\n" in text:
        if "\n" in text.replace("\r\n", ""):
            msg.deviations += ("mixed CRLF and bare LF line ends",)
            text = text.replace("\r\n", "\n")
            lines = text.split("\n")
        else:
            lines = text.split("\r\n")
    else:
        if "\n" in text:
            msg.deviations += ("bare LF line ends",)
        lines = text.split("\n")
    _parse_start_line(lines[0].strip("\r"), msg)
    header_lines = lines[1:]
    if "\n " in text or "\n\t" in text:  # folded lines (rare): unfold first
        unfolded: list[str] = []
        for line in header_lines:
            if line[:1] in (" ", "\t"):
                if not unfolded:
                    raise SipParseError("Folded line before any header")
                unfolded[-1] += " " + line.strip()
            elif line:
                unfolded.append(line)
        header_lines = unfolded
    headers = msg.headers
    index: dict[str, tuple[str, ...]] = {}
    for line in header_lines:
        colon = line.find(":")
        if colon == -1:
            if not line.strip():
                continue
            raise SipParseError(f"Header line without colon: {line[:40]}")
        lname = _canonical(line[:colon])
        value = line[colon + 1:].strip()
        values = tuple(split_list(value)) if lname in LIST_HEADERS and "," in value else (value,)
        for v in values:
            headers.append((lname, v))
        known = index.get(lname)
        index[lname] = values if known is None else known + values
    msg._index = index


def _parse_start_line(line: str, msg: SipMessage) -> None:
    if line.startswith("SIP/"):
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
            raise SipParseError("Bad status line")
        msg.version, msg.status, msg.reason = parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""
        return
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("Bad request line")
    method, uri, version = parts
    if not _TOKEN.fullmatch(method):
        raise SipParseError("Bad method")
    if ":" not in uri:
        raise SipParseError("Bad Request-URI")
    msg.method, msg.uri, msg.version = method, uri, version


def content_length(msg: SipMessage) -> int | None:
    raw = msg.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise SipParseError("Bad Content-Length")
    return int(raw)


def parse_datagram(data: bytes) -> SipMessage:
    """One UDP datagram is one message (§18.3): Content-Length cuts extra bytes, a short body is an error."""
    if not data.strip(b"\r\n \t"):
        raise SipParseError("Empty message")
    end, sep = find_head_end(data)
    msg = SipMessage()
    if end == -1:
        # A message with no body may end right after its last header line.
        stripped = data.rstrip(b"\r\n")
        if not stripped:
            raise SipParseError("Empty message")
        parse_head(stripped, msg)
        if content_length(msg):
            raise SipParseError("Content-Length larger than the message")
        return msg
    parse_head(data[:end], msg)
    body = data[end + sep:]
    length = content_length(msg)
    if length is not None:
        if len(body) < length:
            raise SipParseError("Content-Length larger than the message")
        body = body[:length]
    msg.body = bytes(body)
    return msg


# --- pieces of header values -----------------------------------------------------

def header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``main;a=b;c`` into ("main", {"a": "b", "c": ""}), ignoring ';' inside <...>."""
    close = value.find(">")
    cut = value.find(";", close + 1 if close != -1 else 0)
    if cut == -1:
        return value.strip(), {}
    params = {}
    for part in value[cut + 1:].split(";"):
        key, _, val = part.partition("=")
        if key.strip():
            params[key.strip().lower()] = val.strip()
    return value[:cut].strip(), params


_TAG = re.compile(r";\s*tag\s*=\s*([^;\s,>]+)", re.IGNORECASE)


def tag_of(value: str | None) -> str | None:
    """The ``tag`` parameter of a From/To value (outside the URI's <...>)."""
    if value is None:
        return None
    close = value.rfind(">")
    match = _TAG.search(value, close + 1 if close != -1 else 0)
    return match.group(1) if match else None


@dataclass
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str]

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host


def parse_via(value: str) -> Via:
    main, params = header_params(value)
    # sent-protocol allows whitespace around each '/' (SLASH = SWS "/" SWS, RFC 3261 §25.1)
    main = _SLASH.sub("/", main.strip())
    proto, _, sent_by = main.partition(" ")
    pieces = proto.split("/")
    if len(pieces) != 3 or pieces[0].upper() != "SIP":
        raise SipParseError("Bad Via header")
    sent_by = sent_by.strip()
    if sent_by.startswith("["):
        host, _, rest = sent_by[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = sent_by.partition(":")
    if not host or (port_text and not port_text.isdigit()):
        raise SipParseError("Bad Via sent-by")
    return Via(pieces[2].upper(), host, int(port_text) if port_text else None, params)


def parse_cseq(value: str | None) -> tuple[int, str]:
    if value is None:
        raise SipParseError("Missing CSeq header")
    number, _, method = value.strip().partition(" ")
    method = method.strip()
    if not number.isdigit() or len(number) > 10 or not method:
        raise SipParseError("Bad CSeq header")
    return int(number), method


def serialize(start_line: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    """Build a message; Content-Length is always written last among the headers, from the body."""
    lines = [start_line]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_SALVAGE = re.compile(r"^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
_SALVAGE_NAMES = {"v": "via", "f": "from", "t": "to", "i": "call-id"}


def salvage_headers(data: bytes) -> dict[str, str | None] | None:
    """The headers needed to answer a message the parser refused, if a readable Via is among them."""
    text = data[:8192].decode("utf-8", "replace")
    found: dict[str, str | None] = {"via": None, "from": None, "to": None, "call-id": None, "cseq": None}
    for name, value in _SALVAGE.findall(text):
        key = _SALVAGE_NAMES.get(name.lower(), name.lower())
        if found.get(key) is None:
            found[key] = value.strip()
    if found["via"] is None:
        return None
    try:
        parse_via(found["via"])
    except SipParseError:
        return None
    return found
