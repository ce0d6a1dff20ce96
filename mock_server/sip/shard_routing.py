"""Routing between SIP shards: a message that reached a shard other than the one holding its dialog.

With ``--sip-workers N`` the kernel spreads UDP datagrams over the shards by their 4-tuple, so a
caller that keeps its source port always reaches the same shard. One that sends its ACK, BYE or
CANCEL from another port may reach another shard, which holds nothing for it. So:

- every tag and branch a shard makes ends in ``s<shard>`` (hex has no ``s``): an in-dialog request
  or ACK names its shard in its To tag, a response to the mock's own request in its Via branch;
- a message naming another shard is handed to that shard over a Unix datagram socket (one per
  shard, in a directory ``serve`` makes), with the caller's address, and that shard answers the
  caller from the shared port, as if the kernel had brought it there;
- a CANCEL names no tag: a shard without its INVITE hands it to every other shard; the one holding
  the INVITE answers it and says so, the others say it is not theirs, and when all have, the first
  shard answers 481.

Only UDP is routed: a TCP or TLS connection is owned by the shard that accepted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable

from mock_server.metrics import SIP_ROUTED
from mock_server.sip.peer import Peer

MAX_FORWARD = 65_535 + 512
_SEP = b"\n"


def shard_suffix(shard: int) -> str:
    return f"s{shard}"


def shard_of(token: str | None) -> int | None:
    """The shard a tag or branch names (``...s<digits>``), or None."""
    if not token:
        return None
    head, sep, tail = token.rpartition("s")
    return int(tail) if sep and head and tail.isdigit() else None


def socket_path(directory: str, shard: int) -> str:
    return os.path.join(directory, f"shard-{shard}.sock")


class ShardRouter:
    """This shard's end of the routes: hands messages to other shards and receives theirs.

    ``deliver(data, peer, kind, origin)`` is the endpoint's entry for a message shard ``origin`` handed
    over; ``kind`` is ``f`` (it names this shard), ``b`` (a CANCEL sent to every shard), ``y``/``n`` (a
    shard's answer to our ``b``: it took the CANCEL, or holds nothing for it). ``udp_peer(remote)`` makes
    the peer that answers from this shard's UDP socket.
    """

    def __init__(self, directory: str, shard: int, shards: int) -> None:
        self.directory, self.shard, self.shards = directory, shard, shards
        self.suffix = shard_suffix(shard)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[bytes, Peer, str, int], None],
              udp_peer: Callable[[tuple[str, int]], Peer]) -> None:
        path = socket_path(self.directory, self.shard)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(path)
        sock.setblocking(False)
        self._sock, self._loop = sock, loop

        def readable() -> None:
            while True:
                try:
                    frame = sock.recv(MAX_FORWARD)
                except (BlockingIOError, InterruptedError):
                    return
                header, _, data = frame.partition(_SEP)
                try:
                    host, port, kind, origin = header.decode().rsplit(" ", 3)
                    peer = udp_peer((host, int(port)))
                    sender = int(origin)
                except ValueError:
                    continue  # not from a shard of ours
                deliver(data, peer, kind, sender)

        loop.add_reader(sock.fileno(), readable)

    def owner(self, token: str | None) -> int | None:
        """The other shard a tag or branch names, or None when it is this one's or names none."""
        shard = shard_of(token)
        return shard if shard is not None and shard != self.shard and shard < self.shards else None

    def forward(self, shard: int, data: bytes, peer: Peer, *, kind: str = "f") -> bool:
        """Hand a UDP message to ``shard`` (``kind``: see :class:`ShardRouter`); False when it could not be
        (the caller then handles it itself)."""
        if self._sock is None or peer.transport != "UDP":
            return False
        frame = f"{peer.remote[0]} {peer.remote[1]} {kind} {self.shard}".encode() + _SEP + data
        try:
            self._sock.sendto(frame, socket_path(self.directory, shard))
        except OSError:
            return False
        SIP_ROUTED.labels({"f": "to_owner", "b": "cancel_to_all"}.get(kind, "answer")).inc()
        return True

    def others(self) -> list[int]:
        return [n for n in range(self.shards) if n != self.shard]

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path(self.directory, self.shard))
