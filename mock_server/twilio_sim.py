"""Play Twilio against an integrator's webhook, end to end, and say which step broke.

1. POST (or GET) Twilio's voice-webhook parameters to the webhook, signed with
   ``X-Twilio-Signature`` when an auth token is given;
2. check the mock saw ``prepare_inbound`` while the webhook ran;
3. read the TwiML and lint its ``<Dial><Sip>``;
4. map Synthflow's termination host to the local SIP endpoint, turn the URI's
   headers into SIP headers as Twilio does (plus ``X-Twilio-CallSid`` and
   friends) and place a real call: INVITE, ACK, a short hold, BYE;
5. check the X-EI call id was one the mock prepared, and that the trunk answered 200;
6. when the call has a post-call webhook (its prepare's ``external_webhook_url`` or its agent's),
   check the mock delivered it and the receiver accepted it (2xx).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import requests

from mock_server import lint, xei
from mock_server.sip.client import SipCaller


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    call_sid: str = ""
    twiml: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str, warnings: list[str] | None = None) -> bool:
        self.checks.append(Check(name, ok, detail, warnings or []))
        return ok

    def render(self) -> str:
        lines = [f"Twilio simulator, call {self.call_sid}"]
        for i, check in enumerate(self.checks, 1):
            lines.append(f"{i}. [{'PASS' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
            lines += [f"     warning: {w}" for w in check.warnings]
        lines.append("result: " + ("all steps passed" if self.ok else "FAILED"))
        return "\n".join(lines)


def _sid(prefix: str) -> str:
    return prefix + os.urandom(16).hex()


def sign(url: str, params: dict[str, str], auth_token: str) -> str:
    """``X-Twilio-Signature``: base64 HMAC-SHA1 over the URL and the sorted parameters, as Twilio signs a
    webhook (the same as twilio-python's RequestValidator, without needing that package)."""
    text = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    digest = hmac.new(auth_token.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def simulate_call(
    webhook: str,
    from_number: str,
    to_number: str,
    *,
    mock_url: str = "http://127.0.0.1:8080",
    sip_target: tuple[str, int] = ("127.0.0.1", 32681),
    method: str = "POST",
    auth_token: str | None = None,
    admin_token: str | None = None,
    hold_s: float = 0.3,
    timeout: float = 10.0,
    webhook_wait_s: float = 10.0,
) -> Report:
    """Run the whole inbound flow once; the report has one check per step."""
    report = Report(call_sid=_sid("CA"))
    account = _sid("AC")
    params = {"CallSid": report.call_sid, "AccountSid": account, "From": from_number, "To": to_number,
              "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01", "Caller": from_number,
              "Called": to_number}
    admin = {"X-Mock-Admin-Token": admin_token} if admin_token else {}
    since = time.time()

    # 1. the webhook
    headers = {"X-Twilio-Signature": sign(webhook, params if method == "POST" else {}, auth_token)} if auth_token \
        else {}
    try:
        if method.upper() == "GET":
            url = webhook + ("&" if "?" in webhook else "?") + urllib.parse.urlencode(params)
            if auth_token:
                headers["X-Twilio-Signature"] = sign(url, {}, auth_token)
            resp = requests.get(url, headers=headers, timeout=timeout)
        else:
            resp = requests.post(webhook, data=params, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        report.add("webhook answered", False, f"{method} {webhook} failed: {exc}")
        _check_prepares(report, mock_url, since, admin)
        return report
    report.twiml = resp.text
    if not report.add("webhook answered", resp.ok, f"{method} {webhook} -> {resp.status_code}"):
        _check_prepares(report, mock_url, since, admin)  # often the reason the webhook failed
        return report

    # 2. prepare_inbound seen while the webhook ran: every attempt, with its status
    prepared = _check_prepares(report, mock_url, since, admin)
    if prepared is None:
        return report
    ids = [e["call_id"] for e in prepared if e.get("call_id") and e.get("status") == 200]

    # 3. TwiML and its <Sip>
    diagnostics = lint.lint_twiml(resp.text, lint.Target(hosts=(*lint.SYNTHFLOW_HOSTS, sip_target[0], "localhost")))
    errors = [f"{d.code}: {d.message} (hint: {d.hint})" for d in diagnostics if d.severity == "error"]
    warnings = [f"{d.code}: {d.message} (hint: {d.hint})" for d in diagnostics if d.severity == "warning"]
    uri = sip_uri(resp.text)
    report.add("TwiML <Dial><Sip> valid", not errors and uri is not None,
               ("; ".join(errors) if errors else f"<Sip>{uri}</Sip>") if uri else "no <Dial><Sip> in the answer",
               warnings)
    if uri is None:
        return report

    # 4. X-EI, as Twilio will send it
    sip_headers = xei.uri_headers(uri)
    xei_values = [v for n, v in sip_headers if n.lower() == "x-ei"]
    parsed = xei.parse(xei_values if len(xei_values) > 1 else (xei_values[0] if xei_values else []))
    report.add("X-EI valid", parsed.ok and parsed.call_id is not None,
               f"X-EI: {xei_values[0] if xei_values else '(none)'} -> call id {parsed.call_id}" if parsed.ok else
               "; ".join(str(d.message) for d in parsed.errors) or "no S. token",
               [d.message for d in parsed.warnings])
    if ids:  # with no prepare at all, the SIP answer (below) tells which mock the app called
        known = parsed.call_id in ids
        report.add("call id was prepared", known, f"{parsed.call_id} is {'' if known else 'NOT '}among the ids "
                   f"prepared on {mock_url}: {ids}")

    # 5. the SIP call
    transport = "tcp" if ";transport=tcp" in uri.split("?")[0].lower() else "udp"
    user = uri.split(":", 1)[1].split("@", 1)[0] if "@" in uri else to_number
    target_uri = f"sip:{user}@{sip_target[0]}:{sip_target[1]}"
    extra = [(name, value) for name, value in sip_headers] + [
        ("X-Twilio-CallSid", report.call_sid), ("X-Twilio-AccountSid", account),
        ("X-Twilio-ApiVersion", "2010-04-01")]
    result = SipCaller(*sip_target, transport=transport, timeout=timeout).call(target_uri, extra,
                                                                             from_number=from_number, hold_s=hold_s)
    if result.error and result.final is None:
        report.add("SIP answer", False, f"{result.error} (is the trunk at {sip_target[0]}:{sip_target[1]}?)")
        return report
    final = result.final
    ladder = ", ".join(f"{s.name} {s.ms:.0f} ms" for s in result.steps)
    answered = final is not None and final.status == 200
    detail = f"{final.status} {final.reason}" if final is not None else "no answer"
    if final is not None and final.get("warning"):
        detail += f" ({final.get('warning')})"
    report.add("SIP answer", answered and result.bye_status == 200, f"{detail}; {ladder}")
    if not ids and parsed.call_id is not None:
        report.checks.append(_no_prepare_here(mock_url, parsed.call_id, answered))

    # 6. the post-call webhook, when the call has somewhere to send it
    url = _webhook_url(mock_url, prepared, parsed.call_id, admin)
    if url and parsed.call_id:
        attempts = _post_call_attempts(mock_url, parsed.call_id, admin, webhook_wait_s)
        delivered = [a for a in attempts if a.get("outcome") == "delivered"]
        tried = "; ".join(f"#{a.get('attempt')} -> {a.get('status') or a.get('error')}" for a in attempts)
        report.add("post-call webhook delivered and accepted", bool(delivered),
                   f"POST {url}: {tried}" if attempts else f"nothing sent to {url} within {webhook_wait_s:g} s")
    return report


def _webhook_url(mock_url: str, prepared: list[dict[str, Any]], call_id: str | None,
                 headers: dict[str, str]) -> str | None:
    """Where the mock sends this call's post-call webhook: the prepare's own URL, else its agent's."""
    entry = next((e for e in prepared if e.get("call_id") == call_id), None)
    try:
        body = json.loads(entry.get("body") or "{}") if entry else {}
    except ValueError:
        body = {}
    if body.get("external_webhook_url"):
        return str(body["external_webhook_url"])
    try:
        agents = requests.get(f"{mock_url}/_mock/agents", headers=headers, timeout=5).json().get("agents") or {}
    except (requests.RequestException, ValueError):
        return None
    return (agents.get("agents", {}).get(body.get("model_id"), {}) or {}).get("external_webhook_url")


def _post_call_attempts(mock_url: str, call_id: str, headers: dict[str, str], wait_s: float) -> list[dict[str, Any]]:
    """The mock's post-call webhook attempts for the call, once one was delivered or ``wait_s`` passed."""
    deadline = time.monotonic() + wait_s
    attempts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            entries = requests.get(f"{mock_url}/_mock/journal", params={"kind": "webhook", "call_id": call_id},
                                   headers=headers, timeout=5).json().get("entries", [])
        except (requests.RequestException, ValueError):
            entries = []
        attempts = [e for e in entries if e.get("event") == "post_call"]
        if any(a.get("outcome") == "delivered" for a in attempts):
            break
        time.sleep(0.1)
    return attempts


WHY = {401: "the mock refused the API key (empty, malformed or not accepted): check the Authorization header "
            "your app sends (SYNTHFLOW_API_KEY)",
       422: "the body broke the contract (see the journal entry's errors)",
       415: "the body was not sent as application/json"}


def _check_prepares(report: Report, mock_url: str, since: float,
                    headers: dict[str, str]) -> list[dict[str, Any]] | None:
    """Add the prepare step: each POST /v2/prepare_inbound the mock saw since ``since``, with its status.
    None (and a failed step) when the mock cannot be asked."""
    try:
        resp = requests.get(f"{mock_url}/_mock/journal", params={"path": "/v2/prepare_inbound", "since": since},
                            headers=headers, timeout=5)
        resp.raise_for_status()
        entries = resp.json().get("entries", [])
    except (requests.RequestException, ValueError) as exc:
        report.add("prepare_inbound called", False, f"the mock at {mock_url} cannot be reached to check: {exc} "
                   "(is --mock-url the mock your app calls?)")
        return None
    ok = [e for e in entries if e.get("status") == 200]
    attempts = "; ".join(
        f"POST /v2/prepare_inbound -> {e.get('status')}" + (f" {e.get('error')}" if e.get("error") else "") +
        (f": {WHY[e['status']]}" if e.get("status") in WHY else "") +
        (f" (call {e.get('call_id')})" if e.get("call_id") else "") for e in entries)
    if entries:
        report.add("prepare_inbound called", bool(ok), f"{len(entries)} attempt(s): {attempts}")
    else:
        report.add("prepare_inbound called", False,
                   f"the mock at {mock_url} saw no POST /v2/prepare_inbound while the webhook ran (prepare skipped, "
                   "or your app calls another URL: check SYNTHFLOW_BASE_URL)")
    return entries


def _no_prepare_here(mock_url: str, call_id: str, trunk_answered: bool) -> Check:
    if trunk_answered:
        return Check("call id was prepared", False,
                     f"the SIP trunk answered 200 for {call_id}, so a mock prepared it, but not the one at "
                     f"{mock_url}: --mock-url points at another mock than the one your app calls")
    return Check("call id was prepared", False, f"{call_id} was not prepared on the mock at {mock_url}")


def sip_uri(twiml: str) -> str | None:
    """The URI inside ``<Dial><Sip>``, or None."""
    try:
        root = ET.fromstring(twiml.strip())
    except ET.ParseError:
        return None
    sip = root.find(".//Dial/Sip")
    return (sip.text or "").strip() if sip is not None else None
