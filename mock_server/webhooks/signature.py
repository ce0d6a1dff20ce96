"""The webhook signature, exactly as docs.synthflow.ai/webhooks-security computes it.

``base64(HMAC-SHA256(secret, call_id))``: over the call id string only, not the body.
The docs name the header by its WSGI spelling ``HTTP_SYNTHFLOW_SIGNATURE``; on the
wire it is ``Synthflow-Signature``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

HEADER = "Synthflow-Signature"


def sign(secret: str, call_id: str) -> str:
    digest = hmac.new(secret.encode(), call_id.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(secret: str, call_id: str, signature: str | None) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return signature is not None and hmac.compare_digest(sign(secret, call_id), signature)
