"""What a door hands the core, and what it gets back. No framework types cross this line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Request:
    """A request as every door hands it to the core. Header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    query: dict[str, str] = field(default_factory=dict)
    remote: str | None = None


@dataclass(slots=True)
class Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Each door waits this long before answering (slow outcomes, latency policy)."""
    drop: bool = False
    """Each door drops the connection instead of answering (timeout and reset outcomes)."""

    def body_bytes(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode()


@dataclass(slots=True)
class Result:
    """What a handler decided, beside its response: for the journal and the store."""

    response: Response
    outcome: str | None = None
    reason: str | None = None
    call_id: str | None = None
    new_call: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
