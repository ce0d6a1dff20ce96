"""Which outcome a prepare_inbound request gets, and why.

Sources, highest first: the ``Prefer: outcome=...`` request header, then the
server's default outcome (``--outcome``). Every decision carries its reason so
the journal can say why a request got what it got.
"""

from __future__ import annotations

from dataclasses import dataclass

from mock_server.core.config import MockConfig
from mock_server.core.errors import ApiError

HTTP_OUTCOMES = ("registered", "failed")


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: str
    reason: str


def _prefer_outcome(prefer: str) -> str | None:
    """Read ``outcome=X`` from a Prefer header (RFC 7240: comma-separated preferences)."""
    for pref in prefer.split(","):
        name, _, value = pref.strip().partition("=")
        if name.strip().lower() == "outcome":
            return value.strip().strip('"')
    return None


def choose(headers: dict[str, str], config: MockConfig) -> Decision:
    prefer = headers.get("prefer")
    if prefer:
        wanted = _prefer_outcome(prefer)
        if wanted is not None:
            if wanted not in HTTP_OUTCOMES:
                known = ", ".join(HTTP_OUTCOMES)
                raise ApiError(400, "validation_error",
                               f"Prefer: outcome={wanted!r} is not a known outcome; use one of {known}", field="Prefer")
            return Decision(wanted, "header:Prefer")
    return Decision(config.default_outcome, "server-default")
