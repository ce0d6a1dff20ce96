"""Concurrent calls with two-way RTP through the standalone server, on loopback.

    .venv/bin/python bench/media_load.py                 # 200 calls with media for 20 s, then 1000 held without
    .venv/bin/python bench/media_load.py --calls 300 --secs 30

Each call: INVITE (X-EI of a call prepared in bulk), 200, ACK, then the caller sends 20 ms PCMU
packets (50/s) while the mock sends its greeting and silence back, then BYE. Reported: the loss and
jitter the mock measured on the callers' streams (from each call's timeline), the loss the callers
measured on the mock's streams, the SIP process's CPU per call and per packet. The second part holds
N calls answered with ``--media off`` (signalling only) and reports the SIP process's RSS and CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from sip_bench import find_pid, post, ticks  # noqa: E402
from sip_flood import rss_mb  # noqa: E402

from mock_server.media import rtp  # noqa: E402
from mock_server.sip.message import parse_datagram, tag_of  # noqa: E402
from mock_server.testing import LiveServer, children, start_server  # noqa: E402
from tests.sip_client import request as sip_request  # noqa: E402


def cpu_seconds(pid: int) -> float:
    return ticks(pid) / os.sysconf("SC_CLK_TCK")

PAYLOAD = bytes([0xFF]) * 160


class Call:
    def __init__(self, loop: asyncio.AbstractEventLoop, sip_port: int, synthflow_id: str) -> None:
        self.loop, self.sip_port, self.id = loop, sip_port, synthflow_id
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.sip.setblocking(False)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.setblocking(False)
        self.stats = rtp.ReceiverStats()
        self.mock_media: tuple[str, int] | None = None
        self.seq, self.ts = 0, 0
        self.sent = 0
        self.answer: asyncio.Future = loop.create_future()
        self.bye_ok: asyncio.Future = loop.create_future()
        loop.add_reader(self.sip.fileno(), self._sip_in)
        loop.add_reader(self.rtp.fileno(), self._rtp_in)

    def _sip_in(self) -> None:
        while True:
            try:
                data = self.sip.recv(65535)
            except BlockingIOError:
                return
            msg = parse_datagram(data)
            if msg.status == 200 and (msg.get("cseq") or "").endswith("INVITE") and not self.answer.done():
                self.answer.set_result(msg)
            elif msg.status == 200 and (msg.get("cseq") or "").endswith("BYE") and not self.bye_ok.done():
                self.bye_ok.set_result(msg)

    def _rtp_in(self) -> None:
        while True:
            try:
                data = self.rtp.recv(2048)
            except BlockingIOError:
                return
            with contextlib.suppress(rtp.BadPacket):
                self.stats.add(rtp.parse(data), time.monotonic())

    async def run(self, seconds: float) -> None:
        local, media = self.sip.getsockname()[1], self.rtp.getsockname()[1]
        offer = (f"v=0\r\no=b 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                 f"m=audio {media} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
        sip_call_id = f"bench-{self.id}"
        invite = sip_request("INVITE", self.sip_port, local, call_id=sip_call_id, xei=f"S.{self.id};", body=offer)
        self.sip.sendto(invite, ("127.0.0.1", self.sip_port))
        ok = await asyncio.wait_for(self.answer, 10)
        port = int(next(x for x in ok.body.decode().splitlines() if x.startswith("m=audio")).split()[1])
        self.mock_media = ("127.0.0.1", port)
        to_tag = tag_of(ok.get("to"))
        self.sip.sendto(sip_request("ACK", self.sip_port, local, call_id=sip_call_id, to_tag=to_tag),
                        ("127.0.0.1", self.sip_port))
        ssrc = int.from_bytes(os.urandom(4), "big")
        start = self.loop.time()
        n = 0
        while self.loop.time() - start < seconds:
            self.rtp.sendto(rtp.build(0, self.seq, self.ts, ssrc, PAYLOAD), self.mock_media)
            self.seq, self.ts, self.sent = self.seq + 1, self.ts + 160, self.sent + 1
            n += 1
            await asyncio.sleep(max(0.0, start + n * 0.02 - self.loop.time()))
        self.sip.sendto(sip_request("BYE", self.sip_port, local, call_id=sip_call_id, to_tag=to_tag, cseq=2),
                        ("127.0.0.1", self.sip_port))
        await asyncio.wait_for(self.bye_ok, 10)

    def close(self) -> None:
        self.loop.remove_reader(self.sip.fileno())
        self.loop.remove_reader(self.rtp.fileno())
        self.sip.close()
        self.rtp.close()


def start(args: list[str]) -> tuple[LiveServer, str, int, int]:
    """The mock as the tests start it (ready once HTTP and SIP answer), and its SIP process id."""
    server = start_server("--quiet", *args)
    sip_pid = find_pid("mock_server.sip.runner")
    assert sip_pid is not None and sip_pid in children(server.process.pid)
    return server, server.url, server.sip_port, sip_pid


def bulk(url: str, count: int) -> list[str]:
    return post(f"{url}/_mock/prepare_bulk", {"count": count, "body": {
        "from_number": "+15075785607", "to_number": "+15551234567", "model_id": "bench"}})["call_ids"]


async def media_part(calls: int, seconds: float) -> None:
    server, url, sip_port, sip_pid = start(["--media", "on", "--calls-limit", "100000"])
    try:
        ids = bulk(url, calls)
        loop = asyncio.get_running_loop()
        legs = [Call(loop, sip_port, i) for i in ids]
        cpu0, t0 = cpu_seconds(sip_pid), time.monotonic()
        await asyncio.gather(*(leg.run(seconds) for leg in legs))
        cpu = cpu_seconds(sip_pid) - cpu0
        wall = time.monotonic() - t0
        for leg in legs:
            leg.close()
        time.sleep(1.0)
        mock_side = []
        req = urllib.request.Request(f"{url}/_mock/calls?limit=10000")
        found = json.loads(urllib.request.urlopen(req, timeout=30).read())["calls"]
        for call in found:
            media = next((e["detail"] for e in call["timeline"] if e["event"] == "media"), None)
            if media:
                mock_side.append(media)
        received = sum(m["received"]["packets"] for m in mock_side)
        lost = sum(m["received"]["lost"] for m in mock_side)
        sent_by_callers = sum(leg.sent for leg in legs)
        caller_lost = sum(leg.stats.lost for leg in legs)
        caller_expected = sum(leg.stats.expected for leg in legs)
        jitters = [m["received"]["jitter_ms"] for m in mock_side]
        caller_jitter = [leg.stats.summary()["jitter_ms"] for leg in legs]
        print(f"media: {calls} concurrent calls x {seconds:g} s, two-way RTP at 50 packets/s each (wall {wall:.1f} s)")
        print(f"  callers -> mock: {sent_by_callers} sent, {received} received by the mock, {lost} lost "
              f"({100 * lost / max(1, received + lost):.3f} %); jitter per call median "
              f"{statistics.median(jitters):.2f} ms, max {max(jitters):.2f} ms (mock's RFC 3550 figures)")
        print(f"  mock -> callers: {caller_expected} expected, {caller_lost} lost "
              f"({100 * caller_lost / max(1, caller_expected):.3f} %); jitter median "
              f"{statistics.median(caller_jitter):.2f} ms, max {max(caller_jitter):.2f} ms (callers' figures)")
        packets = received + sum(m["sent_packets"] for m in mock_side)
        print(f"  SIP process CPU: {cpu:.2f} s = {100 * cpu / wall:.1f} % of a core; "
              f"{1e3 * cpu / calls:.1f} ms per call, {1e6 * cpu / max(1, packets):.1f} us per RTP packet in or out")
    finally:
        server.close()


async def held_part(calls: int) -> None:
    server, url, sip_port, sip_pid = start(["--media", "off", "--calls-limit", "100000"])
    try:
        ids = bulk(url, calls)
        rss0, cpu0 = rss_mb([sip_pid]), cpu_seconds(sip_pid)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        local = sock.getsockname()[1]
        answered = {}
        for n, call_id in enumerate(ids):
            invite = sip_request("INVITE", sip_port, local, call_id=f"held-{n}", xei=f"S.{call_id};")
            sock.sendto(invite, ("127.0.0.1", sip_port))
            if n % 50 == 49:
                time.sleep(0.02)
        deadline = time.monotonic() + 20
        while len(answered) < calls and time.monotonic() < deadline:
            msg = parse_datagram(sock.recv(65535))
            if msg.status == 200 and (msg.get("cseq") or "").endswith("INVITE"):
                held = msg.get("call-id") or ""
                answered[held] = tag_of(msg.get("to"))
                ack = sip_request("ACK", sip_port, local, call_id=held, to_tag=answered[held])
                sock.sendto(ack, ("127.0.0.1", sip_port))
        time.sleep(2)
        print(f"held: {len(answered)} of {calls} calls answered and held without media: SIP process RSS "
              f"{rss0:.0f} -> {rss_mb([sip_pid]):.0f} MB, "
              f"CPU {1e3 * (cpu_seconds(sip_pid) - cpu0) / calls:.2f} ms per call")
        for call_id, tag in answered.items():
            bye = sip_request("BYE", sip_port, local, call_id=call_id, to_tag=tag, cseq=2)
            sock.sendto(bye, ("127.0.0.1", sip_port))
        sock.close()
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--secs", type=float, default=20)
    parser.add_argument("--held", type=int, default=1000)
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} nproc={os.cpu_count()}")
    with tempfile.TemporaryDirectory():
        asyncio.run(media_part(args.calls, args.secs))
        asyncio.run(held_part(args.held))


if __name__ == "__main__":
    main()
