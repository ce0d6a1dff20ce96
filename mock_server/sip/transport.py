"""Sockets for the SIP endpoint: UDP and TCP on the same port, optional TLS (RFC 3261 §18).

Streams are cut into messages by ``framing.py``; a connection that stalls
mid-message or stays silent is closed after an idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass, field

from mock_server.sip.common import format_addr
from mock_server.sip.framing import Frame, Ping, StreamFramer
from mock_server.sip.peer import Peer
from mock_server.sip.uas import SipEndpoint

UDP_RCVBUF = 4 * 1024 * 1024


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        self._peers: dict[tuple[str, int], Peer] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.local = transport.get_extra_info("sockname")[:2]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A load generator sends in bursts; a larger receive buffer absorbs them instead of
            # dropping datagrams (the kernel caps this at net.core.rmem_max).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)

    def _send(self, data: bytes, to: tuple[str, int]) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.sendto(data, to)
        return True

    def peer_for(self, key: tuple[str, int]) -> Peer:
        """The peer for a remote address: answers to it go out of this socket."""
        peer = self._peers.get(key)
        if peer is None:  # one Peer per remote address, reused: datagrams are the hot path
            if len(self._peers) > 10_000:
                self._peers.clear()
            peer = self._peers[key] = Peer("UDP", key, self.local, self._send)
        return peer

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip(b"\r\n"):
            return  # keep-alive
        peer = self.peer_for(addr[:2])
        try:
            self.endpoint.receive(data, peer)
        except Exception as exc:  # never let one datagram stop the endpoint
            self.endpoint.note(peer, data, "unhandled", f"internal error: {exc!r}")

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable after a send
        pass


class StreamProtocol(asyncio.Protocol):
    """One TCP or TLS connection: bytes through a :class:`StreamFramer`, messages to the endpoint."""

    def __init__(self, endpoint: SipEndpoint, transport_name: str) -> None:
        self.endpoint = endpoint
        self.name = transport_name
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer(endpoint.config.sip_max_message_bytes)
        self.peer: Peer | None = None
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        remote = transport.get_extra_info("peername")[:2]
        local = transport.get_extra_info("sockname")[:2]
        self.peer = Peer(self.name, remote, local, self._send)
        self._arm_idle()

    def _send(self, data: bytes, _to: tuple[str, int]) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = self.endpoint.loop.call_later(self.endpoint.config.sip_tcp_idle_s, self._idle_timeout)

    def _idle_timeout(self) -> None:
        what = "in the middle of a message" if self.framer.pending().strip(b"\r\n") else "silent"
        self._close(f"idle for {self.endpoint.config.sip_tcp_idle_s:g} s, {what}", self.framer.pending()[:512])

    def _close(self, why: str, data: bytes = b"") -> None:
        if self.peer is not None:
            self.endpoint.note(self.peer, data, "connection closed", f"closed: {why}")
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        self._arm_idle()
        try:
            for event in self.framer.feed(data):
                if self.transport is None:
                    return
                if isinstance(event, Frame):
                    self.endpoint.receive(event.raw, self.peer, parsed=event.message)
                elif isinstance(event, Ping):
                    self._send(b"\r\n", self.peer.remote)
                else:
                    if event.code:
                        self.endpoint.reject_unparsed(event.raw, self.peer, event.code, event.reason)
                    self._close(event.close_reason, b"" if event.code else event.raw)
        except Exception as exc:  # a bad connection must not take the endpoint down
            self._close(f"internal error: {exc!r}")


@dataclass
class SipServer:
    """The endpoint's listening sockets."""

    endpoint: SipEndpoint
    udp: asyncio.DatagramTransport | None = None
    udp_protocol: UdpProtocol | None = None
    servers: list[asyncio.AbstractServer] = field(default_factory=list)
    tls_servers: list[asyncio.AbstractServer] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.udp is not None
        return self.udp.get_extra_info("sockname")[1]

    def describe(self) -> str:
        parts = []
        if self.udp is not None:
            parts.append(f"udp {format_addr(self.udp.get_extra_info('sockname')[:2])}")
        for server in self.servers:
            for sock in server.sockets:
                kind = "tls" if server in self.tls_servers else "tcp"
                parts.append(f"{kind} {format_addr(sock.getsockname()[:2])}")
        return ", ".join(parts)

    async def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        self.endpoint.close()


async def start_sip_server(endpoint: SipEndpoint, host: str, port: int, *, tls_port: int | None = None,
                           tls_cert: str | None = None, tls_key: str | None = None,
                           reuse_port: bool = False) -> SipServer:
    """Bind UDP and TCP on ``port`` (0 picks one free for both), and TLS on ``tls_port`` when given.

    ``reuse_port``: several SIP processes (shards) share the ports (SO_REUSEPORT). The kernel hashes
    each UDP peer's address to one shard, so a caller's retransmissions, ACK, BYE and CANCEL from the
    socket it called from reach the shard that holds its transaction; a TCP connection stays with
    the shard that accepted it."""
    reuse = {"reuse_port": True} if reuse_port else {}
    loop = endpoint.loop
    server = SipServer(endpoint)
    for _ in range(20):
        udp, proto = await loop.create_datagram_endpoint(lambda: UdpProtocol(endpoint), local_addr=(host, port),
                                                          **reuse)
        bound = udp.get_extra_info("sockname")[1]
        try:
            tcp = await loop.create_server(lambda: StreamProtocol(endpoint, "TCP"), host, bound, reuse_address=True,
                                           backlog=1024, **reuse)
        except OSError:
            udp.close()
            if port:
                raise
            continue  # the free UDP port was taken for TCP; try another
        server.udp, server.udp_protocol = udp, proto
        server.servers.append(tcp)
        break
    else:
        raise OSError("could not find a port free for both UDP and TCP")
    if tls_port is not None:
        if not (tls_cert and tls_key):
            raise ValueError("TLS needs a certificate and a key")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_cert, tls_key)
        tls = await loop.create_server(lambda: StreamProtocol(endpoint, "TLS"), host, tls_port, ssl=context,
                                       reuse_address=True, **reuse)
        server.servers.append(tls)
        server.tls_servers.append(tls)
    return server
