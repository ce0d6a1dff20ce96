"""Receiving Synthflow's webhooks, verified the documented way (docs.synthflow.ai/webhooks-security).

The signature is base64(HMAC-SHA256(workspace secret, call_id)): over the call id only, not the
body. Synthflow's docs read it as ``request.META["HTTP_SYNTHFLOW_SIGNATURE"]`` (the WSGI name of
the ``Synthflow-Signature`` header). Both example apps route their webhook URL here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from typing import Any

RECEIVED: list[dict[str, Any]] = []
"""Webhooks this app accepted, newest last (what the integrator's own tests look at)."""
_lock = threading.Lock()


def webhook_secret() -> str:
    return os.environ.get("SYNTHFLOW_WEBHOOK_SECRET", "")


def verify_signature(call_id: str, signature: str | None, secret: str) -> bool:
    expected = base64.b64encode(hmac.new(secret.encode(), call_id.encode(), hashlib.sha256).digest()).decode()
    return signature is not None and hmac.compare_digest(expected, signature)


def receive(payload: Any, signature: str | None) -> tuple[int, dict[str, Any]]:
    """Handle one webhook body: (HTTP status, JSON answer). A bad signature is a 401, and nothing is kept."""
    if not isinstance(payload, dict):
        return 400, {"error": "expected a JSON object"}
    if payload.get("event") == "call_inbound":
        call_id = (payload.get("call_inbound") or {}).get("call_id", "")
    else:
        call_id = (payload.get("call") or {}).get("call_id", "")
    if not verify_signature(str(call_id), signature, webhook_secret()):
        return 401, {"error": "bad signature"}
    with _lock:
        RECEIVED.append(payload)
    if payload.get("event") == "call_inbound":
        return 200, {"call_inbound": {"override_model_id": ""}}  # keep the agent
    return 200, {"ok": True}


def received() -> list[dict[str, Any]]:
    with _lock:
        return list(RECEIVED)
