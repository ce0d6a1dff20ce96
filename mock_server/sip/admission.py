"""Admission: whether the fake trunk takes an initial INVITE, and if not, which code and why.

The X-EI check uses ``mock_server.xei``; the call it names is looked up in the
shared store (prepared over HTTP, maybe by another process). The codes are the
mock's documented choices (README, "SIP answers") and can be overridden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mock_server import xei
from mock_server.sip.message import SipMessage

DEFAULT_CODES: dict[str, int] = {
    "unknown_call": 404,     # S. id never prepared
    "failed_call": 503,      # prepare answered call_status "failed"
    "busy": 486,             # the call already has a live SIP dialog
    "used_call": 410,        # the call already completed or was cancelled
    "bad_xei": 400,          # X-EI present but malformed
    "missing_xei": 400,      # only when --sip-require-xei
}
PHRASES = {
    "unknown_call": "Call Not Prepared",
    "failed_call": "Call Prepared As Failed",
    "busy": "Busy Here",
    "used_call": "Call Id Already Used",
    "missing_xei": "Missing X-EI Header",
}
ACTIVE = frozenset({"ringing", "in-progress"})
USED = frozenset({"completed", "canceled", "busy", "no-answer"})


@dataclass(frozen=True)
class Admission:
    accept: bool
    code: int
    phrase: str
    """The status line's reason phrase."""
    cause: str
    """Machine-readable cause: accepted, direct-dial, unknown_call, bad_xei:<code>, ..."""
    call_id: str | None = None
    warning: str | None = None
    """Text for a ``Warning: 399`` header (the diagnostic, for a human)."""
    external_id: str | None = None
    diversion: str | None = None
    """The X-EI ``O.`` token."""
    retry_after: int | None = None
    plan: dict[str, Any] | None = None
    """The call's SIP plan from prepare time (outcome engine), for accepted INVITEs."""


def admit(
    msg: SipMessage,
    call_state: Callable[[str], tuple[str | None, dict[str, Any] | None]],
    *,
    require_xei: bool = False,
    lenient: bool = False,
    codes: dict[str, int] | None = None,
) -> Admission:
    """Admit or refuse an initial INVITE from its X-EI header and the call's state."""
    table = {**DEFAULT_CODES, **(codes or {})}
    values = msg.get_all("x-ei")
    if not values:
        if require_xei:
            return Admission(False, table["missing_xei"], PHRASES["missing_xei"], "missing_xei",
                            warning="the INVITE has no X-EI header; send X-EI: S.<synthflow_call_id>;")
        return Admission(True, 200, "OK", "direct-dial: no X-EI header")
    result = xei.parse(values if len(values) > 1 else values[0], strict=not lenient)
    if not result.ok:
        first = result.errors[0]
        return Admission(False, table["bad_xei"], result.reason(), f"bad_xei:{first.code}",
                        warning=f"{first.code}: {first.message}; hint: {first.hint}")
    call_id = result.call_id
    external = result.get("E")
    if call_id is None:
        return Admission(True, 200, "OK", "direct-dial: X-EI has no S. token", external_id=external)
    status, plan = call_state(call_id)
    if status is None:
        return _reject(table, "unknown_call", call_id, f"no call was prepared with synthflow_call_id {call_id}")
    if status == "failed":
        return Admission(False, table["failed_call"], PHRASES["failed_call"], "failed_call", call_id,
                        f"call {call_id} has call_status 'failed' (prepared as failed, or its SIP call failed)",
                        external, retry_after=30)
    if status in ACTIVE:
        return _reject(table, "busy", call_id, f"call {call_id} already has an active SIP dialog ({status})")
    if status in USED:
        return _reject(table, "used_call", call_id, f"call {call_id} was already used ({status})")
    return Admission(True, 200, "OK", "accepted", call_id, external_id=external, plan=plan,
                     diversion=result.get("O"))


def _reject(table: dict[str, int], cause: str, call_id: str, warning: str) -> Admission:
    return Admission(False, table[cause], PHRASES[cause], cause, call_id, warning)
