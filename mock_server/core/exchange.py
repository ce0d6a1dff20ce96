"""What a door hands the core, and what it gets back. No framework types cross this line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mock_server.core import jsonio


@dataclass(slots=True)
class Request:
    """A request as every door hands it to the core. Header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    query: dict[str, str] = field(default_factory=dict)
    remote: str | None = None
    writes: list[Write] | None = None
    """When a door collects store writes to commit them in a group (the async front), they go here;
    when None, the core commits each request's writes before it answers."""


@dataclass(slots=True)
class Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Each door waits this long before answering (slow outcomes, latency policy)."""
    drop: str | None = None
    """Instead of answering, after ``delay_s``: ``"reset"`` the connection (RST), or ``"close"`` it (FIN)."""

    def body_bytes(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return jsonio.dumps(self.body)


@dataclass(slots=True)
class Write:
    """One request's store write: its journal entry, and the call it prepared (if any)."""

    entry: dict[str, Any]
    call: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    call_json: bytes | None = None


@dataclass(slots=True)
class Result:
    """What a handler decided, beside its response: for the journal and the store."""

    response: Response
    outcome: str | None = None
    reason: str | None = None
    call_id: str | None = None
    new_call: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
