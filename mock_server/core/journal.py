"""Shaping journal entries: what is kept of a request, with secrets redacted."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any

SECRET_NAME = re.compile(r"auth|token|secret|passw|api[-_]?key|cookie|session|signature|credential|private",
                         re.IGNORECASE)
"""A header or query parameter whose name matches holds a credential: it is journaled as a fingerprint."""
_SIP_CREDENTIALS = re.compile(r"^((?:proxy-)?authorization[ \t]*:[ \t]*)([^\s,]+)?([^\r\n]*)",
                              re.IGNORECASE | re.MULTILINE)


@lru_cache(maxsize=4096)
def fingerprint(secret: str, salt: str = "") -> str:
    """A short, salted fingerprint: two values can be told apart within one mock's journal, and a
    journal copied elsewhere cannot be matched against a list of known tokens.

    Cached: a load test sends the same token on every request."""
    return "sha256:" + hashlib.sha256(f"{salt}:{secret}".encode("utf-8", "replace")).hexdigest()[:12]


@lru_cache(maxsize=1024)
def is_secret(name: str) -> bool:
    return SECRET_NAME.search(name) is not None


def redact_value(name: str, value: str, salt: str) -> str:
    """``Authorization``-style values keep their scheme (``Bearer <redacted sha256:…>``)."""
    scheme, _, secret = value.partition(" ")
    if secret and name.lower() in ("authorization", "proxy-authorization"):
        return f"{scheme} <redacted {fingerprint(secret, salt)}>"
    return f"<redacted {fingerprint(value, salt)}>" if value else "<redacted>"


def redact_headers(headers: dict[str, str], salt: str = "") -> dict[str, str]:
    return {name: redact_value(name, value, salt) if is_secret(name) else value for name, value in headers.items()}


def redact_query(query: dict[str, str], salt: str = "") -> dict[str, str]:
    if not query:
        return query
    return {name: redact_value(name, value, salt) if is_secret(name) else value for name, value in query.items()}


def redact_sip(raw: str, salt: str = "") -> str:
    """SIP ``Authorization``/``Proxy-Authorization`` values in a raw message: scheme kept, the rest fingerprinted."""
    if "uthorization" not in raw and "UTHORIZATION" not in raw:
        return raw
    return _SIP_CREDENTIALS.sub(
        lambda m: f"{m.group(1)}{m.group(2) or ''} <redacted {fingerprint(m.group(3).strip(), salt)}>", raw)


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
    salt: str = "",
) -> dict[str, Any]:
    text, truncated = body_text(body, body_limit)
    entry: dict[str, Any] = {
        "time": time,
        "kind": "http",
        "request_id": request_id,
        "method": method,
        "path": path,
        "query": redact_query(query, salt),
        "headers": redact_headers(headers, salt),
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
