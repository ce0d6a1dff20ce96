"""The X-EI SIP header: parse, format, diagnose, and carry it inside a SIP URI.

Grammar (the contract, also in ``contracts/x-ei.schema.json``): one or more
tokens ``(S|E|O)\\.([^;]+);`` back to back. ``S.`` is Synthflow's call id,
``E.`` an external id, ``O.`` the diversion. Synthflow's published regex
``(S|E|O).([^\\;]+);`` has an unescaped dot; the intent is a literal ``.``.

The parser is a single linear scan (no backtracking regex), so adversarial
input cannot make it slow, and the only exception it raises is
:class:`XeiError`. Strict mode differs from a plain ``re.fullmatch`` of the
grammar in four documented ways: surrounding SIP whitespace is trimmed (as a
SIP parser does), a prefix given twice is an error, a leftover ``%3B`` (the
value escaped twice) is an error, and CR, LF or NUL inside a value is an error
(a header value is one line; letting them through would allow header injection),
and a value over ``MAX_VALUE_LENGTH`` characters is an error.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

SYNTHFLOW_SIP_HOSTS = ("sip.synthflow.ai", "sip.us.synthflow.ai", "sip.eu.synthflow.ai")
"""Synthflow's SIP termination hosts (the global one first)."""

PREFIXES: dict[str, str] = {"S": "Synthflow call id", "E": "external id", "O": "diversion"}
HEADER = "X-EI"
LWS = " \t\r\n"
"""Characters a SIP parser trims around a header value."""

MAX_VALUE_LENGTH = 8192
"""Longer values are an error (and only their start is examined). Twilio's cap for all headers is 1024."""
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_FORBIDDEN_IN_VALUE = ";\r\n\x00"


class XeiError(ValueError):
    """Raised for an X-EI value that cannot be parsed strictly, or tokens that cannot be formatted."""

    def __init__(self, message: str, diagnostics: Sequence[Diagnostic] = ()) -> None:
        super().__init__(message)
        self.diagnostics = list(diagnostics)


@dataclass(frozen=True, slots=True)
class Token:
    prefix: str
    value: str

    def __str__(self) -> str:
        return f"{self.prefix}.{self.value};"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    severity: str  # "error" or "warning"
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.code}: {self.message} (hint: {self.hint})"


@dataclass
class ParseResult:
    value: str
    tokens: list[Token] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def get(self, prefix: str) -> str | None:
        """The value of the first token with ``prefix`` (``"S"`` gives the call id)."""
        return next((t.value for t in self.tokens if t.prefix == prefix), None)

    @property
    def call_id(self) -> str | None:
        return self.get("S")

    def reason(self) -> str:
        """A short reason phrase for a SIP 400 naming the first problem."""
        if self.ok:
            return "OK"
        return f"Invalid X-EI: {self.errors[0].message}"


def _lenient_or_error(strict: bool) -> str:
    return "error" if strict else "warning"


