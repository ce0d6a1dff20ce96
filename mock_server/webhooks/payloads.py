"""The bodies Synthflow sends: the post-call webhook and the ``call_inbound`` event.

Shapes follow docs.synthflow.ai/webhooks and /inbound-webhook-api; the contracts
``post-call-webhook.schema.json`` and ``call-inbound-webhook.schema.json`` pin them.
"""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

from mock_server.webhooks.context import CallContext


def _iso(ms: int | None, tz_name: str | None) -> str:
    try:
        tz: datetime.tzinfo = zoneinfo.ZoneInfo(tz_name) if tz_name else datetime.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = datetime.UTC
    return datetime.datetime.fromtimestamp((ms or 0) / 1000, tz).isoformat(timespec="milliseconds")


def post_call(call: dict[str, Any], ctx: CallContext, timezone: str | None) -> dict[str, Any]:
    """The post-call webhook body for a call that ended (``call`` is the stored call object)."""
    status = call["call_status"]
    actions = {f"{n}:{a.get('action', 'action')}": a for n, a in enumerate(call.get("executed_actions") or [], 1)}
    return {
        "status": status,
        "error_message": call.get("error_message") or "",
        "lead": {"name": call.get("lead_name"), "phone_number": call.get("lead_phone_number")},
        "executed_actions": actions,
        "collected_variables": {},
        "call": {
            "status": status,
            "end_call_reason": call.get("end_call_reason"),
            "custom_end_call_reason": None,
            "model_id": call.get("model_id") or ctx.model_id or "",
            "timezone": timezone,
            "call_id": ctx.call_id,
            "duration": int(call.get("duration") or 0),
            "start_time": _iso(call.get("start_time"), timezone),
            "transcript": call.get("transcript") or "",
            "diversion": ctx.diversion,
            "external_id": ctx.external_id,
            "prompt_variables": call.get("prompt_variables") or {},
        },
    }


def call_inbound(ctx: CallContext) -> dict[str, Any]:
    return {"event": "call_inbound", "call_inbound": {"model_id": ctx.model_id or "", "from_number": ctx.from_number,
                                                     "to_number": ctx.to_number, "call_id": ctx.call_id}}
