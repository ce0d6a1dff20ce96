"""The far end of one received message, as a transport hands it to the endpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Peer:
    """Who sent a message, over what, and how to send back."""

    transport: str  # "UDP", "TCP" or "TLS"
    remote: tuple[str, int]
    local: tuple[str, int]
    send: Callable[[bytes, tuple[str, int]], bool]
    """Send bytes to an address (UDP) or down the connection (TCP/TLS, address ignored); False if it could not."""

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"
