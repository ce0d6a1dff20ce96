"""SIP calls per second through the standalone server, driven by SIPp over UDP (or TCP) on loopback.

    .venv/bin/python bench/sip_bench.py                      # rates 500 1000 2000 2500, 10 s each
    .venv/bin/python bench/sip_bench.py --rates 2000 --secs 20 --transport t1

For each rate: pre-register rate·secs call ids through the HTTP admin API
(``POST /_mock/prepare_bulk``), then SIPp places that many full calls (INVITE with
``X-EI: S.<id>;``, 100, 180, 200, ACK, 100 ms, BYE, 200) at that rate. Reports
successful and failed calls, INVITE→200 response times (p50/p99, from SIPp's
``-trace_rtt``), the CPU used by the SIP event-loop processes (all shards) and by their journal
writer processes, the CPU of SIPp (the UAC) and UDP receive buffer errors. The headline is the highest
clean rate: no failed call, no UDP drop, and p99 within 200 ms (so SIPp's retransmissions did not rescue the run).
Needs ``sipp`` (Debian package sip-tester). Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mock_server.testing import children, free_udp_tcp_port

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "sipp" / "uac_call.xml"
P99_BOUND_MS = 200
"""A rate only counts as handled when retransmissions did not rescue it: SIPp's first retransmit is at 500 ms."""
BODY = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "m1", "workspace_id": "w1",
        "custom_variables": {"name": "erfan"}}


def ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return 0


def post(url: str, payload: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]


