"""A long steady SIP load: does the SIP side's memory stay flat?

    .venv/bin/python bench/sip_soak.py                    # 200 calls/s for 180 s, RSS sampled every 10 s
    .venv/bin/python bench/sip_soak.py --rate 300 --secs 300 --media on

SIPp places full calls (tests/sipp/uac_call.xml: INVITE, 200, ACK, 100 ms, BYE) at a steady rate
against ids prepared in bulk. The RSS of the SIP process and its journal writer is printed every 10 s;
the verdict compares the end with the first minute (issue #13: under 5 MB of growth after it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sip_bench import BODY, SCENARIO, find_pid, post
from sip_flood import rss_mb

from mock_server.testing import children, free_udp_tcp_port, start_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--secs", type=int, default=180)
    parser.add_argument("--media", choices=["on", "off"], default="off")
    args = parser.parse_args()
    server = start_server("--quiet", "--media", args.media, "--calls-limit", "1000000")
    http, sip_port = server.url, server.sip_port
    work = Path(tempfile.mkdtemp(prefix="sip-soak-"))
    try:
        sip_pid = find_pid("mock_server.sip.runner")
        assert sip_pid is not None
        total = args.rate * args.secs
        ids: list[str] = []
        while len(ids) < total:
            ids += post(f"{http}/_mock/prepare_bulk", {"count": min(5_000, total - len(ids)), "body": BODY})["call_ids"]
        inf = work / "ids.csv"
        inf.write_text("SEQUENTIAL\n" + "".join(f"{i};{i.replace('-', '')[:32]};\n" for i in ids))
        pids = [sip_pid, *children(sip_pid)]
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            start = time.monotonic()
            while not stop.wait(10):
                samples.append((time.monotonic() - start, rss_mb(pids)))
                print(f"  {samples[-1][0]:5.0f} s  SIP + writer RSS {samples[-1][1]:6.1f} MB", flush=True)

        base = rss_mb(pids)
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {args.rate} calls/s for {args.secs} s, media {args.media}; "
              f"SIP + writer RSS at rest {base:.1f} MB", flush=True)
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        run = subprocess.run(["sipp", f"127.0.0.1:{sip_port}", "-sf", str(SCENARIO), "-inf", str(inf),
                              "-i", "127.0.0.1", "-p", str(free_udp_tcp_port()), "-s", "+15551234567",
                              "-r", str(args.rate), "-m", str(total), "-nostdin", "-timeout", f"{args.secs + 60}s",
                              "-trace_stat", "-stf", str(work / "stat.csv")],
                             capture_output=True, text=True, cwd=work, timeout=args.secs + 120)
        stop.set()
        thread.join()
        rows = (work / "stat.csv").read_text().splitlines() if (work / "stat.csv").exists() else []
        header, last = (rows[0].split(";"), rows[-1].split(";")) if len(rows) > 1 else ([], [])
        stats = dict(zip(header, last, strict=False))
        minute = next((mb for t, mb in samples if t >= 60), samples[0][1] if samples else base)
        end = samples[-1][1] if samples else base
        print(f"SIPp exit {run.returncode}: {stats.get('SuccessfulCall(C)')} successful, "
              f"{stats.get('FailedCall(C)')} failed")
        print(f"RSS: at rest {base:.1f} MB, after the first minute {minute:.1f} MB, at the end {end:.1f} MB: "
              f"{end - minute:+.1f} MB after the first minute")
        return 0
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
