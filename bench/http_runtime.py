"""The HTTP runtime under waiting: latency, slow answers, stalled clients, worker scaling (issue #11).

    .venv/bin/python bench/http_runtime.py            # every scenario, about 8 minutes
    .venv/bin/python bench/http_runtime.py stalled    # or: zero latency50 latency500 slow slow_fixed rate workers
                                                      #     workers_pinned workers_saturated

Each scenario starts ``synthflow-mock serve --no-sip`` on 127.0.0.1, drives it with wrk (closed loop)
or hey (fixed rate), reads the CPU of the server's processes from /proc, prints one line, and stops
it. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mock_server.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "prepare_inbound.lua"
BODY = json.dumps({"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "m1",
                   "workspace_id": "w1", "custom_variables": {"name": "erfan"}})


def on_cpus(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that keeps a child (and all it starts) on ``cpus``; None leaves it free."""
    return None if cpus is None else lambda: os.sched_setaffinity(0, cpus)


class Server:
    def __init__(self, *flags: str, cpus: set[int] | None = None) -> None:
        self.port = free_port()
        # --quiet: the mock measured as a load test runs it (bench/RESULTS.md says what the console costs)
        self.proc = subprocess.Popen([sys.executable, "-m", "mock_server", "serve", "--no-sip", "--http-port",
                                      str(self.port), "--quiet", *flags, *os.environ.get("SERVE_ARGS", "").split()],
                                     stdout=subprocess.DEVNULL, preexec_fn=on_cpus(cpus),
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"GET /_mock/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(12).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def ticks(self) -> int:
        """CPU clock ticks of the server and every process it started."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid or _in_session(stat.parent.name, self.proc.pid):
                total += int(fields[11]) + int(fields[12])
        return total

    def stop(self) -> str:
        os.killpg(self.proc.pid, signal.SIGTERM)
        _, err = self.proc.communicate(timeout=15)
        return err.decode()


def _in_session(pid: str, supervisor: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("PPid:") and int(line.split()[1]) == supervisor for line in f)
    except OSError:
        return False


def wrk(url: str, conns: int, secs: int, threads: int = 1, lua: Path = LUA) -> dict[str, float]:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--latency", "-s", str(lua),
                          f"{url}/v2/prepare_inbound"], capture_output=True, text=True, timeout=secs + 60).stdout
    result = dict(re.findall(r"(\w+)=([\d.]+)", out.split("RESULT", 1)[1])) if "RESULT" in out else {}
    return {k: float(v) for k, v in result.items()}


def hey(url: str, rate: int, secs: int, conns: int = 16, cpus: set[int] | None = None) -> dict[str, float]:
    if not shutil.which("hey"):
        return {}
    out = subprocess.run(["hey", "-z", f"{secs}s", "-c", str(conns), "-q", str(rate / conns), "-m", "POST",
                          "-H", "Authorization: Bearer test", "-T", "application/json", "-d", BODY,
                          f"{url}/v2/prepare_inbound"], capture_output=True, text=True, timeout=secs + 60,
                         preexec_fn=on_cpus(cpus)).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out).group(1)) * 1000
    total = sum(int(n) for n in re.findall(r"\[\d{3}\]\s+(\d+) responses", out))
    return {"rps": rps, "p99_ms": p99, "requests": total}


def with_prefer(prefer: str) -> Path:
    path = Path(tempfile.mkdtemp()) / "prefer.lua"
    path.write_text(LUA.read_text().replace('wrk.headers["Authorization"] = "Bearer test"',
                                            f'wrk.headers["Authorization"] = "Bearer test"\n'
                                            f'wrk.headers["Prefer"] = "{prefer}"'))
    return path


def cpu_us_per_request(server: Server, run) -> tuple[dict[str, float], float]:
    before = server.ticks()
    result = run()
    used = (server.ticks() - before) / os.sysconf("SC_CLK_TCK")
    return result, used / max(1.0, result.get("requests", 0)) * 1e6


def zero() -> str:
    server = Server()
    try:
        result, cpu = cpu_us_per_request(server, lambda: wrk(server.url, 16, 10))
    finally:
        server.stop()
    return f"zero latency, wrk -c16 10s: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms, {cpu:.0f} us CPU/req"


def latency50() -> str:
    server = Server("--latency", "fixed:50")
    try:
        result = wrk(server.url, 64, 10)
    finally:
        server.stop()
    return (f"--latency fixed:50, wrk -c64 10s: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms "
            "(goal >= 1100, <= 70)")


def latency500() -> str:
    server = Server("--latency", "fixed:500")
    try:
        result = wrk(server.url, 1000, 10, threads=2)
    finally:
        server.stop()
    return (f"--latency fixed:500, wrk -t2 -c1000 10s: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms, "
            f"errors {result.get('err_connect', 0) + result.get('err_read', 0) + result.get('err_timeout', 0):.0f} "
            "(goal >= 1800)")


async def _feed_slow(port: int, rate: float, secs: float, done: list[int]) -> None:
    """Open loop: one slow request every 1/rate s, each on its own connection, evenly spaced, as slow
    requests mixed into real traffic arrive (not all at once, as N connections opened together would)."""
    import asyncio

    request = (f"POST /v2/prepare_inbound HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
               f"Prefer: outcome=slow, delay-ms=2000\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n{BODY}").encode()

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        if (await reader.read(12)).startswith(b"HTTP/1.1 200"):
            done[0] += 1
        writer.close()

    loop = asyncio.get_running_loop()
    start, tasks, n = loop.time(), [], 0
    while loop.time() - start < secs:
        tasks.append(asyncio.ensure_future(one()))
        n += 1
        await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
    await asyncio.gather(*tasks, return_exceptions=True)


def _feeder_process(port: int, rate: float, secs: float, out: Any) -> None:
    import asyncio

    done = [0]
    asyncio.run(_feed_slow(port, rate, secs, done))
    out.put(done[0])


def _with_slow_feed(server: Server, slow_rate: float,
                    measure: Callable[[], dict[str, float]] | None = None) -> tuple[dict[str, float], int]:
    """``measure`` (default: wrk -c16 for 10 s) while slow requests arrive at ``slow_rate``; (its result,
    slow requests answered)."""
    import multiprocessing

    results: Any = multiprocessing.Queue()
    feeder = multiprocessing.Process(target=_feeder_process, args=(server.port, slow_rate, 13, results))
    feeder.start()
    time.sleep(3)  # the slow requests are in flight by now
    fast = measure() if measure is not None else wrk(server.url, 16, 10)
    slow_done = results.get(timeout=60)
    feeder.join(10)
    return fast, slow_done


def slow() -> str:
    """wrk (fast requests) measured while slow requests arrive at a ninth of its rate: a tenth of all.

    The others' rate under the slow load is not known in advance (slow requests cost CPU too), so a first
    pass measures it and the second pass, the one reported, feeds a ninth of that."""
    server = Server()
    try:
        alone = wrk(server.url, 16, 5)
        first, _ = _with_slow_feed(server, alone["rps"] / 9)
        slow_rate = first["rps"] / 9
        fast, slow_done = _with_slow_feed(server, slow_rate)
    finally:
        server.stop()
    share = slow_done / 13 / (slow_done / 13 + fast["rps"]) * 100
    return (f"slow 2000 ms on {share:.0f} % of requests ({slow_rate:.0f}/s, evenly spaced): the others "
            f"{fast['rps']:.0f} req/s, p99 {fast['p99_ms']:.1f} ms (alone: p99 {alone['p99_ms']:.1f} ms; goal <= 10)")


def slow_fixed() -> str:
    """The others at a fixed 2,000 req/s (hey -c16), alone and then with slow requests at a ninth of that
    (10 % of all): what slow answers cost the others, apart from how saturated wrk makes the machine."""
    server = Server()
    try:
        alone = hey(server.url, 2000, 10)
        if not alone:
            return "slow at a fixed rate: hey is not installed (apt-get install hey)"
        mixed, slow_done = _with_slow_feed(server, 2000 / 9, lambda: hey(server.url, 2000, 10))
    finally:
        server.stop()
    return (f"slow 2000 ms at {2000 / 9:.0f}/s beside 2000 req/s (hey -c16, 10 s): the others {mixed['rps']:.0f} "
            f"req/s, p99 {mixed['p99_ms']:.2f} ms; alone p99 {alone['p99_ms']:.2f} ms; {slow_done} slow answered")


def stalled(count: int = 1000) -> str:
    server = Server("--http-header-timeout-s", "5", "--http-body-timeout-s", "5")
    socks = []
    try:
        for n in range(count):
            s = socket.create_connection(("127.0.0.1", server.port))
            if n % 2:
                s.sendall(b"POST /v2/prepare_inbound HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            else:
                s.sendall(b"POST /v2/prepare_inbound HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        probe = socket.create_connection(("127.0.0.1", server.port))
        request = (f"POST /v2/prepare_inbound HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n{BODY}").encode()
        times = []
        for _ in range(1000):
            t0 = time.perf_counter()
            probe.sendall(request)
            got = b""
            while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
                got += probe.recv(65536)
            times.append((time.perf_counter() - t0) * 1000)
        t_probe_done = time.monotonic()
        answers = []
        for s in socks:
            s.settimeout(10)
            try:
                answers.append(s.recv(64))
            except OSError:
                answers.append(b"")
        waited = time.monotonic() - t_probe_done
    finally:
        server.stop()
        for s in socks:
            s.close()
    got_408 = sum(a.startswith(b"HTTP/1.1 408 ") for a in answers)
    p99 = statistics.quantiles(times, n=100)[98]
    return (f"{count} stalled connections (half mid-headers, half mid-body): probe p99 {p99:.2f} ms over "
            f"{len(times)} requests (goal <= 10); {got_408}/{count} answered 408 after the 5 s read timeout "
            f"(last within {waited:.1f} s after the probe)")


def rate() -> str:
    server = Server()
    try:
        result = hey(server.url, 2000, 10)
    finally:
        server.stop()
    if not result:
        return "fixed 2000 req/s: hey is not installed (apt-get install hey)"
    return f"fixed 2000 req/s (hey -c16, 10 s): {result['rps']:.0f} req/s, p99 {result['p99_ms']:.2f} ms (goal <= 5)"


def workers(rounds: int = 3, pinned: bool = False, saturated: bool = False) -> str:
    """CPU per request with one worker and with two, alternating for ``rounds`` rounds. Other tenants of a
    shared VM move one run by 20 % or more, so the comparison is of each count's least CPU per request.

    ``pinned``: the server on one CPU and the load generator on another. On two CPUs the load generator
    otherwise shares a CPU with a worker whenever there are two: each worker then wakes more often, for
    fewer requests, onto caches the other processes cooled, and that, not the workers' own work, is most
    of what a second worker costs here (bench/RESULTS.md). Pinned, both counts run on one CPU of their own,
    as workers on a machine with a core to spare for the load generator would.

    ``saturated``: wrk -c16 as fast as the server answers instead of hey's fixed 2,000 req/s. At a fixed rate
    far below capacity each worker wakes for every small group of requests, on caches the other processes
    cooled; saturated, each wake-up serves a full group, as when throughput is what the workers are for."""
    allowed = sorted(os.sched_getaffinity(0))
    if pinned and len(allowed) < 2:
        return "CPU per request, pinned: needs two CPUs"
    server_cpus, load_cpus = ({allowed[0]}, {allowed[1]}) if pinned else (None, None)
    cpu: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(rounds):
        for n in (1, 2):
            server = Server("--workers", str(n), cpus=server_cpus)
            try:
                load = ((lambda s=server: wrk(s.url, 16, 10)) if saturated else
                        (lambda s=server: hey(s.url, 2000, 10, cpus=load_cpus) or wrk(s.url, 16, 10)))
                _, used = cpu_us_per_request(server, load)
            finally:
                server.stop()
            cpu[n].append(used)
    runs = "; ".join(f"{n} worker(s): {', '.join(f'{c:.0f}' for c in cpu[n])} us" for n in (1, 2))
    least = {n: min(cpu[n]) for n in (1, 2)}
    apart = abs(least[2] - least[1]) / least[1] * 100
    where = f", server on CPU {allowed[0]} and hey on CPU {allowed[1]}" if pinned else ""
    at = "saturated (wrk -c16, 10 s)" if saturated else "at 2000 req/s"
    return (f"CPU per request {at}{where}, {rounds} alternating rounds: {runs}; least {least[1]:.0f} and "
            f"{least[2]:.0f} us, {apart:.0f} % apart (goal: within 15 %)")


def workers_pinned() -> str:
    return workers(pinned=True)


def workers_saturated() -> str:
    return workers(saturated=True)


SCENARIOS = {"zero": zero, "latency50": latency50, "latency500": latency500, "slow": slow,
             "slow_fixed": slow_fixed, "stalled": stalled, "rate": rate, "workers": workers,
             "workers_pinned": workers_pinned, "workers_saturated": workers_saturated}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", help=f"some of: {', '.join(SCENARIOS)} (default: all)")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # 1000 connections and more
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} nproc={os.cpu_count()}", flush=True)
    for name in args.scenarios or list(SCENARIOS):
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
        print(SCENARIOS[name](), flush=True)


if __name__ == "__main__":
    main()
