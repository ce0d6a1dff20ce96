"""A flood of INVITEs for calls never prepared: the SIP process's memory, and datagrams answered per INVITE.

    .venv/bin/python bench/sip_flood.py --rate 15000 --secs 25 --after 30

Starts ``synthflow-mock serve --quiet`` on loopback, measures the SIP process's RSS (it and its
journal writer), sends INVITEs with a fresh branch, Call-ID and unknown ``X-EI`` id from one UDP
socket at ``--rate`` a second for ``--secs``, counts what comes back, then watches RSS for
``--after`` seconds. Loopback only; the flood stops by itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from mock_server.testing import children, free_port, free_udp_tcp_port

INVITE = ("INVITE sip:+15551234567@127.0.0.1:{port} SIP/2.0\r\n"
          "Via: SIP/2.0/UDP 127.0.0.1:{src};branch=z9hG4bK{n};rport\r\n"
          "From: <sip:+15075785607@127.0.0.1>;tag=f{n}\r\nTo: <sip:+15551234567@127.0.0.1>\r\n"
          "Call-ID: flood-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:flood@127.0.0.1:{src}>\r\nMax-Forwards: 70\r\n"
          "X-EI: S.{id};\r\nContent-Length: 0\r\n\r\n")


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=15_000)
    parser.add_argument("--secs", type=float, default=25)
    parser.add_argument("--after", type=float, default=30)
    args = parser.parse_args()
    http, sip = free_port(), free_udp_tcp_port()
    server = subprocess.Popen([sys.executable, "-m", "mock_server", "serve", "--quiet", "--http-port", str(http),
                               "--sip-port", str(sip)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        time.sleep(3)
        sip_pid = next(p for p in children(server.pid) if b"sip.runner" in Path(f"/proc/{p}/cmdline").read_bytes())
        pids = [sip_pid, *children(sip_pid)]
        baseline = rss_mb(pids)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 2**20)
        src = sock.getsockname()[1]
        received = [0]
        done = threading.Event()

        def receive() -> None:
            sock.settimeout(0.2)
            while not done.is_set():
                try:
                    sock.recv(65535)
                    received[0] += 1
                except OSError:
                    pass

        reader = threading.Thread(target=receive, daemon=True)
        reader.start()
        peak, sent, t0 = baseline, 0, time.monotonic()
        next_sample = t0
        while (now := time.monotonic()) - t0 < args.secs:
            due = int((now - t0) * args.rate)
            while sent < due:
                data = INVITE.format(port=sip, src=src, n=sent, id=uuid.uuid4()).encode()
                sock.sendto(data, ("127.0.0.1", sip))
                sent += 1
            if now >= next_sample:
                peak = max(peak, rss_mb(pids))
                next_sample = now + 0.5
            time.sleep(0.001)
        flood_s = time.monotonic() - t0
        after_t0 = time.monotonic()
        while time.monotonic() - after_t0 < args.after:
            peak = max(peak, rss_mb(pids))
            time.sleep(0.5)
        done.set()
        after = rss_mb(pids)
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} nproc={os.cpu_count()}")
        print(f"flood: {sent} INVITEs for unknown calls in {flood_s:.1f} s ({sent / flood_s:.0f}/s); "
              f"{received[0]} datagrams back ({received[0] / max(1, sent):.2f} per INVITE sent)")
        print(f"SIP process RSS (with its writer): baseline {baseline:.0f} MB, peak {peak:.0f} MB, "
              f"{args.after:.0f} s after the flood {after:.0f} MB ({(after / baseline - 1) * 100:+.0f} %)")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
