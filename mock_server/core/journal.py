"""Shaping journal entries: what is kept of a request, with secrets redacted."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

SECRET_HEADERS = frozenset({"authorization", "x-mock-admin-token", "proxy-authorization", "cookie"})


@lru_cache(maxsize=1024)
def fingerprint(secret: str) -> str:
    """A short, stable fingerprint so two tokens can be told apart without showing either.

    Cached: a load test sends the same token on every request."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()[:12]


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        if name in SECRET_HEADERS:
            scheme, _, secret = value.partition(" ")
            out[name] = f"{scheme} <redacted {fingerprint(secret)}>" if secret else "<redacted>"
        else:
            out[name] = value
    return out


def body_text(body: bytes, limit: int) -> tuple[str, bool]:
    """Request body as text for the journal, cut at ``limit`` bytes; returns (text, truncated)."""
    cut = len(body) > limit
    return body[:limit].decode("utf-8", "replace"), cut


def http_entry(
    *,
    time: float,
    request_id: str,
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    body_limit: int,
    remote: str | None,
    status: int,
    outcome: str | None,
    reason: str | None,
    call_id: str | None,
    error: str | None,
) -> dict[str, Any]:
    text, truncated = body_text(body, body_limit)
    entry: dict[str, Any] = {
        "time": time,
        "kind": "http",
        "request_id": request_id,
        "method": method,
        "path": path,
        "query": query,
        "headers": redact_headers(headers),
        "body": text,
        "body_bytes": len(body),
        "remote": remote,
        "status": status,
        "outcome": outcome,
        "reason": reason,
        "call_id": call_id,
        "error": error,
    }
    if truncated:
        entry["body_truncated"] = True
    return entry
