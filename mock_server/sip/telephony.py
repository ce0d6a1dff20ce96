"""Synthflow's telephony_* call fields (GET /v2/calls), from when a call's INVITE came, when it was
answered and how it ended."""

from __future__ import annotations

import datetime
import time
from typing import Any


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="milliseconds")


class TelephonyClock:
    """Per live call: when its INVITE came and when it was answered (bounded: calls that never end go)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.times: dict[str, list[float | None]] = {}

    def fields(self, call_id: str, event: str, status: str | None, detail: dict[str, Any] | None) -> dict[str, Any]:
        """The call object's telephony_* fields (Synthflow's GET /v2/calls) at the invite, answer and end."""
        now = time.time()
        times = self.times
        if event == "invite":
            times[call_id] = [now, None]
            while len(times) > self.cap:
                del times[next(iter(times))]
            return {}
        if event == "answered":
            started = times.get(call_id)
            if started is None:
                return {}
            started[1] = now
            return {"telephony_start": iso(now), "telephony_ringing_duration": round((now - started[0]) * 1000)}
        started = times.pop(call_id, None)
        by_caller = event in ("bye", "canceled")
        why = str((detail or {}).get("why") or "")
        if by_caller:
            reason = "caller_hangup"
        elif event in ("mock-bye", "transferred"):
            reason = "callee_hangup"
        elif event == "inbound-webhook-disconnect" or why.startswith("limit"):
            reason = "forbidden"
        elif event == "no-answer":
            reason = "unknown"
        else:
            reason = "error"
        answered = started[1] if started else None
        return {"telephony_end": iso(now), "telephony_duration": round((now - answered) * 1000) if answered else 0,
                "telephony_hangup": "caller" if by_caller else "callee", "telephony_disconnect_reason": reason}
