"""Reproduce the project's headline figures in one run and write bench/RESULTS.md.

    .venv/bin/python bench/headline.py                 # everything (about 8 minutes)
    .venv/bin/python bench/headline.py --skip-anchors  # without WireMock (no ../shared/bench setup)

1. HTTP: POST /v2/prepare_inbound, validation and journal on, beside WireMock with
   ../shared/bench/run_http_anchors.sh (wrk -t1 -c16 -d10s closed loop; hey at 2,000 req/s).
   Run ``bash ../shared/bench/run_http_anchors.sh --setup`` once first.
2. SIP: calls/s with SIPp over UDP (bench/sip_bench.py).
3. Locust: the HTTP user at the highest rate Locust reaches here, with the CPU the mock used,
   to show Locust and not the mock is the bottleneck; and the SIP user.
Loopback only.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from mock_server.testing import children

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = ROOT.parent / "shared" / "bench"
PY = sys.executable


def sh(cmd: list[str] | str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, shell=isinstance(cmd, str), **kw)


def descendants(pid: int) -> list[int]:
    out, frontier = [], [pid]
    while frontier:
        kids = children(frontier.pop())
        out += kids
        frontier += kids
    return out


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


class Server:
    def __init__(self, http_port: int, sip_port: int, *args: str) -> None:
        self.proc = subprocess.Popen([PY, "-m", "mock_server", "serve", "--quiet", "--http-port", str(http_port),
                                      "--sip-port", str(sip_port), "--calls-limit", "1000000", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"http://127.0.0.1:{http_port}"
        for _ in range(100):
            if sh(["curl", "-sf", f"{self.url}/_mock/health"]).returncode == 0:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        self.pids = [self.proc.pid, *descendants(self.proc.pid)]

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(20)


def http_anchors(out: Path) -> dict[str, object]:
    env = {**os.environ, "OUT": str(out), "REPS": "2", "RATE_HEY": "2000", "TARGET_PORT": "8000",
           "TARGET_CMD": f"cd {ROOT} && exec {PY} -m mock_server serve --http-port 8000 --sip-port 35400"}
    sh(["bash", str(ANCHORS / "run_http_anchors.sh"), "target", "granian", "wiremock"], env=env, timeout=1200)
    table = sh([PY, str(ANCHORS / "summarize.py"), str(out)]).stdout
    figures: dict[str, dict[str, list[float]]] = {}
    for path in glob.glob(str(out / "*" / "*.txt")):
        name, run = Path(path).parent.name, Path(path).stem
        text = Path(path).read_text()
        m = re.search(r"RESULT .*rps=([\d.]+).*p99_ms=([\d.]+)", text)
        if m and run.startswith("wrk_closed"):
            figures.setdefault(name, {}).setdefault("closed_rps", []).append(float(m.group(1)))
            figures[name].setdefault("closed_p99", []).append(float(m.group(2)))
        m = re.search(r"Requests/sec:\s+([\d.]+)", text)
        p99 = re.search(r"99%+ in ([\d.]+) secs", text)
        if run.startswith("hey") and m:
            figures.setdefault(name, {}).setdefault("hey_rps", []).append(float(m.group(1)))
            if p99:
                figures[name].setdefault("hey_p99", []).append(float(p99.group(1)) * 1000)
    return {"table": table, "figures": figures}


def locust_http(server: Server, users: int, secs: int, work: Path) -> dict[str, object]:
    t0, c0 = time.monotonic(), cpu_ticks(server.pids)
    run = sh([PY, "-m", "locust", "-f", str(ROOT / "locustfile.py"), "--headless", "-u", str(users), "-r",
              str(users), "-t", f"{secs}s", "--host", server.url, "--csv", str(work / f"http{users}"),
              "--only-summary", "PrepareInboundUser"], cwd=work, timeout=secs + 60)
    wall = time.monotonic() - t0
    mock_cpu = (cpu_ticks(server.pids) - c0) / os.sysconf("SC_CLK_TCK") / wall * 100
    rows = (work / f"http{users}_stats.csv").read_text().splitlines()
    header, agg = rows[0].split(","), rows[-1].split(",")
    row = dict(zip(header, agg, strict=False))
    return {"users": users, "rps": float(row["Requests/s"]), "p99_ms": float(row["99%"]),
            "failures": int(row["Failure Count"]), "mock_cpu_pct": round(mock_cpu, 1), "exit": run.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-anchors", action="store_true")
    parser.add_argument("--sip-rates", default="1000 1500 2000")
    args = parser.parse_args()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    work = Path(f"/tmp/synthflow-bench/headline-{stamp}")
    work.mkdir(parents=True, exist_ok=True)
    sections = [f"# Benchmark results\n\n{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
                f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
                f"`{' '.join(sys.argv)}`. Loopback only. Machines here are shared: treat differences "
                "under about 15 % between single runs as noise.\n"]

    if not args.skip_anchors and (ANCHORS / "run_http_anchors.sh").exists():
        http = http_anchors(work / "http")
        sections.append("## HTTP: prepare_inbound beside bare Flask and WireMock (validation and journal on)\n\n"
                        "From `../shared/bench/run_http_anchors.sh target granian wiremock` (`target` is "
                        "synthflow-mock, default single worker; `granian` is a bare Flask handler on granian with 2 "
                        "workers). Its CPU columns cannot see synthflow-mock's processes (they run in their own "
                        "sessions); `bench/http_runtime.py` measures that instead.\n" + str(http["table"]))
        (work / "http.json").write_text(json.dumps(http["figures"], indent=2))

    runtime = sh([PY, str(ROOT / "bench" / "http_runtime.py")], timeout=900).stdout
    sections.append("## HTTP runtime: waiting, slow clients, workers\n\n`bench/http_runtime.py`: each scenario "
                    "starts `serve --no-sip` and drives it with wrk, hey or raw sockets.\n\n```\n" + runtime + "```\n")

    sip = sh([PY, str(ROOT / "bench" / "sip_bench.py"), "--rates", *args.sip_rates.split(), "--secs", "10"],
             timeout=1200).stdout
    sections.append("## SIP: calls/s with SIPp over UDP\n\n`bench/sip_bench.py`: INVITE with `X-EI: S.<id>;`, "
                    "100, 180, 200, ACK, 100 ms, BYE, 200; response time is INVITE to 200.\n\n```\n" + sip + "```\n")

    server = Server(18600, 35600)
    try:
        rows = [locust_http(server, users, 15, work) for users in (8, 32)]
    finally:
        server.stop()
    lines = ["| Locust users | req/s | p99 ms | failures | mock CPU (all its processes, % of one core) |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['users']} | {r['rps']:.0f} | {r['p99_ms']:.0f} | {r['failures']} | {r['mock_cpu_pct']} |"
              for r in rows]
    sections.append("## Locust against the mock\n\nThe HTTP user (`PrepareInboundUser`, every answer checked "
                    "against the contract), one Locust process, 15 s each.\n\n" + "\n".join(lines) + "\n")
    text = "\n".join(sections)
    (ROOT / "bench" / "RESULTS.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
