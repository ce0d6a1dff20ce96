"""UDP ports for RTP from a configured range (``--rtp-ports LOW-HIGH``): even ports, as RTP wants,
handed out round-robin so a port just released is not reused at once (late packets of the last call)."""

from __future__ import annotations

import socket


class NoMediaPort(RuntimeError):
    """Every port of the range is in use (or taken by another program)."""


class PortRange:
    def __init__(self, low: int, high: int) -> None:
        if low < 1024 or high > 65535 or low > high:
            raise ValueError(f"RTP port range {low}-{high}: use 1024 <= LOW <= HIGH <= 65535")
        self.low, self.high = low + (low % 2), high
        self._next = self.low
        self.in_use: set[int] = set()

    def skip_to(self, index: int) -> None:
        """Start handing out ports from the ``index``-th one."""
        self._next = self.low + 2 * (index % self.size)

    @property
    def size(self) -> int:
        return (self.high - self.low) // 2 + 1

    def open(self, host: str) -> tuple[socket.socket, int]:
        """A non-blocking UDP socket bound to the next free even port on ``host``."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(self.size):
            port = self._next
            self._next = self.low if self._next + 2 > self.high else self._next + 2
            if port in self.in_use:
                continue
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            self.in_use.add(port)
            return sock, port
        raise NoMediaPort(f"all {self.size} RTP ports of {self.low}-{self.high} are in use")

    def release(self, port: int) -> None:
        self.in_use.discard(port)
