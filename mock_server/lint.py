"""Lint a TwiML ``<Dial><Sip>`` URI, or a whole TwiML document, for the Synthflow flow.

Each rule yields a :class:`~mock_server.xei.Diagnostic` with a stable code, a
message naming the problem and a hint. Rules follow RFC 3261 §19.1.1/§25.1 (SIP
URI headers), Twilio's ``<Sip>`` limits (URI under 255 characters, headers
part under 1024, ``X-`` header names) and the X-EI grammar.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from mock_server import xei
from mock_server.xei import Diagnostic

SYNTHFLOW_HOSTS = xei.SYNTHFLOW_SIP_HOSTS
PORTS = {"udp": 32681, "tcp": 32681, "tls": 32682}
ALLOWED_NON_X_HEADERS = {"user-to-user", "remote-party-id", "p-preferred-identity", "p-called-party-id"}
MAX_URI = 255
MAX_HEADERS = 1024
MAX_EXAMINED = 16 * 1024
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# hvalue = *( hnv-unreserved / unreserved / escaped ), RFC 3261 §25.1
_HVALUE_CHAR = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|%[0-9A-Fa-f]{2}")
_URI = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?:(?P<user>[^@;?]*)@)?(?P<hostport>[^;?]*)(?P<params>[^?]*)"
                  r"(?:\?(?P<headers>.*))?", re.DOTALL)
_URI_PARAM_IN_VALUE = re.compile(r";(transport|region|edge|user|lr|maddr|ttl|method|secure)=?", re.IGNORECASE)


def _d(code: str, severity: str, message: str, hint: str) -> Diagnostic:
    return Diagnostic(code, severity, message, hint)


@dataclass(frozen=True)
class Target:
    """Where the URI should point: Synthflow's trunk, or the local mock standing in for it."""

    hosts: tuple[str, ...] = SYNTHFLOW_HOSTS
    ports: dict[str, int] | None = None


def lint_sip_uri(uri: str, target: Target = Target()) -> list[Diagnostic]:
    """Every problem with one ``<Sip>`` URI, errors and warnings."""
    out: list[Diagnostic] = []
    uri = uri.strip()
    if len(uri) >= MAX_URI:
        out.append(_d("uri-too-long", "error", f"the SIP URI is {len(uri)} characters; Twilio needs under {MAX_URI}",
                      "shorten the headers: keep only S.<call_id> in X-EI"))
        uri = uri[:MAX_EXAMINED]  # bounded work for any input; the length is already reported
    m = _URI.fullmatch(uri)
    if not m:
        return [*out, _d("not-a-sip-uri", "error", f"{uri[:60]!r} is not a SIP URI", "write sip:NUMBER@HOST:PORT")]
    scheme = m["scheme"]
    if scheme.lower() not in ("sip", "sips"):
        out.append(_d("bad-scheme", "error", f"scheme {scheme!r} is not sip or sips", "start the URI with sip:"))
    user = m["user"]
    if user is None or user == "":
        out.append(_d("missing-user", "error", "the URI has no user part (the number to call)",
                      "write sip:+15551234567@..."))
    elif not _E164.fullmatch(xei.decode_hvalue(user)):
        out.append(_d("user-not-e164", "warning", f"user part {user!r} is not an E.164 number",
                      "use the E.164 number, e.g. +15551234567"))
    params = _params(m["params"])
    transport = params.get("transport", "udp").lower()
    out.extend(_lint_hostport(m["hostport"], transport, target))
    headers = m["headers"]
    if headers is None:
        out.append(_d("missing-xei", "error", "the URI carries no headers, so no X-EI",
                      "append ?X-EI=S.<synthflow_call_id>%3B"))
        return out
    out.extend(_lint_headers(headers))
    return out


def _params(raw: str) -> dict[str, str]:
    out = {}
    for part in raw.split(";"):
        if part:
            name, _, value = part.partition("=")
            out[name.lower()] = value
    return out


def _lint_hostport(hostport: str, transport: str, target: Target) -> list[Diagnostic]:
    out = []
    host, _, port_text = hostport.rpartition(":") if ":" in hostport and not hostport.endswith("]") else (
        hostport, "", "")
    if not host:
        host, port_text = hostport, ""
    expected_ports = target.ports or PORTS
    expected = expected_ports.get(transport)
    if host.lower() not in target.hosts:
        out.append(_d("unexpected-host", "error", f"host {host!r} is not {' or '.join(target.hosts)}",
                      f"dial {target.hosts[0]}"))
    if not port_text:
        out.append(_d("missing-port", "error", "no port: SIP then uses 5060, where the trunk does not listen",
                      f"write {host}:{expected}"))
    elif not port_text.isdigit():
        out.append(_d("bad-port", "error", f"port {port_text!r} is not a number", f"write {host}:{expected}"))
    elif expected is not None and int(port_text) != expected:
        out.append(_d("wrong-port", "error", f"port {port_text} is not the trunk's {transport.upper()} port {expected}",
                      f"write {host}:{expected}"))
    return out