def _show(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def parse(value: str | Sequence[str], *, strict: bool = True) -> ParseResult:
    """Parse one X-EI header value (or every occurrence of the header) into tokens and diagnostics.

    Strict mode reports every deviation from the grammar as an error. Lenient
    mode accepts what a forgiving receiver would (a missing final ``;``, a
    lowercase prefix, spaces between tokens) and reports those as warnings.
    """
    if not isinstance(value, str):
        if isinstance(value, (bytes, bytearray)) or not isinstance(value, Sequence):
            raise XeiError(f"X-EI value must be text or a sequence of texts, not {type(value).__name__}")
        values = list(value)
        if not all(isinstance(v, str) for v in values):
            raise XeiError("every X-EI header value must be text")
        if not values:
            return ParseResult("", diagnostics=[Diagnostic(
                "missing-header", "error", "no X-EI header", "add X-EI: S.<synthflow_call_id>;")])
        result = parse(values[0], strict=strict)
        for extra in values[1:]:
            more = parse(extra, strict=strict)
            result.tokens.extend(more.tokens)
            result.diagnostics.extend(more.diagnostics)
        if len(values) > 1:
            result.diagnostics.insert(0, Diagnostic(
                "multiple-headers", "error", f"{len(values)} X-EI headers",
                "send one X-EI header carrying every token"))
            _check_duplicates(result)
        return result
    fast = _PLAIN_CALL_ID.fullmatch(value)
    if fast:  # the common case, S.<uuid>; and nothing else: no diagnostics possible
        return ParseResult(value, [Token("S", fast.group(1))])
    return _parse_one(value, strict)


_PLAIN_CALL_ID = re.compile(r"S\.([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12});")


class _Collector:
    """Builds diagnostics, but at most MAX_REPEATS of each code: adversarial input stays cheap."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self.counts: dict[str, int] = {}

    def add(self, code: str, severity: str, message: Callable[[], str], hint: Callable[[], str] | str) -> None:
        count = self.counts.get(code, 0) + 1
        self.counts[code] = count
        if count <= MAX_REPEATS:
            self.diagnostics.append(Diagnostic(code, severity, message(), hint() if callable(hint) else hint))

    def finish(self) -> list[Diagnostic]:
        for code, count in self.counts.items():
            if count > MAX_REPEATS:
                severity = next(d.severity for d in self.diagnostics if d.code == code)
                self.diagnostics.append(Diagnostic(code, severity, f"{count - MAX_REPEATS} more {code} problem(s)",
                                                   "fix the ones above first"))
        return self.diagnostics


_CONTROL = re.compile(r"[\r\n\x00]")


def _parse_one(value: str, strict: bool) -> ParseResult:
    result = ParseResult(value)
    text = value.strip(LWS)
    if not text:
        result.diagnostics.append(Diagnostic("empty-header", "error", "the X-EI header is empty",
                                             "send X-EI: S.<synthflow_call_id>;"))
        return result
    out = _Collector()
    if len(text) > MAX_VALUE_LENGTH:
        out.add("too-long", "error", lambda: f"the value is {len(text)} characters; at most {MAX_VALUE_LENGTH}",
                "keep X-EI short: S.<call_id>; is 39 characters (Twilio allows under 1024 for all headers)")
        text = text[:MAX_VALUE_LENGTH]  # diagnose the start only: bounded work for any input
    soft = "error" if strict else "warning"
    segments = text.split(";")
    terminated = segments[-1] == ""
    if terminated:
        segments.pop()
    last = len(segments) - 1
    tokens = result.tokens
    for index, segment in enumerate(segments):
        if index and segment[:1] in (" ", "\t"):
            stripped = segment.lstrip(LWS)
            out.add("whitespace-between-tokens", soft, lambda s=stripped: f"whitespace before {_show(s + ';')}",
                    "tokens follow each other with nothing between them")
            segment = stripped
        if index == last and not terminated:
            out.add("missing-terminator", soft, lambda s=segment: f"{_show(s)} does not end with ';'",
                    lambda s=segment: f"every token ends with ';': {_show(s + ';')}")
        if "%3" in segment and "%3b" in segment.lower():
            out.add("escaped-twice", "error",
                    lambda s=segment: f"{_show(s)} still holds '%3B': the value was URL-escaped twice",
                    "escape ';' once (as %3B) in the SIP URI; Twilio turns it back into ';'")
        control = _CONTROL.search(segment)
        if control:
            char = control.group()
            out.add("control-character", "error",
                    lambda s=segment, c=char: f"{_show(s)} holds the control character {c!r}",
                    "a SIP header value is one line: remove CR, LF and NUL")
        if not segment:
            out.add("empty-token", "error", lambda: "an empty token (';;' or a leading ';')", "remove the extra ';'")
            continue
        if segment[1:2] == ".":
            prefix, token_value = segment[0], segment[2:]
            if prefix not in PREFIXES:
                if prefix.upper() not in PREFIXES:
                    out.add("unknown-prefix", "error", lambda p=prefix: f"unknown prefix {p + '.'!r}",
                            "use S. (Synthflow call id), E. (external id) or O. (diversion)")
                    continue
                out.add("lowercase-prefix", soft, lambda p=prefix: f"prefix {p + '.'!r} is lowercase",
                        lambda p=prefix: f"prefixes are uppercase: {p.upper() + '.'!r}")
                if strict:
                    continue
                prefix = prefix.upper()
            if not token_value:
                out.add("empty-value", "error", lambda p=prefix: f"token {p + '.'!r} has an empty value",
                        lambda p=prefix: f"put the {PREFIXES[p]} after {p + '.'!r}")
                continue
            tokens.append(Token(prefix, token_value))
        elif index:
            out.add("raw-semicolon", "error",
                    lambda s=segment, prev=segments[index - 1]: (
                        f"{_show(s)} follows {_show(prev.strip(LWS) + ';')} with no prefix: "
                        "a value cannot contain a raw ';'"),
                    "remove the ';' from the value; in a SIP URI write each token's ';' as %3B")
        else:
            out.add("missing-prefix", "error", lambda s=segment: f"{_show(s)} has no prefix",
                    lambda s=segment: f"start each token with S., E. or O.: {_show('S.' + s + ';')}")
    result.diagnostics = out.finish()
    _check_duplicates(result)
    call_id = result.call_id
    if call_id is not None and not _UUID.fullmatch(call_id):
        result.diagnostics.append(Diagnostic("s-not-uuid", "warning", f"S. value {_show(call_id)} is not a UUID",
                                             "send the synthflow_call_id that prepare_inbound returned"))
    return result


MAX_REPEATS = 5
"""Diagnostics of one code kept per value; the rest are counted in one summary line."""


def _check_duplicates(result: ParseResult) -> None:
    seen: dict[str, int] = {}
    for token in result.tokens:
        seen[token.prefix] = seen.get(token.prefix, 0) + 1
    for prefix, count in seen.items():
        already = any(d.code == "duplicate-prefix" and d.message.startswith(f"prefix {prefix}.")
                      for d in result.diagnostics)
        if count > 1 and not already:
            result.diagnostics.append(Diagnostic("duplicate-prefix", "error",
                                                 f"prefix {prefix}. appears {count} times",
                                                 "send each of S., E. and O. at most once"))


def parse_strict(value: str | Sequence[str]) -> list[Token]:
    """Tokens of a strictly valid value, or :class:`XeiError` carrying every diagnostic."""
    result = parse(value, strict=True)
    if not result.ok:
        raise XeiError(result.reason(), result.diagnostics)
    return result.tokens


def format_tokens(tokens: Iterable[Token | tuple[str, str]]) -> str:
    """Format tokens into a header value, refusing anything that would not parse back to the same tokens."""
    parts = []
    seen = set()
    for item in tokens:
        token = item if isinstance(item, Token) else Token(*item)
        if token.prefix not in PREFIXES:
            raise XeiError(f"unknown prefix {token.prefix!r}: use S, E or O")
        if token.prefix in seen:
            raise XeiError(f"prefix {token.prefix}. given twice")
        seen.add(token.prefix)
        if not token.value:
            raise XeiError(f"{token.prefix}. value is empty")
        bad = next((c for c in token.value if c in _FORBIDDEN_IN_VALUE), None)
        if bad is not None:
            raise XeiError(f"{token.prefix}. value {_show(token.value)} contains {bad!r}, which cannot be in a token")
        if "%3b" in token.value.lower():
            raise XeiError(f"{token.prefix}. value {_show(token.value)} contains '%3B', which reads as escaped twice")
        parts.append(str(token))
    if not parts:
        raise XeiError("no tokens to format")
    return "".join(parts)


def format_call_id(call_id: str, **others: str) -> str:
    """``S.<call_id>;`` plus ``E.``/``O.`` tokens given as ``E=...``/``O=...``."""
    tokens = [Token("S", call_id)] + [Token(k, v) for k, v in others.items()]
    return format_tokens(tokens)


# --- X-EI inside a SIP URI (RFC 3261 §19.1.1, §25.1) -----------------------------

_HVALUE_SAFE = "-_.!~*'()[]/?:$"
"""unreserved marks + hnv-unreserved, less '+': Twilio's own examples write '+' as %2B."""


def encode_hvalue(value: str) -> str:
    """Percent-encode a SIP URI header value: ``;`` becomes ``%3B``, ``&`` ``%26``, ``=`` ``%3D``..."""
    return urllib.parse.quote(value, safe=_HVALUE_SAFE)


def decode_hvalue(value: str) -> str:
    """Decode a header value the way Twilio does before it sends the INVITE (``%XX`` only; ``+`` stays)."""
    return urllib.parse.unquote(value)


def build_sip_uri(
    number: str,
    host: str = SYNTHFLOW_SIP_HOSTS[0],
    port: int | None = 32681,
    *,
    xei: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    params: Sequence[tuple[str, str]] = (),
) -> str:
    """``sip:NUMBER@HOST:PORT[;params]?X-EI=...[&X-Other=...]``, header values percent-encoded."""
    uri = f"sip:{number}@{host}" + (f":{port}" if port else "")
    uri += "".join(f";{k}={v}" if v else f";{k}" for k, v in params)
    all_headers = ([(HEADER, xei)] if xei is not None else []) + list(headers)
    if all_headers:
        uri += "?" + "&".join(f"{name}={encode_hvalue(value)}" for name, value in all_headers)
    return uri


def uri_headers(uri: str) -> list[tuple[str, str]]:
    """The headers part of a SIP URI, decoded as Twilio turns them into SIP headers (order kept)."""
    _, sep, query = uri.partition("?")
    if not sep or not query:
        return []
    out = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        out.append((decode_hvalue(name), decode_hvalue(value)))
    return out