def run_rate(http: str, sip_port: int, sip_pids: list[int], rate: int, secs: int, transport: str, work: Path) -> dict:
    total = rate * secs
    ids: list[str] = []
    while len(ids) < total:
        ids += post(f"{http}/_mock/prepare_bulk", {"count": min(5_000, total - len(ids)), "body": BODY})["call_ids"]
    inf = work / f"ids_{rate}.csv"
    inf.write_text("SEQUENTIAL\n" + "".join(f"{i};{i.replace('-', '')[:32]};\n" for i in ids))
    for old in work.glob("*_rtt.csv"):
        old.unlink()
    stat = work / f"stat_{rate}.csv"
    cmd = ["sipp", f"127.0.0.1:{sip_port}", "-sf", str(SCENARIO), "-inf", str(inf), "-i", "127.0.0.1",
           "-p", str(free_udp_tcp_port()), "-t", transport, "-s", "+15551234567", "-r", str(rate), "-rp", "1000",
           "-m", str(total), "-l", str(max(200, rate)), "-nostdin", "-timeout", f"{secs + 40}s", "-timeout_error",
           "-recv_timeout", "10000", "-trace_stat", "-stf", str(stat), "-fd", "1", "-trace_rtt",
           "-rtt_freq", str(max(1, min(1000, total // 10))),
           "-buff_size", "4194304"]
    if transport.endswith("n"):  # a socket per call: stay under the open-files limit
        cmd += ["-max_socket", "15000"]
    udp0 = udp_errors()
    writers = [w for pid in sip_pids for w in children(pid)]  # each shard's journal writer process
    sip0, w0, t0 = sum(ticks(p) for p in sip_pids), sum(ticks(p) for p in writers), time.monotonic()
    sipp0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work, timeout=secs + 90)
    wall = time.monotonic() - t0
    sip_cpu = (sum(ticks(p) for p in sip_pids) - sip0) / os.sysconf("SC_CLK_TCK")
    writer_cpu = (sum(ticks(p) for p in writers) - w0) / os.sysconf("SC_CLK_TCK")
    sipp1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_cpu = (sipp1.ru_utime + sipp1.ru_stime) - (sipp0.ru_utime + sipp0.ru_stime)
    if proc.returncode not in (0, 1) or not stat.exists():
        print(f"# sipp exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-400:]}", file=sys.stderr)
    rows = list(csv.reader(stat.read_text().splitlines(), delimiter=";")) if stat.exists() else []
    last = dict(zip(rows[0], rows[-1], strict=False)) if len(rows) > 1 else {}
    rtts: list[float] = []
    for path in work.glob("*_rtt.csv"):
        for row in csv.reader(path.read_text().splitlines()[1:], delimiter=";"):
            if len(row) >= 2:
                with contextlib.suppress(ValueError):
                    rtts.append(float(row[1]))
    return {
        "rate": rate, "calls": total, "sipp_exit": proc.returncode,
        "successful": int(last.get("SuccessfulCall(C)", 0) or 0), "failed": int(last.get("FailedCall(C)", 0) or 0),
        "rtt_p50_ms": round(percentile(rtts, 50), 2), "rtt_p90_ms": round(percentile(rtts, 90), 2),
        "rtt_p99_ms": round(percentile(rtts, 99), 2), "rtt_max_ms": round(max(rtts, default=float("nan")), 2),
        "sip_cpu_pct": round(100 * sip_cpu / wall, 1), "writer_cpu_pct": round(100 * writer_cpu / wall, 1),
        "sipp_cpu_pct": round(100 * sipp_cpu / wall, 1),
        "wall_s": round(wall, 1),
        "udp_rcvbuf_errors": udp_errors() - udp0,
    }


def udp_errors() -> int:
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("RcvbufErrors")])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=[500, 1000, 2000, 2500])
    parser.add_argument("--secs", type=int, default=10)
    parser.add_argument("--transport", default="u1", help="SIPp transport: u1 (UDP) or t1 (TCP)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--server-args", default="--media off",
                        help="extra serve flags; the default measures signalling alone (SIPp reads no RTP, so the "
                             "mock's would fill its socket and count as UDP drops); '' to include media")
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        print("sipp not found: apt-get install sip-tester", file=sys.stderr)
        return 2
    http_port, sip_port = free_udp_tcp_port(), free_udp_tcp_port()
    work = Path(tempfile.mkdtemp(prefix="sip-bench-"))
    server = subprocess.Popen([sys.executable, "-m", "mock_server", "serve", "--http-port", str(http_port),
                               "--sip-port", str(sip_port), "--calls-limit", "1000000", "--quiet",
                               *args.server_args.split()],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    http = f"http://127.0.0.1:{http_port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{http}/_mock/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(0.5)
        sip_pids = [p for p in children(server.pid)  # each SIP shard is a child of serve
                    if b"mock_server.sip.runner" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert sip_pids, "SIP process not found"
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {platform.node()} nproc={os.cpu_count()} "
              f"transport={args.transport} secs={args.secs}")
        print(f"{'rate':>6} {'calls':>7} {'ok':>7} {'failed':>6} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
              f"{'max ms':>7} {'SIP cpu%':>8} "
              f"{'writer%':>7} {'SIPp%':>6} {'rcvbuf err':>10}")
        results = []
        for rate in args.rates:
            r = run_rate(http, sip_port, sip_pids, rate, args.secs, args.transport, work)
            results.append(r)
            print(f"{r['rate']:>6} {r['calls']:>7} {r['successful']:>7} {r['failed']:>6} {r['rtt_p50_ms']:>7} "
                  f"{r['rtt_p90_ms']:>7} {r['rtt_p99_ms']:>7} {r['rtt_max_ms']:>7} {r['sip_cpu_pct']:>8} "
                  f"{r['writer_cpu_pct']:>7} {r['sipp_cpu_pct']:>6} {r['udp_rcvbuf_errors']:>10}",
                  flush=True)
            post(f"{http}/_mock/reset", {})
        clean = [r["rate"] for r in results if r["failed"] == 0 and r["successful"] == r["calls"]
                 and r["udp_rcvbuf_errors"] == 0 and r["rtt_p99_ms"] <= P99_BOUND_MS]
        print(f"highest clean rate (no failed call, no UDP drop, p99 <= {P99_BOUND_MS} ms): "
              f"{max(clean) if clean else 'none'} calls/s")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(15)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