def _lint_headers(headers: str) -> list[Diagnostic]:
    out = []
    if len(headers) >= MAX_HEADERS:
        out.append(_d("headers-too-long", "error",
                      f"the headers part is {len(headers)} characters; Twilio needs under {MAX_HEADERS}",
                      "send fewer or shorter headers"))
    xei_values = []
    for pair in headers.split("&"):
        name, eq, value = pair.partition("=")
        if not eq:
            out.append(_d("header-without-value", "error", f"header {name!r} has no '='",
                          "write NAME=VALUE; a raw '&' inside a value starts a new header, write it as %26"))
            continue
        lname = name.lower()
        if lname.startswith("x-twilio"):
            out.append(_d("reserved-header", "error", f"{name!r} starts with X-Twilio, which Twilio drops",
                          "choose another X- name"))
        elif not lname.startswith("x-") and lname not in ALLOWED_NON_X_HEADERS:
            out.append(_d("header-name", "error", f"header {name!r} does not start with X- (Twilio warning 13252)",
                          f"rename it X-{name}"))
        match = _URI_PARAM_IN_VALUE.search(value)
        if match:
            out.append(_d("uri-param-after-headers", "error",
                          f"{match.group(0)!r} follows '?', so it is part of {name}'s value, not a URI parameter",
                          "put URI parameters before '?': sip:NUMBER@HOST:PORT;transport=tcp?X-EI=..."))
        raw_semicolons = value.count(";")
        if raw_semicolons:
            out.append(_d("raw-semicolon", "warning",
                          f"{name} value has {raw_semicolons} raw ';' (RFC 3261 does not allow ';' in a header value)",
                          "write ';' as %3B, e.g. X-EI=S.<id>%3B"))
        leftover = _HVALUE_CHAR.sub("", value.replace(";", ""))
        if leftover:
            out.append(_d("unescaped-characters", "error",
                          f"{name} value has characters that must be %-escaped: {''.join(sorted(set(leftover)))!r}",
                          "percent-encode them (space %20, '&' %26, '=' %3D, '%' %25)"))
        if lname == "x-ei":
            xei_values.append(xei.decode_hvalue(value))
    if not xei_values:
        out.append(_d("missing-xei", "error", "no X-EI header in the URI", "append X-EI=S.<synthflow_call_id>%3B"))
    else:
        result = xei.parse(xei_values if len(xei_values) > 1 else xei_values[0], strict=True)
        out.extend(Diagnostic(d.code, d.severity, f"X-EI: {d.message}", d.hint) for d in result.diagnostics)
        if result.ok and result.call_id is None:
            out.append(_d("missing-call-id", "error", "X-EI has no S. token, so Synthflow cannot match the call",
                          "put S.<synthflow_call_id>; in X-EI"))
    return out


_RAW_AMP = re.compile(r"&(?!amp;|lt;|gt;|quot;|apos;|#[0-9]+;|#x[0-9A-Fa-f]+;)")


def lint_twiml(document: str, target: Target = Target()) -> list[Diagnostic]:
    """Lint every ``<Dial><Sip>`` in a TwiML document."""
    try:
        root = ET.fromstring(document.strip())
    except ET.ParseError as exc:
        if _RAW_AMP.search(document):
            return [_d("xml-unescaped-ampersand", "error", "a raw '&' in the XML (between SIP URI headers?)",
                       "write '&' as '&amp;' inside TwiML")]
        return [_d("xml-invalid", "error", f"TwiML is not well-formed XML: {exc}", "check the document")]
    if root.tag != "Response":
        return [_d("no-response", "error", f"root element is <{root.tag}>, not <Response>", "wrap in <Response>")]
    dials = root.findall(".//Dial")
    sips = [(dial, sip) for dial in dials for sip in dial.findall("Sip")]
    if not sips:
        return [_d("no-dial-sip", "error", "no <Dial><Sip> in the document", "add <Dial><Sip>sip:...</Sip></Dial>")]
    out: list[Diagnostic] = []
    for dial in dials:
        count = len(dial.findall("Sip"))
        if count > 1:
            out.append(_d("several-sip", "warning", f"<Dial> has {count} <Sip> nouns",
                          "Twilio dials one <Sip> per <Dial> unless Enhanced Programmable SIP is on"))
    for _, sip in sips:
        out.extend(lint_sip_uri(sip.text or "", target))
    return out


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)
