"""Per-call packet captures: libpcap files with synthesized IP and UDP headers (LINKTYPE_RAW).

The mock does not sniff the wire: it knows each SIP message (the journal) and each RTP packet
(the call's media session) with the time it was sent or received, and writes them as the
datagrams they were. SIP that came over TCP or TLS is written as UDP datagrams too, one message
each, so Wireshark and tshark dissect it the same way.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Iterator

Address = tuple[str, int]
Packet = tuple[float, Address, Address, bytes]
"""(epoch seconds, source, destination, UDP payload)."""

GLOBAL_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)  # LINKTYPE_RAW
RECORD = struct.Struct("<IIII")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def datagram(src: Address, dst: Address, payload: bytes, ident: int = 0) -> bytes:
    """An IPv4 or IPv6 packet carrying one UDP datagram."""
    source, target = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    if source.version == 4 and target.version == 4:
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0x4000, 64, 17, 0,
                             source.packed, target.packed)
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return header + udp
    if source.version == 4:
        source = ipaddress.IPv6Address(f"::ffff:{source}")
    if target.version == 4:
        target = ipaddress.IPv6Address(f"::ffff:{target}")
    return struct.pack("!IHBB16s16s", 0x60000000, len(udp), 17, 64, source.packed, target.packed) + udp


def write(packets: Iterable[Packet]) -> bytes:
    """A pcap file of ``packets`` in time order."""
    out = [GLOBAL_HEADER]
    for n, (when, src, dst, payload) in enumerate(sorted(packets, key=lambda p: p[0])):
        data = datagram(src, dst, payload, n)
        seconds = int(when)
        out.append(RECORD.pack(seconds, int((when - seconds) * 1_000_000), len(data), len(data)))
        out.append(data)
    return b"".join(out)


def read_udp(data: bytes) -> Iterator[Packet]:
    """The packets of a file :func:`write` made (for merging captures)."""
    offset = len(GLOBAL_HEADER)
    while offset + RECORD.size <= len(data):
        seconds, micros, length, _ = RECORD.unpack_from(data, offset)
        offset += RECORD.size
        raw = data[offset:offset + length]
        offset += length
        if raw[0] >> 4 == 4:
            src_ip, dst_ip, udp = ipaddress.IPv4Address(raw[12:16]), ipaddress.IPv4Address(raw[16:20]), raw[20:]
        else:
            src_ip, dst_ip, udp = ipaddress.IPv6Address(raw[8:24]), ipaddress.IPv6Address(raw[24:40]), raw[40:]
        sport, dport = struct.unpack_from("!HH", udp)
        yield seconds + micros / 1e6, (str(src_ip), sport), (str(dst_ip), dport), udp[8:]


def parse_address(text: str) -> Address:
    """``127.0.0.1:5060`` or ``[::1]:5060``."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)
