"""What an admitted call will do, from the SIP plan chosen at prepare time (``core/outcomes.py``).

A pure translation from the stored plan and the server's settings to timings and
codes, so the endpoint only carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mock_server.core.config import MockConfig
from mock_server.core.outcomes import SIP_REJECT_CODES
from mock_server.sip.common import quoted


@dataclass(frozen=True)
class CallScript:
    plan: str
    reject: tuple[int, str, list[tuple[str, str]]] | None = None
    """(code, phrase, extra headers) when the plan refuses the call."""
    ring_s: float = 0.0
    """From 100 Trying to 180 Ringing."""
    answer_s: float | None = 0.0
    """From 100 Trying to 200 OK; None: never answer."""
    no_answer_s: float | None = None
    """From 100 Trying to 408, for the no_answer plan."""
    hangup_after_s: float | None = None
    """From the ACK to the mock's BYE, for the hangup plan."""
    transfer_after_s: float | None = None
    """From the ACK to the mock's REFER, for the transfer plan."""


def script_for(plan: dict[str, Any] | None, config: MockConfig) -> CallScript:
    plan = plan or {}
    kind = plan.get("plan", "answer")
    if kind in SIP_REJECT_CODES:
        code, phrase = SIP_REJECT_CODES[kind]
        why = f"plan {kind} ({plan.get('reason', '')})"
        extra = [("Warning", f"399 synthflow-mock {quoted(why)}")]
        if kind == "overloaded":
            extra.append(("Retry-After", "30"))
        return CallScript(kind, reject=(code, phrase, extra))
    ring = plan.get("sip-ring-ms", config.sip_ring_ms) / 1000
    if kind == "ring_forever":
        return CallScript(kind, ring_s=ring, answer_s=None)
    if kind == "no_answer":
        return CallScript(kind, ring_s=ring, answer_s=None, no_answer_s=ring + plan.get("no-answer-ms", 3000) / 1000)
    answer = ring + plan.get("sip-answer-ms", config.sip_answer_ms) / 1000
    hangup = plan.get("hangup-after-ms", 2000) / 1000 if kind == "hangup" else None
    transfer = plan.get("transfer-after-ms", 2000) / 1000 if kind == "transfer" else None
    return CallScript(kind, ring_s=ring, answer_s=answer, hangup_after_s=hangup, transfer_after_s=transfer)
