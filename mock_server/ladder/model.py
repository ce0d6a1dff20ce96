"""The steps of one call's ladder, from the journal: the prepare, each SIP message, each webhook attempt.

Every drawing (the terminal's, the web page's) is made from :func:`build`, so they
cannot disagree with each other or with ``/_mock/calls/<id>/sip``: one SIP journal
entry is one arrow, retransmissions included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

LANES: tuple[tuple[str, str], ...] = (
    ("app", "Your app"),
    ("api", "Synthflow API (mock)"),
    ("trunk", "Synthflow SIP (mock)"),
    ("caller", "SIP caller"),
    ("media", "Media"),
    ("webhooks", "Webhook receiver"),
)
PROBLEMS = ("bad_xei", "unknown_call", "missing_xei", "failed_call", "used_call", "busy", "malformed", "refused")
"""Decisions that mean the caller did something wrong (highlighted, with the X-EI diagnostic)."""


@dataclass(frozen=True)
class Step:
    seq: int
    time: float
    offset_ms: float
    source: str
    target: str
    label: str
    kind: str
    """``http``, ``sip``, ``webhook`` or ``media`` (DTMF and the RTP summary, from the call's timeline)."""
    note: str | None = None
    problem: bool = False
    raw: str | None = None


def _sip_label(first_line: str) -> str:
    if first_line.startswith("SIP/2.0 "):
        return first_line[8:]
    return first_line.split(" ", 1)[0]


def _steps_for(entry: dict[str, Any]) -> list[tuple[str, str, str, str | None, bool, str | None]]:
    """(source, target, label, note, problem, raw) for one journal entry: one or two arrows."""
    kind = entry.get("kind")
    if kind == "sip":
        inbound = entry.get("direction") == "in"
        decision = entry.get("decision")
        note = "; ".join(x for x in (decision, entry.get("reason")) if x) or None
        problem = bool(decision) and str(decision).startswith(PROBLEMS)
        source, target = ("caller", "trunk") if inbound else ("trunk", "caller")
        return [(source, target, _sip_label(entry.get("first_line") or "?"), note, problem, entry.get("raw"))]
    if kind == "webhook":
        answer = str(entry.get("status")) if entry.get("status") is not None else f"no answer: {entry.get('error')}"
        label = f"POST {entry.get('path')} ({entry.get('event')} #{entry.get('attempt')})"
        failed = entry.get("outcome") != "delivered"
        return [("api", "webhooks", label, None, False, entry.get("body")),
                ("webhooks", "api", f"{answer} in {entry.get('latency_ms')} ms", entry.get("error"), failed,
                 entry.get("response_body"))]
    status = entry.get("status")
    outcome = entry.get("outcome") or entry.get("error")
    return [("app", "api", f"{entry.get('method')} {entry.get('path')}", entry.get("reason"), False, entry.get("body")),
            ("api", "app", f"{status}" + (f" ({outcome})" if outcome else ""), None, (status or 0) >= 400, None)]


def _media_steps(call: dict[str, Any] | None) -> list[dict[str, Any]]:
    """DTMF digits and the RTP summary from the call's timeline, as pseudo-entries on the media lane."""
    out: list[dict[str, Any]] = []
    for event in (call or {}).get("timeline") or []:
        detail = event.get("detail") or {}
        if event.get("event") == "dtmf":
            out.append({"seq": -1, "time": event["time"] / 1000, "kind": "media",
                        "arrow": ("caller", "media", f"DTMF {detail.get('digit')} ({detail.get('via')})", None)})
        elif event.get("event") == "media":
            got = detail.get("received") or {}
            label = (f"RTP {detail.get('codec')}: in {got.get('packets', 0)} (lost {got.get('lost', 0)}, jitter "
                     f"{got.get('jitter_ms', 0)} ms), out {detail.get('sent_packets', 0)}")
            note = f"bad packets: {detail['bad_packets']}" if detail.get("bad_packets") else None
            out.append({"seq": -1, "time": event["time"] / 1000, "kind": "media",
                        "arrow": ("media", "caller", label, note)})
    return out


def build(call_id: str, entries: list[dict[str, Any]], call: dict[str, Any] | None) -> dict[str, Any]:
    """The ladder document: the call's summary, the lanes and the steps, oldest first."""
    entries = [e for e in entries if e.get("kind") in ("http", "sip", "webhook")] + _media_steps(call)
    entries.sort(key=lambda e: (e["time"], e["seq"] if e["seq"] >= 0 else 2**62))
    start = entries[0]["time"] if entries else 0.0
    steps = []
    for e in entries:
        arrows = [(*e["arrow"][:3], e["arrow"][3], False, None)] if e["kind"] == "media" else _steps_for(e)
        steps += [Step(e["seq"], e["time"], round((e["time"] - start) * 1000, 1), *arrow[:3], e["kind"], *arrow[3:])
                  for arrow in arrows]
    summary = None
    if call is not None:
        summary = {k: call.get(k) for k in ("call_status", "model_id", "lead_phone_number", "agent_phone_number",
                                            "duration", "end_call_reason", "error_message", "recording_url")}
    return {"call_id": call_id, "call": summary, "lanes": [{"key": k, "title": t} for k, t in LANES],
            "steps": [asdict(s) for s in steps]}
